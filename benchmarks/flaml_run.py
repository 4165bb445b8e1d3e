"""FLAML AutoML on one train/test split, run by the FLAML environment's Python (`.venv-flaml`, see flaml_env.sh).

`python flaml_run.py DIR --target T --task binary|multiclass|regression --budget S --seed N [--classes K]` reads
DIR/train.parquet and DIR/test.parquet (class targets encoded 0..K-1), fits `flaml.AutoML` with `time_budget=S`,
`metric` log_loss (classification) or rmse (regression), and writes DIR/flaml_pred.parquet (column `pred` for binary
P(class 1) and regression, `p_0..p_{K-1}` for multiclass, rows in test order) and DIR/flaml.json (what it chose, times).
It imports nothing from mlops_nb: it runs in another environment.
"""
import argparse
import json
import time
from pathlib import Path

import numpy as np
import pandas as pd


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("dir")
    ap.add_argument("--target", required=True)
    ap.add_argument("--task", required=True, choices=["binary", "multiclass", "regression"])
    ap.add_argument("--budget", type=float, required=True)
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--classes", type=int, default=0)
    a = ap.parse_args()
    d = Path(a.dir)
    tr, te = pd.read_parquet(d/"train.parquet"), pd.read_parquet(d/"test.parquet")
    X, y = tr.drop(columns=[a.target]), tr[a.target]
    Xte = te.drop(columns=[a.target], errors="ignore")
    from flaml import AutoML
    automl = AutoML()
    reg = a.task == "regression"
    t0 = time.time()
    automl.fit(X, y, task="regression" if reg else "classification", metric="rmse" if reg else "log_loss",
               time_budget=a.budget, seed=a.seed, verbose=0)
    fit_s = time.time() - t0
    if reg:
        out = pd.DataFrame({"pred": np.asarray(automl.predict(Xte), np.float64)})
    else:
        p = np.asarray(automl.predict_proba(Xte), np.float64)
        k = max(a.classes, int(y.max()) + 1)
        full = np.zeros((len(Xte), k))
        full[:, np.asarray(automl.classes_, int)] = p                 # a class absent from training gets probability 0
        out = pd.DataFrame({"pred": full[:, 1]}) if a.task == "binary" else pd.DataFrame(full, columns=[f"p_{j}" for j in range(k)])
    out.to_parquet(d/"flaml_pred.parquet", index=False)
    import flaml
    (d/"flaml.json").write_text(json.dumps({"flaml": flaml.__version__, "best_estimator": automl.best_estimator,
                                             "best_config": automl.best_config, "best_loss": automl.best_loss,
                                             "fit_seconds": round(fit_s, 2), "budget": a.budget}, default=str))


if __name__ == "__main__":
    main()
