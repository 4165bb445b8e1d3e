"""How far the tune stage's results spread between repeated runs with parallel trials and a timeout (the defaults).

Used to derive `mlops-nb reproduce`'s tolerance for tuning that is not deterministic. Runs the pipeline to train
once, then the tune stage (fresh study each time) and evaluate REPS times in the same run, with W&B disabled;
prints and writes the spread of each quality metric as JSON.
Usage: python tools/tune_spread.py [REPS] [OUT.json]   (MLOPS_NB_ROOT selects the project; default data: Adult)
"""
import json
import sys
import tempfile
import time

from mlops_nb.evaluate import run_evaluate
from mlops_nb.metrics import objective
from mlops_nb.train import run_train
from mlops_nb.tune import run_tune

reps = int(sys.argv[1]) if len(sys.argv) > 1 else 4
out = sys.argv[2] if len(sys.argv) > 2 else "reports/benchmarks/tune_spread.json"
rid = f"spread-{int(time.time())}"
run_train(run_id=rid, wandb_mode="disabled")
rows, journal = [], tempfile.mkdtemp(prefix="spread-")
for k in range(reps):
    t = run_tune(run_id=rid, storage=f"{journal}/study.journal", study_name=f"rep{k}", wandb_mode="disabled").metrics
    e = run_evaluate(run_id=rid, n_bootstrap=0, wandb_mode="disabled").metrics
    obj = objective(e["task"])
    rows.append({"best_value": t["best_value"], "selected_cv": t["selected_cv"], "n_trials": t["n_trials"],
                 "test_objective": e[obj]})
    print(k, rows[-1], flush=True)
spread = {}
for key in ("best_value", "selected_cv", "test_objective"):
    v = [r[key] for r in rows]
    spread[key] = {"min": min(v), "max": max(v), "relative_range": (max(v) - min(v)) / abs(sum(v) / len(v))}
doc = {"reps": reps, "run_id": rid, "rows": rows, "spread": spread}
from pathlib import Path
Path(out).parent.mkdir(parents=True, exist_ok=True)
Path(out).write_text(json.dumps(doc, indent=1))
print(json.dumps(spread, indent=1))
