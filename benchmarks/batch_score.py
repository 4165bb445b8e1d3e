"""Batch scoring of 1,000,000 rows: `score_file` (Parquet in, Parquet out, chunked) against the raw model, and its memory.

Data: the bundled Adult test rows (the run's `preprocess/test.parquet`, 16,281 rows) resampled with replacement
(seeded) to 1,000,000 and 2,000,000 rows, with an `id` column, written as Parquet (row groups of 100,000).
Model: the train stage's model with its defaults on the full bundled Adult data (the model `serve_load` serves);
the quick variant trains a small one instead (3 folds, at most 80 rounds) and uses 200,000 / 400,000 rows (memory
cases in chunks of 25,000). Row groups are as large as the chunks: memory is bounded by the larger of the two.

Throughput, cases alternating within each repetition, medians of `repeat`:
(a) raw model: the booster's `inplace_predict` (default threads) on all rows already transformed in memory as one
    float32 array (the transform is not timed): rows/s;
(b) `score_file(input.parquet, output.parquet, bundle=...)` with the default chunk of 100,000 rows: reading,
    cleaning, bad-row checks, `features.transform`, predictions, decisions and writing, end to end: rows/s.
(c) `score_dask` on the same rows as a folder of Parquet files (one per row group), on a LocalCluster of 2 worker
    processes started by the call (its start is timed: this is what `mlops-nb score --engine dask` costs here).
`ratio` = (b) / (a) in wall-clock rows/s (target >= 0.80); `cpu_ratio` the same with the process's CPU seconds, which
the other jobs on a shared machine disturb much less than wall-clock time; `dask_ratio` = (c) / (b) in wall-clock
rows/s (the workers' CPU time is not this process's, so (c) has no CPU figure).

Memory: peak RSS (Linux `VmHWM`, reset after the model is loaded) of a fresh subprocess scoring the 1M-row and the 2M-row file (and the 1M-row file
with a chunk 4x larger), against the same subprocess reading the whole table into memory first (what a non-chunked
scorer does). The chunked peak should stay flat as the table doubles and move with the chunk size.
The machine is shared with other jobs and noisy: read the ratios, measured in the same run.
"""
from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

DESCRIPTION = "score_file on 1M Adult-shaped rows (Parquet) vs the raw model's inplace_predict; peak RSS vs table size"
from benchmarks import REPO, adult_project

TARGET = 0.80
CHUNK = 100_000

MEMORY = """
import json, sys, time
from mlops_nb.model import ModelBundle

def status(key):
    for line in open("/proc/self/status"):
        if line.startswith(key + ":"): return int(line.split()[1]) / 1024   # kB -> MB
src, out, bundle, chunk, mode = sys.argv[1:6]
b = ModelBundle.load(bundle)
import pandas, pyarrow.parquet, mlops_nb.score                              # imports done before the baseline
base = status("VmRSS")
try: open("/proc/self/clear_refs", "w").write("5")                          # reset the peak (VmHWM) to the current RSS
except OSError: pass
t0 = time.perf_counter()
if mode == "chunked":
    rows = mlops_nb.score.score_file(src, out, bundle=bundle, chunk_rows=int(chunk), progress=False)["rows"]
else:                                   # the whole table in memory: read, transform, predict, write
    df = pandas.read_parquet(src)
    p = b.predict(df)
    df[["id"]].assign(prediction=b.decide(p), probability=p).to_parquet(out)
    rows = len(df)
print(json.dumps({"rows": rows, "base_mb": base, "peak_mb": status("VmHWM"), "seconds": time.perf_counter() - t0}))
"""


def train_model(quick: bool) -> tuple[Path, Path]:
    """The model bundle folder and the run's raw test rows: the train stage's defaults (quick: a small model)."""
    from mlops_nb.model import load_run_bundle
    from mlops_nb.train import run_train
    small = dict(cv_folds=3, max_rounds=80, early_stopping_rounds=10) if quick else {}
    res = run_train(run_id="batch", wandb_mode="disabled", **small)
    return Path(load_run_bundle(res.run_dir).path), Path(res.run_dir)/"preprocess"/"test.parquet"


def resample(test: Path, out: Path, rows: int, group: int = CHUNK, seed: int = 0) -> Path:
    """`rows` rows drawn with replacement from the table `test`, with an `id` column, as Parquet (row groups of `group`)."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq
    t = pq.read_table(test)
    rng = np.random.default_rng(seed)
    with pq.ParquetWriter(out, pa.schema([("id", pa.int64()), *t.schema])) as w:
        for start in range(0, rows, group):
            n = min(group, rows - start)
            part = t.take(pa.array(rng.integers(0, len(t), n)))
            w.write_table(part.add_column(0, "id", pa.array(np.arange(start, start + n, dtype=np.int64))))
    return out


def partitioned(src: Path, out: Path) -> Path:
    """The rows of `src` as a folder of Parquet files, one per row group: a partitioned table for the Dask engine."""
    import pyarrow.parquet as pq
    pf = pq.ParquetFile(src)
    out.mkdir()
    for i in range(pf.num_row_groups): pq.write_table(pf.read_row_group(i), out/f"part.{i}.parquet")
    return out


def timed(fn) -> tuple[float, float]:
    """Wall-clock and CPU seconds of `fn()` (CPU: this process, all threads)."""
    w, c = time.perf_counter(), time.process_time()
    fn()
    return time.perf_counter() - w, time.process_time() - c


def throughput(src: Path, bundle: Path, tmp: Path, repeat: int) -> tuple[list, dict]:
    """Raw `inplace_predict` vs `score_file` vs `score_dask` on the rows of `src`, alternating; rows and the medians."""
    import numpy as np
    import pyarrow.parquet as pq
    from mlops_nb.features import transform
    from mlops_nb.model import ModelBundle
    from mlops_nb.dask_score import score_dask
    from mlops_nb.score import score_file
    b = ModelBundle.load(bundle)
    parts = partitioned(src, tmp/"parts")
    X = np.ascontiguousarray(transform(pq.read_table(src).to_pandas(), b.spec).to_numpy(np.float32))
    n, rng = len(X), (0, b.best_iteration + 1)
    raw = lambda: b.booster.inplace_predict(X, iteration_range=rng)
    score = lambda: score_file(src, tmp/"scored.parquet", bundle=bundle, chunk_rows=CHUNK, progress=False)
    dask = lambda: score_dask(parts, tmp/"scored_dask", bundle=bundle, workers=2)
    n_parts = len(list(parts.iterdir()))
    times = {"raw inplace_predict (float32 in memory)": [], f"score_file (chunks of {CHUNK:,})": [],
             f"score_dask (LocalCluster of 2 workers, {n_parts} partitions)": []}
    raw()                                                   # warm-up
    for i in range(repeat):
        for case, fn in zip(times, (raw, score, dask)):
            times[case].append(timed(fn))
            print(f"   [{i + 1}/{repeat}] {case}: {times[case][-1][0]:.1f}s wall, {times[case][-1][1]:.1f}s cpu", flush=True)
    rows = []
    for case, ts in times.items():
        wall, cpu = statistics.median(t[0] for t in ts), statistics.median(t[1] for t in ts)
        rows.append({"case": case, "rows": n, "median_s": wall, "min_s": min(t[0] for t in ts),
                     "max_s": max(t[0] for t in ts), "rows_per_s": n / wall,
                     **({} if case.startswith("score_dask") else {"cpu_s": cpu, "rows_per_cpu_s": n / cpu})})
    del X
    return rows, {"ratio": rows[1]["rows_per_s"] / rows[0]["rows_per_s"], "dask_ratio": rows[2]["rows_per_s"] / rows[1]["rows_per_s"],
                  "cpu_ratio": rows[1]["rows_per_cpu_s"] / rows[0]["rows_per_cpu_s"], "trees": b.best_iteration + 1}


def peak_rss(src: Path, bundle: Path, out: Path, chunk: int, mode: str = "chunked") -> dict:
    """Peak RSS (MB) of a fresh subprocess scoring `src` (`mode`: chunked with `chunk` rows, or whole)."""
    r = subprocess.run([sys.executable, "-c", MEMORY, str(src), str(out), str(bundle), str(chunk), mode],
                       capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(REPO)})
    if r.returncode: raise RuntimeError(f"memory case failed ({r.returncode}): {r.stderr[-3000:]}")
    return json.loads(r.stdout.strip().splitlines()[-1])


def memory(files: dict, bundle: Path, tmp: Path, chunk: int) -> list:
    """Peak RSS of chunked scoring of each file, of the smaller file with a 4x chunk, and of whole-table scoring."""
    (small, s_path), (large, l_path) = sorted(files.items())
    cases = [("chunked", s_path, small, chunk), ("chunked", l_path, large, chunk), ("chunked", s_path, small, 4 * chunk),
             ("whole table", s_path, small, 0), ("whole table", l_path, large, 0)]
    rows = []
    for mode, path, n, chunk in cases:
        m = peak_rss(path, bundle, tmp/"mem.parquet", chunk, "chunked" if mode == "chunked" else "whole")
        rows.append({"case": f"memory: {mode}" + (f", chunks of {chunk:,}" if chunk else ""), "rows": n,
                     "median_s": m["seconds"], "peak_rss_mb": m["peak_mb"], "rss_after_load_mb": m["base_mb"],
                     "scoring_mb": m["peak_mb"] - m["base_mb"]})
        print(f"   {rows[-1]['case']}, {n:,} rows: peak {m['peak_mb']:.0f} MB", flush=True)
    return rows


def run(repeat: int = 3, quick: bool = False) -> dict:
    """Throughput against the raw model, then peak memory against the table size; the ratios."""
    import tempfile
    sizes = (200_000, 400_000) if quick else (1_000_000, 2_000_000)
    with adult_project() as root, tempfile.TemporaryDirectory(prefix="mlops_nb_batch_") as tmp:
        tmp = Path(tmp)
        t0 = time.perf_counter()
        bundle, test = train_model(quick)
        train_s = time.perf_counter() - t0
        chunk = CHUNK // 4 if quick else CHUNK          # quick: smaller chunks, so that the tables span many of them
        files = {n: resample(test, tmp/f"adult_{n}.parquet", n, chunk) for n in sizes}
        rows, summary = throughput(files[sizes[0]], bundle, tmp, 1 if quick else repeat)
        mem = memory(files, bundle, tmp, chunk)
    chunked = [r for r in mem if r["case"] == f"memory: chunked, chunks of {chunk:,}"]
    whole = [r for r in mem if r["case"] == "memory: whole table"]
    return {"rows": rows + mem, **summary, "target": TARGET, "meets_target": summary["ratio"] >= TARGET,
            "meets_target_cpu": summary["cpu_ratio"] >= TARGET,
            "rss_growth_chunked": chunked[1]["scoring_mb"] / chunked[0]["scoring_mb"],
            "rss_growth_whole": whole[1]["scoring_mb"] / whole[0]["scoring_mb"],
            "model": "train stage, small (3 folds, <= 80 rounds)" if quick else "train stage defaults, full Adult",
            "train_s": round(train_s, 1), "quick": quick,
            "note": "shared 2-core machine, noisy: medians; cpu_ratio is the steadier figure"}
