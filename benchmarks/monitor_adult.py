"""The monitor stage's correctness on the bundled Adult data, through `run_monitor` (model, profile, drift, estimate, performance).

`python benchmarks/monitor_adult.py [--seeds 20]`: builds one evaluated run on the full Adult files (small model settings) in a
temporary project, then monitors batches of 5,000 rows of its test split, with one set of thresholds (the defaults):
random batches (false alarms), age + 1 / 2 / 5, race = Black share doubled, 20% of each column missing, labels flipped on
sex = Female, and a covariate shift that lowers accuracy (married rows' share raised to 90%) with and without labels (the
label-free estimate's error against the realised accuracy). Prints a table; writes reports/benchmarks/monitor_adult.json.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

REPO = Path(__file__).resolve().parent.parent


def _project() -> Path:
    root = Path(tempfile.mkdtemp(prefix="mlops_nb-monitor-adult-"))
    (root/"data"/"raw").mkdir(parents=True)
    for f in ("adult.data", "adult.test", "datacard.json"): shutil.copy(REPO/"data"/"raw"/f, root/"data"/"raw"/f)
    os.environ.update(MLOPS_NB_ROOT=str(root), WANDB_MODE="disabled", MPLBACKEND="Agg", MLOPS_NB_REGISTRY=str(root/"models"))
    return root


def _doubled(pool, col, level, n, seed, share=None):
    s = (pool[col] == level).mean()
    target = share if share is not None else 2 * s
    w = np.where(pool[col] == level, target / s, (1 - target) / (1 - s))
    return pool.iloc[np.random.default_rng(seed).choice(len(pool), n, p=w / w.sum())].reset_index(drop=True)


def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("--seeds", type=int, default=20)
    ap.add_argument("--batch", type=int, default=5000)
    a = ap.parse_args(argv)
    root = _project()
    sys.path.insert(0, str(REPO/"tests"))
    from sample_data import SMALL_MODEL
    from mlops_nb.evaluate import run_evaluate
    from mlops_nb.features import run_features
    from mlops_nb.core import close_figures
    from mlops_nb.monitor import run_monitor
    from mlops_nb.train import run_train
    from mlops_nb.tune import run_tune
    t0 = time.time()
    run_features(run_id="adult", wandb_mode="disabled")
    run_train(run_id="adult", wandb_mode="disabled", **{**SMALL_MODEL["train"], "nthread": 2})
    run_tune(run_id="adult", wandb_mode="disabled", **{**SMALL_MODEL["tune"], "nthread": 2})
    run_evaluate(run_id="adult", wandb_mode="disabled", **SMALL_MODEL["evaluate"])
    build = time.time() - t0
    pool = pd.read_parquet(root/"reports"/"runs"/"adult"/"preprocess"/"test.parquet")
    rows, d = [], root/"batches"
    d.mkdir()

    def case(name, batch, col=None, labels=True):
        p = d/f"{len(rows)}.parquet"
        batch.to_parquet(p)
        t = time.time()
        res = run_monitor(run_id="adult", current=str(p), labels=labels, batch_size=a.batch, wandb_mode="disabled")
        close_figures(res.figures)
        doc = res.data["report"]
        w = next(iter(doc["windows"].values()))
        est = (w["estimate"].get("estimate") or {}).get("metrics", {})
        perf = (w.get("performance") or {}).get("metrics", {})
        rows.append({"case": name, "verdict": doc["verdict"], "alerted": ", ".join(doc["alerted"]),
                     "column status": w["drift"]["features"][col]["status"] if col else "",
                     "psi": w["drift"]["features"][col]["psi"] if col else None,
                     "est_accuracy": est.get("accuracy"), "accuracy": perf.get("accuracy"),
                     "first reason": doc["reasons"][0] if doc["reasons"] else "",
                     "estimate reason": (w["estimate"].get("reasons") or [""])[0], "seconds": time.time() - t})
        print(rows[-1]["case"], rows[-1]["verdict"], rows[-1]["alerted"], f"{rows[-1]['seconds']:.1f}s", flush=True)

    for s in range(a.seeds): case(f"random batch {s}", pool.sample(a.batch, random_state=s))
    for k in (1, 2, 5):
        for s in range(3):
            b = pool.sample(a.batch, random_state=100 + s)
            case(f"age + {k} (batch {s})", b.assign(age=b["age"] + k), "age")
    case("race=Black share doubled", _doubled(pool, "race", "Black", a.batch, 1), "race")
    for c in [c for c in pool.columns if c != "income"]:
        b = pool.sample(a.batch, random_state=5).copy()
        num = pd.api.types.is_numeric_dtype(b[c])
        b[c] = b[c].astype(float if num else object)
        b.loc[np.random.default_rng(5).random(len(b)) < 0.2, c] = np.nan if num else None
        case(f"20% of {c} missing", b, c)
    b = pool.sample(a.batch, random_state=7).copy()
    seg = b["sex"] == "Female"
    b.loc[seg, "income"] = np.where(b.loc[seg, "income"] == ">50K", "<=50K", ">50K")
    case("labels flipped on sex=Female", b)
    b = _doubled(pool, "marital-status", "Married-civ-spouse", a.batch, 8, share=0.9)
    case("married share 90% (no labels)", b, "marital-status", labels=False)
    case("married share 90% (labels)", b, "marital-status")
    t = pd.DataFrame(rows)
    null = t[t["case"].str.startswith("random")]
    cov = t[t["case"] == "married share 90% (labels)"].iloc[0]
    out = {"build_seconds": build, "batch": a.batch, "false_alerts": int((null["verdict"] == "ALERT").sum()),
           "false_warns": int((null["verdict"] == "WARN").sum()), "n_random": len(null),
           "estimate_error_covariate_shift": cov["est_accuracy"] - cov["accuracy"],
           "estimate_error_random_mean_abs": float((null["est_accuracy"] - null["accuracy"]).abs().mean()),
           "cases": rows}
    pd.set_option("display.width", 220, "display.max_colwidth", 90)
    print(t.drop(columns=["first reason", "estimate reason"]).round(4).to_string())
    print(t[["case", "estimate reason"]].tail(3).to_string())
    print({k: v for k, v in out.items() if k != "cases"})
    dest = REPO/"reports"/"benchmarks"/"monitor_adult.json"
    dest.parent.mkdir(parents=True, exist_ok=True)
    dest.write_text(json.dumps(out, indent=1, default=str))
    shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
