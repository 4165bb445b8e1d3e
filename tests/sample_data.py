"""Small, seeded data for tests: a sample of the bundled Adult files in their raw format, and generated tables."""
import json
from pathlib import Path

import numpy as np
import pandas as pd

REPO = Path(__file__).resolve().parent.parent
RAW = REPO/"data"/"raw"


def _sha(p):
    import hashlib
    return hashlib.sha256(Path(p).read_bytes()).hexdigest()


def write_adult_sample(root: Path, n_train: int = 2000, n_test: int = 1000, seed: int = 0) -> Path:
    """Copy a seeded sample of the bundled Adult files, in their raw format, to `root/data/raw` with a data card."""
    raw = root/"data"/"raw"
    raw.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    card = json.loads((RAW/"datacard.json").read_text())
    for name, n in (("adult.data", n_train), ("adult.test", n_test)):
        lines = (RAW/name).read_text().splitlines(keepends=True)
        head = lines[:1] if name == "adult.test" else []
        body = [l for l in lines[len(head):] if l.strip()]
        keep = sorted(rng.choice(len(body), size=min(n, len(body)), replace=False))
        (raw/name).write_text("".join(head + [body[i] for i in keep]))
        card["files"][name].update(sha256=_sha(raw/name), rows=len(keep))
    (raw/"datacard.json").write_text(json.dumps(card, indent=2))
    return raw


def make_table(kind: str, n: int = 600, seed: int = 0) -> pd.DataFrame:
    """A small mixed-type table for `kind` in binary, multiclass, regression, made with scikit-learn's generators."""
    from sklearn.datasets import make_classification, make_regression
    rng = np.random.default_rng(seed)
    if kind == "regression":
        X, y = make_regression(n_samples=n, n_features=5, n_informative=4, noise=5.0, random_state=seed)
    else:
        X, y = make_classification(n_samples=n, n_features=5, n_informative=3, n_redundant=1,
                                   n_classes=2 if kind == "binary" else 3, n_clusters_per_class=1, random_state=seed)
    df = pd.DataFrame(X, columns=[f"x{i}" for i in range(X.shape[1])])
    df["color"] = rng.choice(["red", "green", "blue"], size=n)
    df["group"] = np.where(df["x0"] + rng.normal(0, 1, n) > 0, "a", "b")
    df.loc[rng.choice(n, n // 20, replace=False), "x1"] = np.nan
    df.loc[rng.choice(n, n // 20, replace=False), "color"] = None
    df["target"] = y if kind == "regression" else np.array(["no", "yes", "maybe"])[y] if kind == "multiclass" else y
    return df


def table_run(root: Path, kind: str, run_id: str = "", n: int = 600) -> Path:
    """A run (W&B disabled) whose features come from a generated `kind` table, the test split taken off the same file."""
    from mlops_nb.features import run_features
    from mlops_nb.preprocess import run_preprocess
    run_id = run_id or kind
    path = root/"data"/f"{kind}.csv"
    make_table(kind, n=n).to_csv(path, index=False)
    run_preprocess(run_id=run_id, data=str(path), target="target", test_data="", wandb_mode="disabled")
    return run_features(run_id=run_id, engineered={}, wandb_mode="disabled").run_dir


def adult_run(run_id: str) -> Path:
    """A run (W&B disabled) with features of the project's Adult sample (preprocess runs first with its defaults)."""
    from mlops_nb.features import run_features
    return run_features(run_id=run_id, wandb_mode="disabled").run_dir


def wandb_summary(wandb_dir: str) -> dict:
    """An offline W&B run read back by the W&B client (`wandb leet inspect --summary --json`)."""
    import os
    import subprocess
    import sys
    r = subprocess.run([str(Path(sys.executable).parent/"wandb"), "leet", "inspect", "--summary", "--json", wandb_dir],
                       capture_output=True, text=True, timeout=120, env={**os.environ, "WANDB_SILENT": "true"})
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


SMALL_MODEL = dict(train=dict(cv_folds=3, max_rounds=80, early_stopping_rounds=10, nthread=1),
                   tune=dict(n_trials=2, max_rounds=80, early_stopping_rounds=10, timeout=60.0, refit_lr_factor=1.0,
                             n_startup_trials=2, nthread=1),
                   evaluate=dict(n_bootstrap=200, n_explain=200, explain_rows=3, min_slice_size=20))


def evaluated_run(run_id: str, kind: str = "adult", n: int = 600, wandb_mode: str = "disabled") -> Path:
    """A run through evaluate with a small, fast model: the project's Adult sample, or a generated `kind` table."""
    from mlops_nb.core import project_root
    from mlops_nb.evaluate import run_evaluate
    from mlops_nb.train import run_train
    from mlops_nb.tune import run_tune
    if kind == "adult": adult_run(run_id)
    else: table_run(project_root(), kind, run_id=run_id, n=n)
    run_train(run_id=run_id, wandb_mode=wandb_mode, **SMALL_MODEL["train"])
    run_tune(run_id=run_id, wandb_mode=wandb_mode, **SMALL_MODEL["tune"])
    ev = dict(SMALL_MODEL["evaluate"], sensitive=[] if kind != "adult" else None)
    return run_evaluate(run_id=run_id, wandb_mode=wandb_mode, **ev).run_dir
