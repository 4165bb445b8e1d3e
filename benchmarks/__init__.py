"""Benchmarks run by `make bench` (`python -m benchmarks`).

Each module in `BENCHMARKS` has a `DESCRIPTION` and `run(repeat) -> dict` returning `rows` (one dict per measured
case, printed as a table) plus any summary values (e.g. `ratio`). Every benchmark measures its baseline in the
same run, so that the ratio holds on a noisy machine; absolute times are for information only.
"""
import contextlib
import os
import shutil
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
BENCHMARKS = ["pipeline_overhead", "time_to_quality", "quality_seeds", "generalisation", "drift_speed", "batch_score", "serve_load"]  # modules run by `python -m benchmarks`, in this order


@contextlib.contextmanager
def adult_project():
    """A throw-away project root with the bundled Adult data, as MLOPS_NB_ROOT for the duration."""
    old = os.environ.get("MLOPS_NB_ROOT")
    with tempfile.TemporaryDirectory(prefix="mlops_nb_bench_") as tmp:
        root = Path(tmp)/"proj"
        shutil.copytree(REPO/"data"/"raw", root/"data"/"raw")
        os.environ["MLOPS_NB_ROOT"] = str(root)
        try: yield root
        finally:
            if old is None: os.environ.pop("MLOPS_NB_ROOT", None)
            else: os.environ["MLOPS_NB_ROOT"] = old
