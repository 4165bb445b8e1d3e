"""What running the stages as notebooks costs: EDA -> features through papermill with W&B offline and HTML
reports (`run_pipeline(to_stage="features")`), against the same stage functions (`run_eda`, `run_preprocess`,
`run_features`) called in one plain Python process with W&B disabled, both on the full bundled Adult data in a
fresh temporary project root. A third case, the plain process with W&B offline, splits the overhead into its
W&B part and its papermill part (kernel start-up per notebook, parameter injection, saving, HTML rendering).
Each case runs in its own subprocess and is timed from outside, imports included; the cases alternate within each
repetition, and medians are reported.
"""
from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time

DESCRIPTION = "EDA -> features: papermill pipeline vs. the same functions in one plain process"
from benchmarks import REPO, adult_project

PIPELINE = """
import json, sys
from mlops_nb.pipeline import run_pipeline
s = run_pipeline({}, to_stage="features", echo=False)
print(json.dumps({"status": s["status"], "stages": {k: v.get("seconds") for k, v in s["stages"].items()}}))
sys.exit(s["status"] != "ok")
"""

PLAIN = """
import json, sys, time
t0 = time.perf_counter()
from mlops_nb.eda import run_eda
from mlops_nb.preprocess import run_preprocess
from mlops_nb.features import run_features
t1 = time.perf_counter()
secs = {}
for name, fn in (("eda", run_eda), ("preprocess", run_preprocess), ("features", run_features)):
    t = time.perf_counter()
    fn(run_id="bench", wandb_mode=sys.argv[1])
    secs[name] = round(time.perf_counter() - t, 3)
print(json.dumps({"status": "ok", "import_s": round(t1 - t0, 3), "stages": secs}))
"""

CASES = {  # case -> (script, extra argv, WANDB_MODE)
    "papermill pipeline, W&B offline": (PIPELINE, [], "offline"),
    "plain process, W&B disabled": (PLAIN, ["disabled"], "disabled"),
    "plain process, W&B offline": (PLAIN, ["offline"], "offline"),
}
BASELINE = "plain process, W&B disabled"


def time_case(script: str, argv: list[str], wandb_mode: str) -> tuple[float, dict]:
    """Wall-clock seconds of `script` in a fresh subprocess and project root, and the JSON it printed."""
    with adult_project() as root:
        env = {**os.environ, "MLOPS_NB_NBS": str(REPO/"nbs"), "WANDB_MODE": wandb_mode,
               "WANDB_SILENT": "true", "WANDB_DIR": str(root), "MPLBACKEND": "Agg"}
        env.pop("WANDB_API_KEY", None)
        t0 = time.perf_counter()
        r = subprocess.run([sys.executable, "-c", script, *argv], cwd=root, env=env, capture_output=True, text=True)
        secs = time.perf_counter() - t0
        if r.returncode:
            raise RuntimeError(f"benchmark case failed (exit {r.returncode}):\n{r.stdout[-2000:]}{r.stderr[-3000:]}")
        return secs, json.loads(r.stdout.strip().splitlines()[-1])


def run(repeat: int = 3) -> dict:
    """Time every case `repeat` times (alternating); medians, spreads and the pipeline/plain ratio."""
    times = {c: [] for c in CASES}
    details = {c: [] for c in CASES}
    for i in range(repeat):
        for case, (script, argv, mode) in CASES.items():
            secs, info = time_case(script, argv, mode)
            times[case].append(secs)
            details[case].append(info)
            print(f"   [{i + 1}/{repeat}] {case}: {secs:.1f}s", flush=True)
    med = {c: statistics.median(v) for c, v in times.items()}
    base = med[BASELINE]
    rows = [{"case": c, "median_s": med[c], "min_s": min(v), "max_s": max(v), "x_baseline": med[c] / base}
            for c, v in times.items()]
    pipe, plain_wb = med["papermill pipeline, W&B offline"], med["plain process, W&B offline"]
    return {"rows": rows,
            "ratio": pipe / base,                       # the headline: pipeline / plain (W&B disabled)
            "ratio_same_tracking": pipe / plain_wb,     # papermill's share: both with W&B offline
            "overhead_s": pipe - base,
            "times_s": times, "details": details}
