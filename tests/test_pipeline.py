"""The pipeline runner's mechanics (`mlops-nb run`), on tiny fake stage notebooks executed with papermill."""
import json
import os
import re
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import nbformat
import pytest

from mlops_nb import core
from mlops_nb.cli import main
from mlops_nb.pipeline import run_pipeline
from sample_data import table_run

REPO = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent

pytestmark = pytest.mark.slow

EDA_PARAMS = '''run_id = ""                      # run ("" = latest run, or a new one)
data = "data/raw/adult.data"     # table
test_data = None                 # test table (None = the data card's)
n = 3                            # an integer
rate = 0.5                       # a float
flag = False                     # a boolean
label = "x"                      # text
items = ["a"]                    # a list
wandb_mode = ""                  # W&B mode ("" = $WANDB_MODE)'''

EDA_BODY = '''import json
from mlops_nb import core
vals = dict(data=data, test_data=test_data, n=n, rate=rate, flag=flag, label=label, items=items)
with core.stage("eda", vals, run_id=run_id, wandb_mode=wandb_mode) as st:
    st.out.write_json("params.json", {k: [v, type(v).__name__] for k, v in vals.items()})
    st.metrics.update(rows=100 * n, score=0.123456)
print("eda done with n =", n)'''

PRE_PARAMS = '''run_id = ""            # run
target = "income"      # target column
engineered = None      # engineered columns (None = the data card's)
wandb_mode = ""        # W&B mode'''

PRE_BODY = '''from mlops_nb import core
run_dir = core.resolve_run(run_id)
eda = core.stage_dir(run_dir, "eda").read_json("params.json")   # an earlier stage's output, reused with --from
if target not in ("income", "label"):
    raise core.DataError(f"target column {target!r} not in the table (columns: age, income)")
with core.stage("preprocess", {"target": target}, run_id=run_id, wandb_mode=wandb_mode) as st:
    st.out.write_json("schema.json", {"target": target, "engineered": engineered, "eda_n": eda["n"][0]})
    st.metrics.update(train_rows=80, target=target)'''

FEAT_PARAMS = '''run_id = ""          # run
sensitive = ["sex"]  # sensitive attributes
wandb_mode = ""      # W&B mode'''

FEAT_BODY = '''from mlops_nb import core
with core.stage("features", {"sensitive": sensitive}, run_id=run_id, wandb_mode=wandb_mode) as st:
    st.out.write_json("spec.json", {"sensitive": sensitive})
    st.metrics.update(features=7)'''


def write_stage_nb(path: Path, params: str, body: str) -> Path:
    """A minimal stage notebook: title, `parameters` cell, `#| pipeline` cell."""
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.cells = [nbformat.v4.new_markdown_cell(f"# {path.stem}"),
                nbformat.v4.new_code_cell(params, metadata={"tags": ["parameters"]}),
                nbformat.v4.new_code_cell("#| pipeline\n" + body)]
    nbformat.write(nb, str(path))
    return path


@pytest.fixture
def fake_nbs(project, tmp_path, monkeypatch):
    """Fake eda, preprocess and features notebooks in a temporary `nbs/`; W&B disabled for speed."""
    nbs = tmp_path/"fake_nbs"
    nbs.mkdir()
    write_stage_nb(nbs/"01_eda.ipynb", EDA_PARAMS, EDA_BODY)
    write_stage_nb(nbs/"02_preprocess.ipynb", PRE_PARAMS, PRE_BODY)
    write_stage_nb(nbs/"03a_features.ipynb", FEAT_PARAMS, FEAT_BODY)
    write_stage_nb(nbs/"00_core.ipynb", 'x = 1', 'raise RuntimeError("not a stage")')
    monkeypatch.setenv("MLOPS_NB_NBS", str(nbs))
    monkeypatch.setenv("WANDB_MODE", "disabled")
    return nbs


def summary_of(run_id: str = "latest") -> dict:
    return json.loads((core.runs_dir()/run_id/"summary.json").read_text())


def params_of(run_id: str = "latest") -> dict:
    return core.stage_dir(core.runs_dir()/run_id, "eda").read_json("params.json")


def test_run_ok(fake_nbs, capsys):
    assert main(["run", "-p", "n", "5", "-p", "label", "007"]) == 0
    out = capsys.readouterr().out
    assert re.search(r"^\[1/3\] eda \.\.\. ok \d+\.\ds$", out, re.M), out
    assert re.search(r"^\[3/3\] features \.\.\. ok \d+\.\ds$", out, re.M), out
    assert "no notebook for train, tune, evaluate, deploy" in out
    assert "eda: rows=500  score=0.1235" in out

    latest = core.runs_dir()/"latest"
    assert latest.is_symlink()
    run_id = os.readlink(latest)
    run_dir = core.runs_dir()/run_id
    assert core.latest_run_id() == run_id and (run_dir/"run.json").is_file()
    assert f"run {run_id}: ok in" in out

    s = summary_of()
    assert s["status"] == "ok" and s["run_id"] == run_id
    assert s["started"] and s["finished"] and s["seconds"] > 0
    assert s["params"] == {"n": 5, "label": "007"}
    assert s["from"] is None and s["to"] is None
    assert s["stages_run"] == ["eda", "preprocess", "features"]
    assert s["metrics"]["eda"] == {"rows": 500, "score": 0.123456}      # written by the stage, kept by the runner
    assert s["metrics"]["preprocess"]["target"] == "income"
    for stage, name in [("eda", "01_eda"), ("preprocess", "02_preprocess"), ("features", "03a_features")]:
        st = s["stages"][stage]
        assert st["status"] == "ok" and st["seconds"] > 0
        assert st["notebook"] == f"notebooks/{name}.ipynb" and st["html"] == f"notebooks/{name}.html"
        assert (run_dir/st["notebook"]).is_file() and (run_dir/st["html"]).is_file()
    assert s["stages"]["eda"]["parameters"] == {"data": "data/raw/adult.data", "test_data": None, "n": 5, "rate": 0.5,
                                                "flag": False, "label": "007", "items": ["a"], "wandb_mode": ""}
    assert s["stages"]["preprocess"]["parameters"] == {"target": "income", "engineered": None, "wandb_mode": ""}

    # the executed notebook has the injected parameters and the outputs; the HTML shows them too
    nb = nbformat.read(str(run_dir/"notebooks/01_eda.ipynb"), as_version=4)
    injected = [c for c in nb.cells if "injected-parameters" in c.metadata.get("tags", [])]
    assert injected and "n = 5" in injected[0].source and f'run_id = "{run_id}"' in injected[0].source
    assert any("eda done with n = 5" in o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.outputs)
    html = (run_dir/"notebooks/01_eda.html").read_text()
    assert html.lstrip().lower().startswith("<!doctype html") and "eda done with n = 5" in html


def test_param_types(fake_nbs):
    assert main(["run", "--to", "eda", "--no-html", "-p", "n", "50", "-p", "rate", "1", "-p", "flag", "true",
                 "-p", "items", "[?, NA]", "-p", "label", "yes", "-p", "data=data/raw/adult.data"]) == 0
    p = params_of()
    assert p["n"] == [50, "int"] and p["rate"] == [1.0, "float"] and p["flag"] == [True, "bool"]
    assert p["items"] == [["?", "NA"], "list"] and p["label"] == ["yes", "str"]
    assert p["test_data"] == [None, "NoneType"]


def test_param_type_error(fake_nbs, capsys):
    assert main(["run", "-p", "n", "many"]) == 2
    err = capsys.readouterr().err
    assert "parameter 'n' expects an integer" in err and "'many'" in err
    assert not core.runs_dir().exists()        # nothing ran, no run folder


def test_unknown_parameter(fake_nbs, capsys):
    assert main(["run", "-p", "n_trials", "50"]) == 2
    err = capsys.readouterr().err
    assert "unknown parameter 'n_trials'" in err
    assert "known parameters: data, engineered, flag, items, label, n, rate, run_id, sensitive, target, test_data, wandb_mode" in err
    assert not core.runs_dir().exists()


def test_config_file(fake_nbs, tmp_path):
    cfg = tmp_path/"run.yaml"
    cfg.write_text("n: 7\nlabel: hello\nitems: ['?', NA]\n")
    assert main(["run", "--to", "eda", "--no-html", "--config", str(cfg), "-p", "n", "8"]) == 0
    p = params_of()
    assert p["n"] == [8, "int"] and p["label"] == ["hello", "str"] and p["items"] == [["?", "NA"], "list"]
    assert summary_of()["params"] == {"n": 8, "label": "hello", "items": ["?", "NA"]}


def test_reused_run_keeps_its_parameters(fake_nbs):
    # a run about another table, stopped after eda: every stage's parameters are recorded, not only eda's
    assert main(["run", "--to", "eda", "--no-html", "-p", "data", "data/raw/mine.csv", "-p", "target", "label",
                 "-p", "sensitive", "[grp]"]) == 0
    s = summary_of()
    rid = s["run_id"]
    assert s["stages"]["eda"]["parameters"]["data"] == "data/raw/mine.csv"
    assert s["stages"]["preprocess"] == {"status": "not run", "parameters": {"target": "label", "engineered": None, "wandb_mode": ""}}
    assert s["stages"]["features"]["parameters"] == {"sensitive": ["grp"], "wandb_mode": ""}
    assert params_of()["test_data"] == [None, "NoneType"]        # no Adult test file injected into a run about mine.csv
    assert core.recorded_params(core.runs_dir()/rid, "preprocess", takes=["target", "engineered"]) == \
        {"target": "label", "engineered": None, "wandb_mode": ""}
    # --from on that run: its recorded parameters are the defaults, -p overrides them
    assert main(["run", "--from", "preprocess", "--run-id", rid, "--no-html", "-p", "sensitive", "[]"]) == 0
    s = summary_of(rid)
    assert core.stage_dir(core.runs_dir()/rid, "preprocess").read_json("schema.json")["target"] == "label"
    assert s["stages"]["features"]["parameters"]["sensitive"] == []
    assert s["stages"]["eda"]["parameters"]["data"] == "data/raw/mine.csv" and s["stages"]["eda"]["status"] == "ok"
    nb = nbformat.read(str(core.runs_dir()/rid/"notebooks/02_preprocess.ipynb"), as_version=4)
    assert 'target = "label"' in next(c.source for c in nb.cells if "injected-parameters" in c.metadata.get("tags", []))


def test_failure(fake_nbs, capsys):
    assert main(["run", "-p", "target", "x"]) == 1
    cap = capsys.readouterr()
    assert re.search(r"^\[2/3\] preprocess \.\.\. failed \d+\.\ds$", cap.out, re.M), cap.out
    assert "preprocess failed: DataError: target column 'x' not in the table (columns: age, income)" in cap.err
    assert "\x1b[" not in cap.err and "raise core.DataError" in cap.err
    assert len(cap.err.splitlines()) < 15           # the tail of the traceback, not the whole dump
    s = summary_of()
    run_dir = core.runs_dir()/s["run_id"]
    assert s["status"] == "failed" and s["finished"]
    assert s["error"] == {"stage": "preprocess", "ename": "DataError",
                          "evalue": "target column 'x' not in the table (columns: age, income)"}
    pre = s["stages"]["preprocess"]
    assert pre["status"] == "failed" and pre["error"].startswith("DataError: target column 'x'")
    assert (run_dir/pre["notebook"]).is_file() and (run_dir/pre["html"]).is_file()   # kept for reading
    assert "target column" in (run_dir/pre["html"]).read_text()
    assert s["stages"]["eda"]["status"] == "ok" and s["stages"]["features"]["status"] == "skipped"
    assert "preprocess" not in s["metrics"] and not (run_dir/"preprocess").exists()


def test_from_reuses_latest_and_run_id(fake_nbs, capsys):
    assert main(["run", "--to", "eda", "-p", "n", "4"]) == 0
    first = summary_of()["run_id"]
    # --from without --run-id continues the latest run, reusing eda's outputs
    assert main(["run", "--from", "preprocess", "--to", "preprocess", "--no-html"]) == 0
    s = summary_of()
    assert s["run_id"] == first and s["from"] == "preprocess" and s["to"] == "preprocess"
    assert s["stages_run"] == ["preprocess"] and s["stages"]["eda"]["status"] == "ok"
    assert s["stages"]["preprocess"]["html"] is None
    assert not (core.runs_dir()/first/"notebooks/02_preprocess.html").exists()
    assert core.stage_dir(core.runs_dir()/first, "preprocess").read_json("schema.json")["eda_n"] == 4
    assert s["metrics"]["eda"]["rows"] == 400                    # metrics of earlier stages survive
    # a new run without --from gets a new id, then --run-id goes back to the first one
    assert main(["run", "--to", "eda", "--no-html"]) == 0
    second = summary_of()["run_id"]
    assert second != first
    assert main(["run", "--run-id", first, "--from", "features", "-p", "sensitive", "[]", "--no-html"]) == 0
    assert core.latest_run_id() == first
    s = summary_of(first)
    assert s["stages"]["features"]["status"] == "ok" and set(s["metrics"]) == {"eda", "preprocess", "features"}
    assert "eda" in summary_of(second)["metrics"] and "features" not in summary_of(second)["metrics"]
    capsys.readouterr()
    # continuing a run that does not exist is a usage error
    assert main(["run", "--run-id", "nope", "--from", "features"]) == 2
    assert "no such run" in capsys.readouterr().err


def test_from_needs_an_earlier_run(fake_nbs, capsys):
    assert main(["run", "--from", "preprocess"]) == 2
    assert "continues an earlier run" in capsys.readouterr().err


def test_run_pipeline_api(fake_nbs):
    s = run_pipeline({"n": 2}, to_stage="eda", run_id="api-run", html=False, echo=False)
    assert s["status"] == "ok" and s["run_id"] == "api-run" and s["to"] == "eda"
    assert s["metrics"]["eda"]["rows"] == 200
    assert (core.runs_dir()/"api-run"/"notebooks/01_eda.ipynb").is_file()
    s = run_pipeline({"target": "nope"}, run_id="api-run", from_stage="preprocess", html=False, echo=False)
    assert s["status"] == "failed" and s["error"]["ename"] == "DataError"


def test_cli_entry_points(fake_nbs):
    r = subprocess.run([str(BIN/"mlops-nb"), "--help"], capture_output=True, text=True)
    assert r.returncode == 0 and "run" in r.stdout
    r = subprocess.run([str(BIN/"mlops-nb"), "run", "--help"], capture_output=True, text=True)
    assert r.returncode == 0 and "--from" in r.stdout and "--config" in r.stdout
    r = subprocess.run([sys.executable, "-m", "mlops_nb", "run", "--to", "eda", "-p", "n", "6", "--no-html"],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert "[1/1] eda ... ok" in r.stdout and params_of()["n"] == [6, "int"]
    r = subprocess.run([sys.executable, "-m", "mlops_nb", "run", "-p", "target", "x", "--from", "preprocess"],
                       capture_output=True, text=True)
    assert r.returncode == 1 and "preprocess failed: DataError" in r.stderr


HOLDER = """
import sys, time
from pathlib import Path
from mlops_nb import core
ready, go = Path(sys.argv[1]), Path(sys.argv[2])
with core.stage("demo", {"who": "first"}, run_id="locked", wandb_mode="disabled") as st:
    st.out.write_json("who.json", {"who": "first"})
    ready.write_text(str(st.out.path))
    while not go.exists(): time.sleep(0.05)
"""


def start_holder(tmp_path):
    """Another process inside `stage("demo")` of run `locked`, until the returned `go` file exists."""
    ready, go = tmp_path/"ready", tmp_path/"go"
    p = subprocess.Popen([sys.executable, "-c", HOLDER, str(ready), str(go)])
    for _ in range(1200):
        if ready.exists() and ready.read_text(): break
        assert p.poll() is None, "the holder process died"
        time.sleep(0.05)
    return p, Path(ready.read_text()), go


def test_second_process_fails_naming_the_holder(project, tmp_path):
    p, staging, go = start_holder(tmp_path)
    try:
        with pytest.raises(core.ParamError, match=rf"stage demo of run locked is held by process {p.pid}"):
            with core.stage("demo", {"who": "second"}, run_id="locked", wandb_mode="disabled", lock_timeout=0.5):
                pass
        assert (staging/"who.json").is_file()          # the first one's staging folder is left alone
    finally:
        go.write_text("go")
        p.wait(120)
    assert p.returncode == 0
    assert core.stage_dir(core.runs_dir()/"locked", "demo").read_json("who.json") == {"who": "first"}


def test_second_process_waits_for_the_holder(project, tmp_path):
    p, staging, go = start_holder(tmp_path)
    timer = threading.Timer(1.0, lambda: go.write_text("go"))
    timer.start()
    try:
        with core.stage("demo", {"who": "second"}, run_id="locked", wandb_mode="disabled", lock_timeout=120) as st:
            # the lock is ours only once the first one committed
            assert core.stage_dir(core.runs_dir()/"locked", "demo").read_json("who.json") == {"who": "first"}
            st.out.write_json("who.json", {"who": "second"})
    finally:
        timer.cancel(); go.write_text("go"); p.wait(120)
    assert p.returncode == 0
    run = core.runs_dir()/"locked"
    assert core.stage_dir(run, "demo").read_json("who.json") == {"who": "second"}
    assert [q.name for q in run.iterdir() if q.name.startswith(".")] == []


def test_interrupted_commit_is_recovered(project):
    run = core.resolve_run("crash")
    with core.stage("demo", {"v": 1}, run_dir=run, wandb_mode="disabled") as st: st.out.write_json("v.json", {"v": 1})
    # a process died inside the commit: the old outputs moved aside, the new ones not renamed into place yet
    os.replace(run/"demo", run/".old-demo-1a2b3c4d")
    (run/".staging-demo-4242-deadbeef").mkdir()
    assert not core.stage_dir(run, "demo").exists()
    with core.stage_lock(run, "demo"): pass               # the next start of the stage
    assert core.stage_dir(run, "demo").read_json("v.json") == {"v": 1}
    assert [q.name for q in run.iterdir() if q.name.startswith(".")] == []
    # it died after the new outputs were in place: the old folder left behind is removed
    shutil.copytree(run/"demo", run/".old-demo-5e6f7a8b")
    with core.stage("demo", {"v": 2}, run_dir=run, wandb_mode="disabled") as st: st.out.write_json("v.json", {"v": 2})
    assert core.stage_dir(run, "demo").read_json("v.json") == {"v": 2}
    assert [q.name for q in run.iterdir() if q.name.startswith(".")] == []


def test_require_with_the_runs_parameters(project):
    run = table_run(project, "binary", run_id="byod")     # preprocess and features on data/binary.csv, from Python
    ctx = core.stage_dir(run, "features").read_json("context.json")
    assert core.run_data(run).endswith("binary.csv") and core.stale_reason(run, "features") == ""
    # an interrupted commit of features is rolled back by require, not re-run
    os.replace(run/"features", run/".old-features-0badc0de")
    assert core.require(run, "features", wandb_mode="disabled").read_json("context.json") == ctx
    # the run now records other parameters for features (as `--from train -p min_category_count 2` does): re-run
    core.update_summary(run, lambda s: s["stages"]["features"].update(parameters={"engineered": {}, "min_category_count": 2}))
    assert "min_category_count=5, recorded 2" in core.stale_reason(run, "features")
    core.require(run, "features", wandb_mode="disabled")
    assert core.stage_dir(run, "features").read_json("context.json")["params"]["min_category_count"] == 2
    assert core.stale_reason(run, "features") == ""
    # train: the run records no parameters for it, and its defaults hold for any table: it runs with them
    assert "splits.parquet" in core.require(run, "train", wandb_mode="disabled").manifest
    assert core.stage_dir(run, "train").read_json("context.json")["params"]["cv_folds"] == 5
    # a run about another table whose preprocess has no records: its defaults name the bundled data, so it stops
    other = core.resolve_run("other")
    with core.stage("eda", {"data": "data/binary.csv", "target": "target"}, run_dir=other, wandb_mode="disabled"): pass
    with pytest.raises(core.ParamError, match="mlops-nb run --from preprocess --run-id other"):
        core.require(other, "features", wandb_mode="disabled")
    # a scratch run is about no data yet: the stage defaults (the bundled data) apply
    scratch = core.resolve_run("scratch")
    assert core.run_data(scratch) is None
    assert core.require(scratch, "preprocess", wandb_mode="disabled").read_json("schema.json")["target"] == "income"
    assert core.run_data(scratch) == "data/raw/adult.data"
    # then it is about the bundled data, whose defaults are the stages' defaults: features runs with them
    assert "net_capital_gain" in core.require(scratch, "features", wandb_mode="disabled").read_text("feature_spec.json")
