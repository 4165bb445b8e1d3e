"""Every stage notebook's `parameters` cell: readable by papermill, and the same names and defaults as `run_<stage>`."""
import importlib
import inspect
from pathlib import Path

import papermill as pm
import pytest

from mlops_nb.pipeline import declared_params, discover_stages

NBS = Path(__file__).resolve().parent.parent / "nbs"
STAGE_NBS = discover_stages(NBS)


def test_stage_notebooks_found():
    assert {"eda", "preprocess", "features", "train", "tune", "evaluate", "deploy"} <= set(STAGE_NBS)


@pytest.mark.parametrize("stage", list(STAGE_NBS))
def test_papermill_reads_every_parameter(stage):
    # papermill's line parser drops a line whose comment holds a second `=` (`papermill --help-notebook` relies on it)
    seen = pm.inspect_notebook(str(STAGE_NBS[stage]))
    assert list(seen) == list(declared_params(STAGE_NBS[stage])), f"{STAGE_NBS[stage].name}: papermill sees {list(seen)}"
    missing_help = [n for n, p in seen.items() if not p["help"]]
    assert not missing_help, f"{STAGE_NBS[stage].name}: parameters without a comment: {missing_help}"


@pytest.mark.parametrize("stage", list(STAGE_NBS))
def test_parameters_match_the_entry_point(stage):
    fn = getattr(importlib.import_module(f"mlops_nb.{stage}"), f"run_{stage}")
    sig = {n: p.default for n, p in inspect.signature(fn).parameters.items()}
    declared = declared_params(STAGE_NBS[stage])
    assert set(declared) == set(sig), f"notebook only: {set(declared) - set(sig)}, run_{stage} only: {set(sig) - set(declared)}"
    differ = {n: (declared[n], sig[n]) for n in sig if declared[n] != sig[n]}
    assert not differ, f"{STAGE_NBS[stage].name} defaults differ from run_{stage}: {differ}"
