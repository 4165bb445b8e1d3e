"""Generalisation: the default pipeline's final model on tables it was not designed on, against its own baselines and
against FLAML AutoML given the same time on the same split (issue 7, item 9).

Tables: Adult (standard split: adult.data / adult.test), scikit-learn's bundled breast cancer, iris, wine, digits and
diabetes (regression), a generated 1,000-row credit-like table, and two generated 20,000-row tables of known structure
(`linear`: logistic of a linear score; `interactions`: XOR and threshold interactions); see `benchmarks/tables.py`.
Per table and seed, in a throw-away project root (MLOPS_NB_ROOT, W&B disabled), the stage functions run with their
defaults except `seed` (non-Adult tables: `data`, `target`, `task`, `test_data=""` so that preprocess holds out a
seeded 20% test split, `engineered={}`, `sensitive=[]`): run_preprocess, run_features, run_train + run_tune (timed:
"ours_s"), run_evaluate (no SHAP). FLAML (`flaml.AutoML`, in its own environment made by `flaml_env.sh`, as a
subprocess) reads the same preprocessed train/test split from Parquet, with `time_budget` = our train + tune seconds,
metric log_loss / rmse and the same seed. On the test split: the objective (log loss for classifiers, RMSE for
regression; lower is better), ROC AUC and accuracy (ours at evaluate's threshold, FLAML's at 0.5) of our model, of our
best baseline (evaluate's baseline comparison) and of FLAML, and the paired-bootstrap 95% interval of (ours − FLAML) on
the objective. Medians over the seeds (42, 1, 2; `repeat` of them). Targets: ours never worse than its best baseline;
the interval of (ours − FLAML) reaches zero or favours ours (ci_low <= 0).

Quick variant (`python -m benchmarks generalisation --quick`, or MLOPS_NB_BENCH_QUICK=1): one seed, the small tables
only, tune with n_trials 20 / timeout 20 s, 200 bootstrap resamples in evaluate. MLOPS_NB_BENCH_TABLES=adult,linear
runs only the named tables (in either mode). `make bench ARGS="generalisation --quick"` does the same as the command.
FLAML's environment is made on first use by `benchmarks/flaml_env.sh`; when that fails, FLAML is skipped and said so.
"""
from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from benchmarks import side_python

DESCRIPTION = "Default pipeline vs its baselines and FLAML (same split, same time) on Adult, scikit-learn and generated tables"
SEEDS = (42, 1, 2)
SMALL = ["breast_cancer", "iris", "wine", "digits", "diabetes", "credit_like"]
TABLES = ["adult", *SMALL, "linear", "interactions"]
QUICK_TUNE = {"n_trials": 20, "timeout": 20.0}
HERE = Path(__file__).resolve().parent
TIE = 1e-6                                           # relative difference below which ours and a baseline are equal
W = "disabled"                                       # W&B mode of every stage call


def _metric_fns():
    """compute_metrics, paired_bootstrap and objective(task) of the package's one metrics module."""
    from mlops_nb import metrics as m
    return m.compute_metrics, m.paired_bootstrap, m.objective


def flaml_python() -> tuple[str | None, str]:
    """The FLAML environment's Python (made by flaml_env.sh when missing), or None and why it is unavailable."""
    return side_python("flaml_env.sh", "FLAML_VENV", ".venv-flaml", "FLAML")

def _stage_kwargs(name: str, root: Path) -> dict:
    """Per-stage keyword arguments for table `name` (writes its CSV into the project root on first use)."""
    if name == "adult": return {"preprocess": {}, "features": {}, "evaluate": {}}
    from benchmarks.tables import load_table
    path = root/"data"/f"{name}.csv"
    df, target, task = load_table(name)
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        df.to_csv(path, index=False)
    return {"preprocess": {"data": str(path), "target": target, "task": task, "test_data": ""},
            "features": {"engineered": {}}, "evaluate": {"sensitive": []}}


def _classes(ev) -> list | None:
    """The final model's class labels (None for regression), from what run_evaluate returned."""
    gate = ev.data.get("gate") or {}
    if "classes" in gate: return list(gate["classes"]) or None
    for k in ("bundle", "spec"):
        if getattr(ev.data.get(k), "classes", None) is not None: return list(ev.data[k].classes) or None
    return None


def _ours(ev, task: str, target: str, classes) -> tuple[np.ndarray, np.ndarray, float]:
    """Test labels (class indices or values), our test predictions and the decision threshold, from evaluate's output."""
    preds = ev.data.get("predictions")
    if preds is None: preds = ev.out.read_parquet("predictions.parquet")
    preds = preds.sort_values("row") if "row" in preds else preds
    if task == "regression":
        return preds[target].to_numpy(np.float64), preds["prediction"].to_numpy(np.float64), 0.5
    y = _encode(preds[target], classes)
    if task == "binary": p = preds["probability"].to_numpy(np.float64)
    else: p = preds[[f"p_{c}" for c in classes]].to_numpy(np.float64)
    thr = ev.metrics.get("threshold")
    return y, p, 0.5 if thr is None else float(thr)


def _encode(labels, classes) -> np.ndarray:
    """Class labels as indices into `classes` (compared as text); names a label that is not a class."""
    idx = {str(c): i for i, c in enumerate(classes)}
    bad = sorted({str(v) for v in labels} - set(idx))
    if bad: raise ValueError(f"target labels {bad[:5]} are not among the model's classes {list(idx)}")
    return np.array([idx[str(v)] for v in labels], int)


def _best_baseline(ev, obj: str, task: str, y, compute) -> tuple[str | None, float | None]:
    """The best of our own baselines on the test objective: evaluate's baseline table, else train/baselines.json."""
    t = ev.tables.get("baselines")
    if t is not None and {"name", "metric", "baseline"} <= set(t.columns):
        s = t[t["metric"] == obj].set_index("name")["baseline"].astype(float)
        if len(s): return str(s.idxmin()), float(s.min())
    return _scored_baselines(ev, obj, task, y, compute)


def _baseline_ci(ev, obj: str, name: str | None) -> tuple:
    """evaluate's paired-bootstrap interval of (model − baseline `name`) on the objective, or Nones."""
    t = ev.tables.get("baselines")
    if name is None or t is None or not {"name", "metric", "diff", "ci_low", "ci_high"} <= set(t.columns): return None, None, None
    r = t[(t["name"] == name) & (t["metric"] == obj)]
    return (None, None, None) if not len(r) else tuple(float(r.iloc[0][k]) for k in ("diff", "ci_low", "ci_high"))


def _scored_baselines(ev, obj: str, task: str, y, compute) -> tuple[str | None, float | None]:
    """The recorded baselines scored on the test rows with the package's functions."""
    try:                                          # fallback: score the recorded baselines with the package's functions
        from mlops_nb.core import stage_dir
        from mlops_nb.features import load_xy
        try: from mlops_nb.baselines import predict_baseline
        except ImportError: from mlops_nb.train import predict_baseline
        X, _, spec = load_xy(ev.run_dir, "test")
        recorded = stage_dir(ev.run_dir, "train").read_json("baselines.json")["baselines"]
        vals = {n: compute(task, y, np.asarray(predict_baseline(b, X, spec), np.float64))[obj] for n, b in recorded.items()}
        return (min(vals, key=vals.get), float(min(vals.values()))) if vals else (None, None)
    except Exception as e:  # noqa: BLE001 (the row reports the gap instead of failing the table)
        print(f"   no baseline scores: {type(e).__name__}: {e}", flush=True)
        return None, None


def run_flaml(py: str, work: Path, train, test, target: str, task: str, classes, budget: float, seed: int) -> tuple[np.ndarray, dict]:
    """FLAML's test predictions (same layout as ours) and its report, fitted in the FLAML environment on train/test."""
    work.mkdir(parents=True, exist_ok=True)
    for name, df in (("train", train), ("test", test)):
        df = df.copy()
        if classes: df[target] = _encode(df[target], classes)
        df.to_parquet(work/f"{name}.parquet", index=False)
    cmd = [py, str(HERE/"flaml_run.py"), str(work), "--target", target, "--task", task, "--budget", f"{budget:.1f}",
           "--seed", str(seed), "--classes", str(len(classes or []))]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=3 * budget + 300)
    if r.returncode:
        raise RuntimeError(f"FLAML failed (exit {r.returncode}): {' | '.join(r.stderr.strip().splitlines()[-3:])}")
    import pandas as pd
    pred = pd.read_parquet(work/"flaml_pred.parquet")
    p = pred.to_numpy(np.float64) if task == "multiclass" else pred["pred"].to_numpy(np.float64)
    return p, json.loads((work/"flaml.json").read_text())


def ours_run(name: str, seed: int, root: Path, quick: bool) -> tuple:
    """Our default pipeline on table `name` with `seed`: (preprocess result, evaluate result, tune result, train + tune s)."""
    from mlops_nb.train import run_train                  # noqa: first (sets the thread policy before XGBoost loads)
    from mlops_nb.preprocess import run_preprocess
    from mlops_nb.features import run_features
    from mlops_nb.tune import run_tune
    from mlops_nb.evaluate import run_evaluate
    kw, rid = _stage_kwargs(name, root), f"{name}-s{seed}"
    pre = run_preprocess(run_id=rid, seed=seed, wandb_mode=W, **kw["preprocess"])
    run_features(run_id=rid, wandb_mode=W, **kw["features"])
    t0 = time.perf_counter()
    run_train(run_id=rid, seed=seed, wandb_mode=W)
    tune = run_tune(run_id=rid, seed=seed, wandb_mode=W, **(QUICK_TUNE if quick else {}))
    ours_s = time.perf_counter() - t0
    ev = run_evaluate(run_id=rid, seed=seed, n_explain=0, explain_rows=0, wandb_mode=W,
                      **({"n_bootstrap": 200} if quick else {}), **kw["evaluate"])
    return pre, ev, tune, ours_s


def case(name: str, seed: int, root: Path, py: str | None, quick: bool) -> dict:
    """One table and seed: our pipeline, its best baseline and FLAML (skipped when `py` is None) on the same test split."""
    compute, paired, objective = _metric_fns()
    pre, ev, tune, ours_s = ours_run(name, seed, root, quick)
    schema = pre.out.read_json("schema.json")
    task, target, obj = schema["task"], schema["target"], objective(schema["task"])
    classes = _classes(ev) if task != "regression" else None
    y, pred, thr = _ours(ev, task, target, classes)
    train_raw, test_raw = pre.out.read_parquet("train.parquet"), pre.out.read_parquet("test.parquet")
    y_raw = test_raw[target].to_numpy(np.float64) if task == "regression" else _encode(test_raw[target], classes)
    if not np.array_equal(y_raw, y): raise ValueError(f"{name}: evaluate's predictions are not in the test split's row order")
    ours = compute(task, y, pred, thr)
    base_name, base = _best_baseline(ev, obj, task, y, compute)
    bdiff, blo, bhi = _baseline_ci(ev, obj, base_name)
    row = {"table": name, "seed": seed, "rows_train": len(train_raw), "rows_test": len(test_raw), "task": task, "metric": obj,
           "ours": ours[obj], "baseline": base_name, "best_baseline": base,
           "ours_ge_baseline": None if base is None else bool(ours[obj] <= base * (1 + TIE)),
           "base_diff": bdiff, "base_ci_low": blo, "base_ci_high": bhi,
           "ours_roc_auc": ours.get("roc_auc"), "ours_accuracy": ours.get("accuracy"), "ours_s": round(ours_s, 1),
           "tune_trials": tune.metrics.get("n_trials")}
    if py is None: return row
    t0 = time.perf_counter()
    fp, rep = run_flaml(py, root/"flaml"/f"{name}-s{seed}", train_raw, test_raw, target, task, classes, ours_s, seed)
    fl = compute(task, y, fp, 0.5)
    pb = paired(task, y, pred, fp, threshold_a=thr, threshold_b=0.5, n_bootstrap=1000, seed=seed)
    d = pb.loc[obj]
    row.update(flaml=fl[obj], flaml_roc_auc=fl.get("roc_auc"), flaml_accuracy=fl.get("accuracy"),
               diff=float(d["diff"]), ci_low=float(d["ci_low"]), ci_high=float(d["ci_high"]),
               ci_ok=bool(d["ci_low"] <= 0), flaml_s=round(time.perf_counter() - t0, 1), flaml_model=rep.get("best_estimator"))
    return row


def summarise(rows: list[dict]) -> list[dict]:
    """Per table: medians over the seeds, in the printed table's layout."""
    med = lambda rs, k: None if any(r.get(k) is None for r in rs) else statistics.median(r[k] for r in rs)
    out = []
    for name in dict.fromkeys(r["table"] for r in rows):
        rs = [r for r in rows if r["table"] == name]
        ours, base, fl = med(rs, "ours"), med(rs, "best_baseline"), med(rs, "flaml")
        lo, hi, diff = med(rs, "ci_low"), med(rs, "ci_high"), med(rs, "diff")
        out.append({"table": name, "rows": rs[0]["rows_train"] + rs[0]["rows_test"], "task": rs[0]["task"],
                    "metric": rs[0]["metric"], "ours": ours, "best_baseline": base,
                    "baseline": statistics.mode(r["baseline"] for r in rs) if base is not None else "", "flaml": fl,
                    "diff [CI]": "" if diff is None else f"{diff:+.4f} [{lo:+.4f}, {hi:+.4f}]",
                    "ours>=baseline": "" if base is None else "yes" if ours <= base * (1 + TIE) else "NO",
                    "vs baseline [CI]": "" if med(rs, "base_diff") is None else
                        f"{med(rs, 'base_diff'):+.4f} [{med(rs, 'base_ci_low'):+.4f}, {med(rs, 'base_ci_high'):+.4f}]",
                    "sig. worse": "" if med(rs, "base_ci_low") is None else "YES" if med(rs, "base_ci_low") > 0 else "no",
                    "CI ok": "" if lo is None else "yes" if lo <= 0 else "NO",
                    "auc ours/flaml": "" if med(rs, "ours_roc_auc") is None else
                        f"{med(rs, 'ours_roc_auc'):.4f}/" + ("" if fl is None else f"{med(rs, 'flaml_roc_auc'):.4f}"),
                    "acc ours/flaml": "" if med(rs, "ours_accuracy") is None else
                        f"{med(rs, 'ours_accuracy'):.4f}/" + ("" if fl is None else f"{med(rs, 'flaml_accuracy'):.4f}"),
                    "ours_s": med(rs, "ours_s"), "seeds": len(rs)})
    return out


def run(repeat: int = 3, quick: bool = False, tables: list | None = None) -> dict:
    quick = quick or os.environ.get("MLOPS_NB_BENCH_QUICK", "") not in ("", "0")
    os.environ["WANDB_MODE"] = W
    seeds, names = (SEEDS[:1], SMALL) if quick else (SEEDS[:max(1, repeat)], TABLES)
    names = tables or [t for t in os.environ.get("MLOPS_NB_BENCH_TABLES", "").split(",") if t] or names
    unknown = sorted(set(names) - set(TABLES))
    if unknown: raise ValueError(f"unknown tables {unknown}; known: {', '.join(TABLES)}")
    py, note = flaml_python()
    print(f"   {note}", flush=True)
    from benchmarks import adult_project
    rows, t0 = [], time.perf_counter()
    with adult_project() as root:
        for name in names:
            for seed in seeds:
                try: rows.append(case(name, seed, root, py, quick))
                except Exception as e:  # noqa: BLE001 (one failing table does not hide the others)
                    print(f"   {name} seed {seed} failed: {type(e).__name__}: {e}", flush=True)
                    rows.append({"table": name, "seed": seed, "error": f"{type(e).__name__}: {e}"})
                print(f"   {name} seed {seed}: {json.dumps(rows[-1], default=str)}", flush=True)
    ok = [r for r in rows if "error" not in r]
    summary = summarise(ok)
    return {"name": "generalisation", "quick": quick, "rows": summary, "per_seed": rows, "flaml": note,
            "failed_cases": len(rows) - len(ok), "seconds": round(time.perf_counter() - t0, 1),
            "never_below_baseline": bool(summary) and len(ok) == len(rows) and all(r["ours>=baseline"] == "yes" for r in summary),
            "ci_reaches_zero_or_favours_ours": (bool(summary) and len(ok) == len(rows)
                                                and all(r["CI ok"] == "yes" for r in summary)) if py else None,
            "notes": ("Objective: log loss (classification) or RMSE (regression), lower is better; `ours>=baseline`: ours "
                      f"at most the best baseline's test objective (relative tie {TIE:g}); `vs baseline`: ours − best "
                      "baseline with evaluate's paired-bootstrap interval, `sig. worse` when it lies wholly above 0; diff = ours − FLAML "
                      "with its 95% paired-bootstrap interval (1,000 resamples); medians over the seeds "
                      f"{', '.join(map(str, seeds))}. FLAML's time_budget = our train + tune seconds on the same "
                      "machine; ours' accuracy at evaluate's chosen threshold, FLAML's at 0.5.")}


if __name__ == "__main__":
    print(json.dumps(run(quick="--quick" in sys.argv), indent=2, default=str))
