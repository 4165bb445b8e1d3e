"""Drift statistics on a large batch: 1,000,000 rows x the 14 Adult feature columns, read from Parquet and compared
with the reference profile (`mlops_nb.drift.compare`: pyarrow read with text columns as dictionaries, one
`np.searchsorted` pass per numeric column into the profile's quantile sketch, dictionary counts for categoricals;
PSI, KS, chi-square, JS, Wasserstein, missing and unseen tests, Benjamini-Hochberg, verdict), against a plain
baseline measured in the same run: `pandas.read_parquet`, then per numeric column the exact `scipy.stats.ks_2samp`
against the reference rows and a PSI from `np.histogram` on the same edges, per categorical column `value_counts`
and `scipy.stats.chisquare`. The reference is the bundled Adult data (48,842 rows), the batch 1M rows drawn from it
with replacement. Each case runs in its own subprocess (imports and profile loading not timed, reported apart);
wall time of the read + comparison, median of `repeat`; memory growth = peak RSS (VmHWM) minus the RSS just
before the timed call, against the batch's in-memory size (the Arrow table read plainly, without dictionaries).
The KS statistics of both cases are compared: the sketch's error against the exact test. Quick variant: 100,000 rows.

Evidently (`Report([DataDriftPreset()]).run(current, reference)` on the same pandas frames, read and timed the same
way) runs in its own environment made on first use by `benchmarks/evidently_env.sh` (Evidently 0.7 does not
import under pandas 3); when that fails, Evidently is skipped and said so.
"""
from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from benchmarks import REPO, side_python

DESCRIPTION = "drift: 1M x 14 Adult columns from Parquet vs the profile, against pandas + exact scipy tests"

_RSS = """
def _kb(key):
    for line in open("/proc/self/status"):
        if line.startswith(key): return int(line.split()[1])
"""

OURS = _RSS + """
import json, sys, time
t0 = time.perf_counter()
from mlops_nb.drift import compare
prof = json.load(open(sys.argv[1]))
import scipy.stats, pyarrow.parquet  # the imports compare makes on first use, not timed
t1 = time.perf_counter()
rss0 = _kb("VmRSS")
t = time.perf_counter()
r = compare(prof, sys.argv[2])
secs = time.perf_counter() - t
print(json.dumps({"seconds": secs, "import_s": t1 - t0, "growth_kb": _kb("VmHWM") - rss0, "verdict": r["verdict"],
                  "ks": {c: s["ks"] for c, s in r["features"].items() if s.get("ks") is not None}}))
"""

BASELINE = _RSS + """
import json, sys, time
t0 = time.perf_counter()
import numpy as np, pandas as pd
from scipy import stats
ref = pd.read_parquet(sys.argv[3])
prof = json.load(open(sys.argv[1]))
t1 = time.perf_counter()
rss0 = _kb("VmRSS")
t = time.perf_counter()
cur = pd.read_parquet(sys.argv[2])
ks = {}
for c, p in prof["columns"].items():
    a, b = ref[c].dropna(), cur[c].dropna()
    if p["kind"] == "numeric":
        ks[c] = float(stats.ks_2samp(a.to_numpy(float), b.to_numpy(float)).statistic)
        e = np.r_[-np.inf, p["edges"], np.inf]
        r_, c_ = np.histogram(a, e)[0] / len(a), np.histogram(b, e)[0] / len(b)
        float(np.sum((np.maximum(c_, 1e-4) - np.maximum(r_, 1e-4)) * np.log(np.maximum(c_, 1e-4) / np.maximum(r_, 1e-4))))
    else:
        rv, cv = a.value_counts(), b.value_counts().reindex(a.value_counts().index, fill_value=0)
        stats.chisquare(cv.to_numpy(float), rv.to_numpy(float) / rv.sum() * cv.sum())
secs = time.perf_counter() - t
print(json.dumps({"seconds": secs, "import_s": t1 - t0, "growth_kb": _kb("VmHWM") - rss0, "ks": ks}))
"""

EVIDENTLY = _RSS + """
import json, sys, time
t0 = time.perf_counter()
import pandas as pd
from evidently import Report
from evidently.presets import DataDriftPreset
ref = pd.read_parquet(sys.argv[3])
t1 = time.perf_counter()
rss0 = _kb("VmRSS")
t = time.perf_counter()
cur = pd.read_parquet(sys.argv[2])
snap = Report([DataDriftPreset()]).run(cur, ref)
snap.dict()
secs = time.perf_counter() - t
print(json.dumps({"seconds": secs, "import_s": t1 - t0, "growth_kb": _kb("VmHWM") - rss0, "ks": {}}))
"""

OURS_CASE, BASE_CASE, EVI_CASE = "mlops_nb.drift.compare (pyarrow, sketch)", "baseline: pandas + exact scipy", "Evidently 0.7 DataDriftPreset"
CASES = {OURS_CASE: OURS, BASE_CASE: BASELINE}


def evidently_python() -> tuple[str | None, str]:
    """The Evidently environment's Python (made by evidently_env.sh when missing), or None and why it is unavailable."""
    return side_python("evidently_env.sh", "EVIDENTLY_VENV", ".venv-evidently", "Evidently")

def _setup(tmp: Path, rows: int) -> dict:
    """Reference profile (JSON), reference rows and a `rows`-row batch (Parquet) in `tmp`; the batch's sizes."""
    import numpy as np
    import pandas as pd
    import pyarrow.parquet as pq
    from mlops_nb.artifacts import read_table, to_json
    from mlops_nb.features import fit_spec
    from mlops_nb.preprocess import clean_table, infer_schema
    from mlops_nb.profile import reference_profile
    raw = REPO/"data"/"raw"
    df = clean_table(pd.concat([read_table(raw/"adult.data"), read_table(raw/"adult.test")], ignore_index=True))[0]
    spec = fit_spec(df, infer_schema(df, "income"))
    (tmp/"profile.json").write_text(to_json(reference_profile(df, spec, n_bootstrap=0)))
    cols = spec.source_columns
    df[cols].to_parquet(tmp/"reference.parquet", index=False)
    big = df[cols].iloc[np.random.default_rng(0).integers(0, len(df), rows)].reset_index(drop=True)
    big.to_parquet(tmp/"batch.parquet", index=False)
    return {"rows": rows, "columns": len(cols), "arrow_mb": pq.read_table(tmp/"batch.parquet").nbytes / 2**20,
            "pandas_mb": big.memory_usage(deep=True).sum() / 2**20, "parquet_mb": (tmp/"batch.parquet").stat().st_size / 2**20}


def _once(script: str, tmp: Path, python: str = sys.executable) -> dict:
    """Run one case in a fresh subprocess; its JSON line."""
    r = subprocess.run([python, "-c", script, str(tmp/"profile.json"), str(tmp/"batch.parquet"), str(tmp/"reference.parquet")],
                       capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(REPO)})
    if r.returncode: raise RuntimeError(f"benchmark case failed (exit {r.returncode}):\n{r.stdout[-2000:]}{r.stderr[-3000:]}")
    return json.loads(r.stdout.strip().splitlines()[-1])


def run(repeat: int = 3, quick: bool = False) -> dict:
    """Median wall time and peak memory growth of each case over `repeat` alternating subprocess runs."""
    quick = quick or os.environ.get("MLOPS_NB_BENCH_QUICK") == "1"
    evi_py, evi_note = evidently_python()
    print(f"   {evi_note}", flush=True)
    cases = {c: (s, sys.executable) for c, s in CASES.items()} | ({EVI_CASE: (EVIDENTLY, evi_py)} if evi_py else {})
    with tempfile.TemporaryDirectory(prefix="mlops_nb_drift_bench_") as d:
        tmp = Path(d)
        size = _setup(tmp, 100_000 if quick else 1_000_000)
        res = {c: [] for c in cases}
        for i in range(1 if quick else repeat):
            for case, (script, py) in cases.items():
                res[case].append(_once(script, tmp, py))
                print(f"   [{i + 1}] {case}: {res[case][-1]['seconds']:.2f}s", flush=True)
    base = statistics.median(r["seconds"] for r in res[BASE_CASE])
    rows = []
    for case, rs in res.items():
        med = statistics.median(r["seconds"] for r in rs)
        grow = max(r["growth_kb"] for r in rs) / 1024
        rows.append({"case": case, "rows": size["rows"], "median_s": med, "min_s": min(r["seconds"] for r in rs),
                     "max_s": max(r["seconds"] for r in rs), "x_baseline": med / base, "import_s": statistics.median(r["import_s"] for r in rs),
                     "mem_growth_mb": grow, "growth_vs_data": grow / size["arrow_mb"]})
    ours, exact = res[OURS_CASE][0]["ks"], res[BASE_CASE][0]["ks"]
    ks_err = max(abs(ours[c] - exact[c]) for c in exact)
    out = {"rows": rows, "data": size, "ks_max_abs_error": ks_err, "quick": quick, "evidently": evi_note,
           "meets_2s": rows[0]["median_s"] <= 2.0, "meets_memory_2x": rows[0]["growth_vs_data"] <= 2.0,
           "ratio": rows[0]["median_s"] / base}
    if EVI_CASE in res:
        out["vs_evidently"] = rows[0]["median_s"] / statistics.median(r["seconds"] for r in res[EVI_CASE])
        out["meets_tenth_of_evidently"] = out["vs_evidently"] <= 0.1
    return out
