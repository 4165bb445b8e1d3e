"""The pipeline runner's mechanics (`mlops-nb run`), on tiny fake stage notebooks executed with papermill."""
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

from mlops_nb import core
from mlops_nb.pipeline import main, run_pipeline

REPO = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent

pytestmark = pytest.mark.slow

EDA_PARAMS = '''run_id = ""                      # run ("" = latest run, or a new one)
data = "data/raw/adult.data"     # table
test_data = "data/raw/adult.test"  # test table ("" = none)
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
engineered = ["a = b"] # engineered columns
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
    assert "no notebook for train, tune, evaluate" in out
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
    assert s["stages"]["eda"]["parameters"] == {"n": 5, "label": "007"}
    assert s["stages"]["preprocess"]["parameters"] == {}

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
    assert p["test_data"] == ["data/raw/adult.test", "str"]   # data given but equal to the default: nothing reset


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


def test_bring_your_own_data_defaults(fake_nbs):
    assert main(["run", "--no-html", "-p", "data", "data/raw/mine.csv", "-p", "sensitive", "[grp]"]) == 0
    s = summary_of()
    assert s["stages"]["eda"]["parameters"] == {"data": "data/raw/mine.csv", "test_data": ""}
    assert s["stages"]["preprocess"]["parameters"] == {"engineered": []}
    assert s["stages"]["features"]["parameters"] == {"sensitive": ["grp"]}
    assert params_of()["test_data"] == ["", "str"]


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
