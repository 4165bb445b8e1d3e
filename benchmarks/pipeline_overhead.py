"""What running the stages as notebooks costs, in two parts, both on the full bundled Adult data in a fresh temporary
project root per case.

EDA -> features: papermill with W&B offline and HTML reports (`run_pipeline(to_stage="features")`), against the same
stage functions (`run_eda`, `run_preprocess`, `run_features`) called in one plain Python process with W&B disabled.
A third case, the plain process with W&B offline, splits the overhead into its W&B part and its papermill part
(kernel start-up per notebook, parameter injection, saving, HTML rendering).

The whole default pipeline (eda to monitor, default parameters): papermill with W&B offline against every stage's
`run_<stage>` called in order in one plain process with W&B offline. Tune's search stops at its time budget in both,
so that stage takes about as long in each. `--quick` leaves this part out.

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

DESCRIPTION = "papermill pipeline vs. the same stage functions in one plain process (EDA -> features; the whole pipeline)"
from benchmarks import REPO, adult_project

PIPELINE = """
import json, sys
from mlops_nb.pipeline import run_pipeline
s = run_pipeline({}, to_stage=sys.argv[1], echo=False)
print(json.dumps({"status": s["status"], "stages": {k: v.get("seconds") for k, v in s["stages"].items()}}))
sys.exit(s["status"] != "ok")
"""

PLAIN = """
import importlib, json, sys, time
from mlops_nb.core import STAGES
t0 = time.perf_counter()
fns = [(s, getattr(importlib.import_module(f"mlops_nb.{s}"), f"run_{s}")) for s in STAGES[:STAGES.index(sys.argv[2]) + 1]]
t1 = time.perf_counter()
secs = {}
for name, fn in fns:
    t = time.perf_counter()
    fn(run_id="bench", wandb_mode=sys.argv[1])
    secs[name] = round(time.perf_counter() - t, 3)
print(json.dumps({"status": "ok", "import_s": round(t1 - t0, 3), "stages": secs}))
"""

CASES = {  # case -> (script, extra argv, WANDB_MODE)
    "papermill pipeline, W&B offline": (PIPELINE, ["features"], "offline"),
    "plain process, W&B disabled": (PLAIN, ["disabled", "features"], "disabled"),
    "plain process, W&B offline": (PLAIN, ["offline", "features"], "offline"),
}
BASELINE = "plain process, W&B disabled"
WHOLE = {  # the whole default pipeline, W&B offline in both
    "whole pipeline: papermill, W&B offline": (PIPELINE, ["monitor"], "offline"),
    "whole pipeline: plain process, W&B offline": (PLAIN, ["offline", "monitor"], "offline"),
}
WHOLE_BASELINE = "whole pipeline: plain process, W&B offline"


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


def _per_stage(details: list[dict]) -> dict:
    """Median seconds per stage over the repetitions of one case (as the case's script reported them)."""
    stages = details[0]["stages"]
    return {st: statistics.median(d["stages"][st] for d in details if d["stages"].get(st) is not None)
            for st in stages if any(d["stages"].get(st) is not None for d in details)}


def run(repeat: int = 3,      # repetitions of each case
        quick: bool = False,  # EDA -> features only (the whole pipeline takes about 5 minutes per case)
       ) -> dict:
    """Time every case `repeat` times (alternating); medians, spreads and the pipeline/plain ratios."""
    cases = {**CASES, **({} if quick else WHOLE)}
    times = {c: [] for c in cases}
    details = {c: [] for c in cases}
    for i in range(repeat):
        for case, (script, argv, mode) in cases.items():
            secs, info = time_case(script, argv, mode)
            times[case].append(secs)
            details[case].append(info)
            print(f"   [{i + 1}/{repeat}] {case}: {secs:.1f}s", flush=True)
    med = {c: statistics.median(v) for c, v in times.items()}
    base = lambda c: med[WHOLE_BASELINE if c in WHOLE else BASELINE]
    rows = [{"case": c, "median_s": med[c], "min_s": min(v), "max_s": max(v), "x_baseline": med[c] / base(c)}
            for c, v in times.items()]
    pipe, plain_wb = med["papermill pipeline, W&B offline"], med["plain process, W&B offline"]
    res = {"rows": rows, "quick": quick,
           "ratio": pipe / med[BASELINE],              # the headline: pipeline / plain (W&B disabled)
           "ratio_same_tracking": pipe / plain_wb,     # papermill's share: both with W&B offline (target <= 1.5)
           "overhead_s": pipe - med[BASELINE],
           "times_s": times, "details": details,
           "stage_medians_s": {c: _per_stage(d) for c, d in details.items()}}
    if not quick:
        res["whole_ratio"] = med["whole pipeline: papermill, W&B offline"] / med[WHOLE_BASELINE]   # target <= 1.15
        res["whole_overhead_s"] = med["whole pipeline: papermill, W&B offline"] - med[WHOLE_BASELINE]
    return res
