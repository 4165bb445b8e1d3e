"""Root pytest hooks: when nbval runs the stage notebooks, point them at a throw-away project with sample data."""
import os
import sys
import tempfile
from pathlib import Path


def pytest_configure(config):
    """Before nbval starts any kernel, give the notebooks a temporary project root and offline W&B."""
    if not (config.getoption("--nbval-lax", default=False) or config.getoption("--nbval", default=False)):
        return
    sys.path.insert(0, str(Path(__file__).parent/"tests"))
    from sample_data import write_adult_sample
    root = Path(tempfile.mkdtemp(prefix="mlops_nb-nbval-"))
    write_adult_sample(root, n_train=2000, n_test=1000)
    os.environ.update(MLOPS_NB_ROOT=str(root), WANDB_MODE="offline", WANDB_SILENT="true", WANDB_DIR=str(root),
                      MPLBACKEND="Agg")
    os.environ.pop("WANDB_API_KEY", None)
    config._mlops_nb_root = root


def pytest_unconfigure(config):
    """Remove the temporary project root."""
    root = getattr(config, "_mlops_nb_root", None)
    if root is not None:
        import shutil
        shutil.rmtree(root, ignore_errors=True)
