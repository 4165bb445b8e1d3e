"""End to end: the real stage notebooks through `mlops-nb run` on a small Adult sample, W&B offline, read back."""
import inspect
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from mlops_nb import core
from mlops_nb.pipeline import run_pipeline
from sample_data import make_table, wandb_summary

BIN = Path(sys.executable).parent
pytestmark = pytest.mark.slow


def mlops_nb(*args) -> subprocess.CompletedProcess:
    return subprocess.run([str(BIN/"mlops-nb"), *args], capture_output=True, text=True, timeout=900)


def test_pipeline_to_features(project):
    r = mlops_nb("run", "--to", "features")
    assert r.returncode == 0, r.stdout + r.stderr
    for i, stage in enumerate(["eda", "preprocess", "features"], 1):
        assert f"[{i}/3] {stage} ... ok" in r.stdout

    run_id = core.latest_run_id()
    run_dir = core.runs_dir()/run_id
    assert os.readlink(core.runs_dir()/"latest") == run_id
    s = json.loads((run_dir/"summary.json").read_text())
    assert s["status"] == "ok" and s["stages_run"] == ["eda", "preprocess", "features"] and s["to"] == "features"
    for stage in ("eda", "preprocess", "features"):
        st = s["stages"][stage]
        assert st["status"] == "ok" and st["seconds"] > 0
        assert (run_dir/st["notebook"]).is_file() and (run_dir/st["html"]).is_file()
        assert core.stage_dir(run_dir, stage).exists()
        core.stage_dir(run_dir, stage).verify()
        assert core.stale_reason(run_dir, stage) == ""      # what ran is what the runner recorded: nothing re-runs
    # the stages' own metrics, on the 2000/1000-row sample of the project fixture
    assert s["metrics"]["eda"]["rows"] == 2000
    assert s["metrics"]["preprocess"]["train_rows"] == 2000 and s["metrics"]["preprocess"]["test_rows"] == 1000

    # the stage contracts
    schema = core.stage_dir(run_dir, "preprocess").read_json("schema.json")
    assert schema["target"] == "income" and schema["task"] == "binary"
    feat = core.stage_dir(run_dir, "features")
    assert feat.read_json("feature_spec.json")["target"] == "income"
    train = feat.read_parquet("train.parquet")
    assert len(train) == 2000 and "income" in train.columns
    assert len(feat.read_parquet("test.parquet")) == 1000

    # W&B offline: one run per stage in the run folder, its summary holds the stage's metrics
    ctx = core.stage_dir(run_dir, "preprocess").read_json("context.json")
    assert ctx["wandb_mode"] == "offline" and Path(ctx["wandb_dir"]).is_dir()
    assert Path(ctx["wandb_dir"]).parent == run_dir/"wandb"
    wb = wandb_summary(ctx["wandb_dir"])
    assert wb["summary"]["train_rows"] == 2000
    assert wb["name"] == f"preprocess-{run_id}" and wb["exit_code"] == 0

    # a bad parameter fails the stage with a clear message and leaves the good outputs as they were
    before = core.stage_dir(run_dir, "preprocess").manifest
    r = mlops_nb("run", "--from", "preprocess", "--to", "preprocess", "-p", "target", "no_such_column", "--no-html")
    assert r.returncode == 1
    assert "preprocess failed: " in r.stderr and "no_such_column" in r.stderr
    assert ("DataError" in r.stderr) or ("ParamError" in r.stderr)
    s = json.loads((run_dir/"summary.json").read_text())
    assert s["status"] == "failed" and s["stages"]["preprocess"]["status"] == "failed"
    assert core.stage_dir(run_dir, "preprocess").manifest == before
    assert s["metrics"]["preprocess"]["train_rows"] == 2000


def test_failed_run_is_not_continued_on_adult(project):
    """Issue 7: after a run on another table failed at EDA, `--from features --to train` must not train on Adult."""
    make_table("multiclass").to_csv(project/"data"/"wine.csv", index=False)
    s = run_pipeline({"data": "data/wine.csv", "target": "no_such_col"}, html=False, echo=False)
    assert s["status"] == "failed" and s["error"]["stage"] == "eda", s.get("error")
    rid = s["run_id"]
    s = run_pipeline(from_stage="features", to_stage="train", run_id=rid, html=False, echo=False)
    # features needs preprocess, which runs with the run's parameters and fails with the truthful error
    assert s["status"] == "failed" and s["error"]["stage"] == "features"
    assert s["error"]["ename"] == "DataError"
    assert "'no_such_col'" in s["error"]["evalue"] and "wine.csv" in s["error"]["evalue"]
    assert "x0, x1" in s["error"]["evalue"]                 # the columns the table does have
    run = core.runs_dir()/rid
    assert not any((run/st).exists() for st in ("preprocess", "features", "train"))
    assert s["stages"]["train"]["status"] == "skipped"


def test_run_on_another_table_continues_with_its_parameters(project):
    """Issue 7: after a run on another table, `--from features --to train --run-id RUN` works (no Adult columns)."""
    make_table("binary").to_csv(project/"data"/"t.csv", index=False)
    s = run_pipeline({"data": "data/t.csv", "target": "target", "n_folds": 2, "max_rounds": 200},
                     to_stage="preprocess", run_id="t", html=False, echo=False)
    assert s["status"] == "ok", s.get("error")
    run = core.runs_dir()/"t"
    assert s["stages"]["train"]["parameters"]["n_folds"] == 2          # recorded for a stage not run yet
    # a stage function called from Python in that run: the features it needs are made with the run's parameters
    from mlops_nb.train import run_train
    res = run_train(run_id="t", n_folds=2, max_rounds=200, wandb_mode="disabled")
    spec = core.stage_dir(run, "features").read_json("feature_spec.json")
    assert spec["target"] == "target" and not spec["engineered"], spec["engineered"]
    assert res.metrics
    # the runner continues the run with its recorded parameters
    s = run_pipeline(from_stage="features", to_stage="train", run_id="t", html=False, echo=False)
    assert s["status"] == "ok", s.get("error")
    assert core.stage_dir(run, "train").read_json("context.json")["params"]["n_folds"] == 2
    assert "net_capital_gain" not in core.stage_dir(run, "features").read_text("feature_spec.json")
    assert all(core.stale_reason(run, st) == "" for st in ("preprocess", "features", "train"))
