"""The stage cache on the real stage notebooks: a second run reuses every stage byte for byte; a changed parameter reruns exactly its stage and those after it."""
import hashlib

from mlops_nb.core import read_summary, runs_dir
from mlops_nb.pipeline import run_pipeline


def _files(run, stage):
    d = runs_dir()/run/stage
    return {str(p.relative_to(d)): hashlib.sha256(p.read_bytes()).hexdigest() for p in d.rglob("*")
            if p.is_file() and p.name not in ("context.json", "manifest.json")}


def test_cache_reuses_and_invalidates(project):
    run_pipeline({}, to_stage="features", run_id="A", html=False, echo=False)
    b = run_pipeline({}, to_stage="features", run_id="B", html=False, echo=False)
    assert {s: b["stages"][s]["status"] for s in ("eda", "preprocess", "features")} == dict.fromkeys(("eda", "preprocess", "features"), "cached")
    assert b["stages"]["features"]["cached_from"] == "A" and b["metrics"]["features"] == read_summary(runs_dir()/"A")["metrics"]["features"]
    assert (runs_dir()/"B"/"notebooks"/"03_features.ipynb").is_file()
    for s in ("eda", "preprocess", "features"): assert _files("A", s) == _files("B", s)
    c = run_pipeline({"min_category_count": 3}, to_stage="features", run_id="C", html=False, echo=False)
    assert [c["stages"][s]["status"] for s in ("eda", "preprocess", "features")] == ["cached", "cached", "ok"]
    n = run_pipeline({}, to_stage="preprocess", run_id="D", html=False, echo=False, cache=False)
    assert [n["stages"][s]["status"] for s in ("eda", "preprocess")] == ["ok", "ok"]
    for s in ("eda", "preprocess"): assert _files("A", s) == _files("D", s)   # a fresh run gives the same bytes
