"""Shared fixtures: a throw-away project root with small, seeded data, and offline W&B."""
import pytest

from sample_data import REPO, write_adult_sample


@pytest.fixture
def project(tmp_path, monkeypatch):
    """A project root in a temporary folder with a small Adult sample; W&B offline; cwd set to it."""
    root = tmp_path/"proj"
    root.mkdir()
    write_adult_sample(root)
    monkeypatch.setenv("MLOPS_NB_ROOT", str(root))
    monkeypatch.setenv("MLOPS_NB_NBS", str(REPO/"nbs"))
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    monkeypatch.setenv("WANDB_DIR", str(root))
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.chdir(root)
    return root
