"""`mlops-nb reproduce` and `mlops-nb runs` on real runs of the stage notebooks (eda and preprocess of the Adult sample)."""
import json
import subprocess
import sys

import pytest

from mlops_nb.core import DataError, runs_dir
from mlops_nb.pipeline import run_pipeline
from mlops_nb.reproduce import reproduce
from mlops_nb.runs import compare_runs, list_runs


def test_reproduce_a_run_then_refuse_a_changed_input(project):
    run_pipeline({"test_size": 0.25}, to_stage="preprocess", run_id="A", html=False, echo=False)
    doc = reproduce("A", "B", echo=False)
    assert doc["reproduced"] and doc["b"] == "B" and doc["params_differ"] == []
    assert doc["modes"] == {"eda": ["exact", "deterministic (seeded)"], "preprocess": ["exact", "deterministic (seeded)"]}
    judged = [r for r in doc["metrics"] if r["ok"] is not None]
    assert len(judged) >= 10 and all(r["ok"] for r in judged)
    assert any(r["metric"] == "preprocess.test_rows" for r in judged)
    c = compare_runs("A", "B")
    assert c["params"] == [] and c["inputs"] == []                          # same parameters (test_size 0.25 again), same files
    assert all(m["a"] == m["b"] for m in c["metrics"] if not m["timing"])
    r = subprocess.run([sys.executable, "-m", "mlops_nb", "runs", "list", "--json"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    rows = {x["run_id"]: x for x in json.loads(r.stdout)}
    assert rows["B"]["reproduces"] == "A" and rows["A"]["stages"] == ["eda", "preprocess"]

    data = project/"data"/"raw"/"adult.data"                              # an input changes: refusal before anything runs
    data.write_text(data.read_text() + data.read_text().splitlines()[-1] + "\n")
    with pytest.raises(DataError, match=r"cannot reproduce run A: its input changed: data/raw/adult.data: sha256"):
        reproduce("A", "C", echo=False)
    assert not (runs_dir()/"C").exists()
    r = subprocess.run([sys.executable, "-m", "mlops_nb", "reproduce", "A"], capture_output=True, text=True)
    assert r.returncode == 2 and "its input changed: data/raw/adult.data" in r.stderr and "Traceback" not in r.stderr
    assert [x["run_id"] for x in list_runs()] == ["A", "B"]
