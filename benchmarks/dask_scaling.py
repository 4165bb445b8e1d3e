"""Scaling of preprocess + features + train + batch scoring with the table size: the local engine against Dask.

Data: synthetic Adult-like tables of 50,000, 500,000 and 5,000,000 rows (`--quick`: 20,000, 200,000, 2,000,000).
Every column is drawn independently from its marginal in the bundled Adult training data (missing values included);
the target `income` follows a known rule (a logistic function of age, education-num, hours-per-week, capital-gain,
marital-status and sex, with seeded noise), so the models have something to learn. Each table is written as
partitioned Parquet, 100,000 rows per file.

Cases, each in a fresh subprocess with W&B disabled, on the same files:
(a) local engine: `run_preprocess(row_key="*")` (the split by row hash that the dask engine makes), `run_features`,
    `fit_xgb` for a fixed number of rounds (`ROUNDS`, no early stopping) on every training row, saved as a bundle,
    and `score_file` on the test split;
(b) dask engine on a LocalCluster of 2 worker processes (1 thread each), started once per case and passed to every
    step as `dask_scheduler`: `run_preprocess`, `run_features` and `run_train(early_stopping_rounds=0)` with the same
    rounds, then `score_dask` on the test split's parts.
Time: wall seconds per step and in total (the cluster's start excluded, about 2 s). Memory: peak RSS (Linux
`VmHWM`) of the local process; for Dask, the largest peak among the workers (each worker reports its own `VmHWM`
after the last step) and the driving process's peak.

Reported: the curve, its log-log slope per engine (least squares over the three sizes; target <= 1.1: near-linear
time; `slope_<engine>_upper` over the two largest sizes only, where fixed costs weigh least), and the growth of peak memory from the middle size to the largest (target for the Dask workers <= 1.5x; the
local engine's growth is reported). The machine is shared and has 2 cores: read the slopes and ratios.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from benchmarks import REPO

DESCRIPTION = "preprocess + features + train + scoring on 50k/500k/5M Adult-like rows: local engine vs a 2-worker Dask LocalCluster"
SIZES, QUICK_SIZES = (50_000, 500_000, 5_000_000), (20_000, 200_000, 2_000_000)
PART_ROWS = 100_000
ROUNDS = 50
SLOPE_TARGET, MEMORY_TARGET = 1.1, 1.5
ADULT = ["age", "workclass", "fnlwgt", "education", "education-num", "marital-status", "occupation", "relationship",
         "race", "sex", "capital-gain", "capital-loss", "hours-per-week", "native-country"]


def marginals() -> dict:
    """Each Adult feature column's values (one per training row, missing as None/NaN), to draw from."""
    import pandas as pd
    df = pd.read_csv(REPO/"data"/"raw"/"adult.data", header=None, names=ADULT + ["income"], skipinitialspace=True,
                     na_values="?")
    return {c: df[c].to_numpy() for c in ADULT}


def adult_like(n: int, out: Path, seed: int = 0) -> Path:
    """Write `n` synthetic Adult-like rows as Parquet files of PART_ROWS rows in folder `out`."""
    import pandas as pd
    src, out = marginals(), Path(out)
    out.mkdir(parents=True, exist_ok=True)
    for i, start in enumerate(range(0, n, PART_ROWS)):
        rng = np.random.default_rng([seed, i])
        m = min(PART_ROWS, n - start)
        df = pd.DataFrame({c: v[rng.integers(0, len(v), m)] for c, v in src.items()})
        z = (-7.0 + 0.03 * df["age"] + 0.35 * df["education-num"].fillna(9) + 0.025 * df["hours-per-week"]
             + 0.0002 * df["capital-gain"].clip(upper=20000) + 1.8 * (df["marital-status"] == "Married-civ-spouse")
             + 0.3 * (df["sex"] == "Male") + rng.logistic(size=m))
        df["income"] = np.where(z > 0, ">50K", "<=50K")
        df.to_parquet(out/f"part.{i:05d}.parquet", index=False)
    return out


CASE = r"""
import json, os, sys, time
from pathlib import Path
def hwm():
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"): return int(line.split()[1]) / 1024
engine, data, rounds = sys.argv[1], sys.argv[2], int(sys.argv[3])
from mlops_nb.preprocess import run_preprocess
from mlops_nb.features import run_features
steps = {}
def timed(name, fn):
    t0 = time.perf_counter(); r = fn(); steps[name] = round(time.perf_counter() - t0, 2); return r
if __name__ == "__main__":
    kw = dict(run_id="r", wandb_mode="disabled")
    run = Path(os.environ["MLOPS_NB_ROOT"])/"reports"/"runs"/"r"
    if engine == "local":
        from mlops_nb.features import load_xy
        from mlops_nb.model import ModelBundle
        from mlops_nb.score import score_file
        from mlops_nb.train import fit_xgb, xgb_params
        timed("preprocess", lambda: run_preprocess(data=data, target="income", test_data="", row_key="*", **kw))
        timed("features", lambda: run_features(engineered={}, **kw))
        def train():
            X, y, spec = load_xy(run, "train")
            b, _ = fit_xgb(X, y, None, None, spec, xgb_params(spec), rounds, None, eval_train=False)
            ModelBundle(b, spec, None).save(run/"model")
        timed("train", train)
        r = timed("score", lambda: score_file(run/"preprocess"/"test.parquet", run/"scored.parquet", bundle=run/"model", progress=False))
        print(json.dumps({"steps": steps, "rows_scored": r["rows"], "peak_mb": hwm()}))
    else:
        import logging
        from distributed import Client, LocalCluster
        from mlops_nb.dask_score import score_dask
        from mlops_nb.train import run_train
        with LocalCluster(n_workers=2, threads_per_worker=1, dashboard_address=None, silence_logs=logging.ERROR) as c, Client(c) as cl:
            d = dict(engine="dask", dask_scheduler=c.scheduler_address, **kw)
            timed("preprocess", lambda: run_preprocess(data=data, target="income", test_data="", **d))
            timed("features", lambda: run_features(engineered={}, **d))
            timed("train", lambda: run_train(max_rounds=rounds, early_stopping_rounds=0, **d))
            r = timed("score", lambda: score_dask(run/"preprocess"/"test", run/"scored", bundle=run/"train"/"model", scheduler=c.scheduler_address))
            def worker_hwm():
                for line in open("/proc/self/status"):
                    if line.startswith("VmHWM:"): return int(line.split()[1]) / 1024
            peaks = list(cl.run(worker_hwm).values())
        print(json.dumps({"steps": steps, "rows_scored": r["rows"], "peak_mb": max(peaks), "worker_peaks_mb": peaks, "driver_peak_mb": hwm()}))
"""


def case(engine: str, data: Path, root: Path) -> dict:
    """One engine on one table in a fresh subprocess and project root; its step times and peak memory."""
    env = {**os.environ, "MLOPS_NB_ROOT": str(root), "WANDB_MODE": "disabled", "PYTHONPATH": str(REPO), "MPLBACKEND": "Agg"}
    root.mkdir(parents=True)
    (root/"case.py").write_text(CASE)
    r = subprocess.run([sys.executable, str(root/"case.py"), engine, str(data), str(ROUNDS)], capture_output=True,
                       text=True, env=env, cwd=root)
    if r.returncode: raise RuntimeError(f"{engine} case on {data} failed ({r.returncode}): {r.stderr[-3000:]}")
    out = json.loads(r.stdout.strip().splitlines()[-1])
    out["total_s"] = round(sum(out["steps"].values()), 2)
    return out


def slope(xs, ys) -> float:
    """Least-squares slope of log(ys) on log(xs)."""
    return float(np.polyfit(np.log(xs), np.log(ys), 1)[0])


def run(repeat: int = 1, quick: bool = False) -> dict:
    """Every size with both engines; the curve, the slopes and the memory growth."""
    sizes = QUICK_SIZES if quick else SIZES
    rows, res = [], {}
    with tempfile.TemporaryDirectory(prefix="mlops_nb_scaling_") as tmp:
        tmp = Path(tmp)
        for n in sizes:
            t0 = time.perf_counter()
            data = adult_like(n, tmp/f"adult_like_{n}")
            print(f"   {n:,} rows generated in {time.perf_counter() - t0:.1f} s", flush=True)
            for engine in ("local", "dask"):
                r = case(engine, data, tmp/f"proj_{engine}_{n}")
                res[(engine, n)] = r
                rows.append({"case": engine, "rows": n, **{f"{k}_s": v for k, v in r["steps"].items()},
                             "total_s": r["total_s"], "peak_mb": round(r["peak_mb"]),
                             "rows_per_s": round(n / r["total_s"])})
                print(f"   {engine}, {n:,} rows: {r['total_s']:.1f} s, peak {r['peak_mb']:.0f} MB {r['steps']}", flush=True)
    out = {"rows": rows, "sizes": list(sizes), "rounds": ROUNDS, "quick": quick}
    for engine in ("local", "dask"):
        out[f"slope_{engine}"] = round(slope(sizes, [res[(engine, n)]["total_s"] for n in sizes]), 3)
        out[f"slope_{engine}_upper"] = round(slope(sizes[1:], [res[(engine, n)]["total_s"] for n in sizes[1:]]), 3)  # without the smallest, where fixed costs dominate
        out[f"memory_growth_{engine}"] = round(res[(engine, sizes[2])]["peak_mb"] / res[(engine, sizes[1])]["peak_mb"], 3)
    out["dask_driver_peak_mb"] = [round(res[("dask", n)]["driver_peak_mb"]) for n in sizes]
    out["meets_slope_target"] = all(out[f"slope_{e}"] <= SLOPE_TARGET for e in ("local", "dask"))
    out["meets_memory_target"] = out["memory_growth_dask"] <= MEMORY_TARGET
    out["targets"] = {"slope": SLOPE_TARGET, "dask_worker_memory_growth": MEMORY_TARGET}
    return out
