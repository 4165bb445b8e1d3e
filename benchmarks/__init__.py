"""Benchmarks run by `make bench` (`python -m benchmarks`).

Each module in `BENCHMARKS` has a `DESCRIPTION` and `run(repeat) -> dict` returning `rows` (one dict per measured
case, printed as a table) plus any summary values (e.g. `ratio`). Every benchmark measures its baseline in the
same run, so that the ratio holds on a noisy machine; absolute times are for information only.
"""
import contextlib
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
BENCHMARKS = ["pipeline_overhead", "time_to_quality", "quality_seeds", "generalisation", "drift_speed", "batch_score", "dask_scaling", "serve_load"]  # modules run by `python -m benchmarks`, in this order


def side_python(script: str,   # the shell script beside this file that builds the environment when missing
                env_var: str,  # environment variable naming another venv folder
                venv: str,     # the venv's folder name under the repository
                label: str,    # what the environment is for, in the messages
               ) -> tuple[str | None, str]:
    """A separate environment's Python (made by `script` when missing), or None and why it is unavailable."""
    try:
        r = subprocess.run(["bash", str(REPO/"benchmarks"/script)], capture_output=True, text=True, timeout=1800)
    except (OSError, subprocess.TimeoutExpired) as e:
        return None, f"{label} skipped: {script} did not finish ({type(e).__name__}: {e})"
    if r.returncode:
        tail = " | ".join((r.stderr or r.stdout).strip().splitlines()[-3:])
        return None, f"{label} skipped: {script} failed with exit status {r.returncode}: {tail}"
    path = Path(os.environ.get(env_var) or REPO/venv)
    return str(path/"bin"/"python"), f"{label} environment: {path}"


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
