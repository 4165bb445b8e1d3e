"""The stage cache, `mlops-nb reproduce` and `mlops-nb runs` on real runs of the stage notebooks (eda -> features of the
Adult sample): a cached re-run is byte-identical to its source, a fresh reproduction is byte-identical to both."""
import hashlib
import json
import subprocess
import sys

import pytest

from mlops_nb.core import DataError, read_summary, runs_dir
from mlops_nb.pipeline import run_pipeline
from mlops_nb.reproduce import reproduce
from mlops_nb.runs import compare_runs, list_runs

STAGES = ("eda", "preprocess", "features")


def _files(run, stage):
    d = runs_dir()/run/stage
    return {str(p.relative_to(d)): hashlib.sha256(p.read_bytes()).hexdigest() for p in d.rglob("*")
            if p.is_file() and p.name not in ("context.json", "manifest.json")}


def test_cache_then_reproduce_then_refuse_a_changed_input(project):
    run_pipeline({"test_size": 0.25}, to_stage="features", run_id="A", html=False, echo=False)
    b = run_pipeline({"test_size": 0.25}, to_stage="features", run_id="B", html=False, echo=False)
    assert [b["stages"][s]["status"] for s in STAGES] == ["cached"] * 3 and b["stages"]["features"]["cached_from"] == "A"
    assert b["metrics"]["features"] == read_summary(runs_dir()/"A")["metrics"]["features"]
    assert (runs_dir()/"B"/"notebooks"/"03_features.ipynb").is_file()

    doc = reproduce("A", "C", echo=False)                                  # never cached: every stage runs again
    assert doc["reproduced"] and doc["b"] == "C" and doc["params_differ"] == []
    assert doc["modes"] == {s: ["exact", "deterministic (seeded)"] for s in STAGES}
    assert [read_summary(runs_dir()/"C")["stages"][s]["status"] for s in STAGES] == ["ok"] * 3
    for s in STAGES: assert _files("A", s) == _files("B", s) == _files("C", s)   # cached and fresh: the same bytes
    judged = [r for r in doc["metrics"] if r["ok"] is not None]
    assert len(judged) >= 15 and all(r["ok"] for r in judged)
    assert any(r["metric"] == "preprocess.test_rows" for r in judged)
    c = compare_runs("A", "C")
    assert c["params"] == [] and c["inputs"] == []                          # same parameters (test_size 0.25 again), same files
    assert all(m["a"] == m["b"] for m in c["metrics"] if not m["timing"])
    r = subprocess.run([sys.executable, "-m", "mlops_nb", "runs", "list", "--json"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    rows = {x["run_id"]: x for x in json.loads(r.stdout)}
    assert rows["C"]["reproduces"] == "A" and rows["A"]["stages"] == list(STAGES)

    data = project/"data"/"raw"/"adult.data"                              # an input changes: refusal before anything runs
    data.write_text(data.read_text() + data.read_text().splitlines()[-1] + "\n")
    with pytest.raises(DataError, match=r"cannot reproduce run A: its input changed: data/raw/adult.data: sha256"):
        reproduce("A", "D", echo=False)
    assert not (runs_dir()/"D").exists()
    r = subprocess.run([sys.executable, "-m", "mlops_nb", "reproduce", "A"], capture_output=True, text=True)
    assert r.returncode == 2 and "its input changed: data/raw/adult.data" in r.stderr and "Traceback" not in r.stderr
    assert [x["run_id"] for x in list_runs()] == ["A", "B", "C"]
