"""Preprocess and features stages on real (sampled) Adult data and on generated tables."""

import numpy as np
import pandas as pd
import pytest

from sample_data import make_table
from mlops_nb.core import DataError, ParamError, read_summary, runs_dir, stage_dir
from mlops_nb.features import load_spec, run_features, transform
from mlops_nb.preprocess import run_preprocess


def test_adult_sample_splits_and_schema(project):
    res = run_preprocess(run_id="r1", wandb_mode="disabled")
    schema = res.data["schema"]
    assert schema["task"] == "binary" and schema["classes"] == ["<=50K", ">50K"]
    assert schema["split"]["method"].startswith("test file")
    out = stage_dir(runs_dir()/"r1", "preprocess")
    test = out.read_parquet("test.parquet")
    assert set(test["income"].unique()) <= {"<=50K", ">50K"}           # the dot of adult.test is gone
    assert len(test) == 1000 and out.read_parquet("train.parquet")["income"].notna().all()
    s = read_summary(runs_dir()/"r1")
    assert s["metrics"]["preprocess"]["test_rows"] == 1000 and s["stages"]["preprocess"]["status"] == "ok"
    ctx = out.read_json("context.json")
    assert any(p.endswith("adult.data") for p in ctx["inputs"])           # input data recorded with its sha256


def test_features_requires_preprocess_and_is_consistent(project):
    run_features(run_id="r2", wandb_mode="disabled")                 # preprocess runs first with its defaults
    run = runs_dir()/"r2"
    assert stage_dir(run, "preprocess").exists()
    spec = load_spec(run)
    assert "net_capital_gain" in spec.features and spec.feature_types.count("c") == 8
    raw = stage_dir(run, "preprocess").read_parquet("test.parquet")
    X = transform(raw, spec)
    stored = stage_dir(run, "features").read_parquet("test.parquet")[spec.features]
    pd.testing.assert_frame_equal(X, stored)
    row = raw.iloc[[7]].astype(object)                                     # one JSON-like row, alone
    pd.testing.assert_frame_equal(transform(row, spec), X.iloc[[7]])


@pytest.mark.parametrize("kind", ["binary", "multiclass", "regression"])
def test_generated_tables(project, kind):
    p = project/f"{kind}.csv"
    make_table(kind).to_csv(p, index=False)
    res = run_preprocess(run_id=kind, data=str(p), target="target", test_data="", wandb_mode="disabled")
    assert res.data["schema"]["task"] == kind
    assert res.data["schema"]["split"]["method"] == ("random" if kind == "regression" else "stratified random")
    f = run_features(run_id=kind, engineered={}, wandb_mode="disabled")
    assert "x1__missing" in f.data["spec"].features


def test_bad_inputs_write_nothing(project):
    p = project/"t.csv"
    df = make_table("binary")
    df.to_csv(p, index=False)
    with pytest.raises(DataError, match="target column 'income' not in .*available columns: x0, x1"):
        run_preprocess(run_id="bad", data=str(p), test_data="", wandb_mode="disabled")
    df.assign(target=np.nan).to_csv(p, index=False)
    with pytest.raises(DataError, match="all missing"):
        run_preprocess(run_id="bad", data=str(p), target="target", test_data="", wandb_mode="disabled")
    df.iloc[:0].to_csv(p, index=False)
    with pytest.raises(DataError, match="empty"):
        run_preprocess(run_id="bad", data=str(p), target="target", test_data="", wandb_mode="disabled")
    df.assign(x2=df["x2"].astype(str).where(df.index != 3, "oops")).to_csv(p, index=False)
    with pytest.raises(DataError, match="column 'x2' .* numeric but 1 rows hold text"):
        run_preprocess(run_id="bad", data=str(p), target="target", test_data="", wandb_mode="disabled")
    df.to_csv(p, index=False)
    df.drop(columns="color").to_csv(project/"test.csv", index=False)
    with pytest.raises(DataError, match="'color' missing from"):
        run_preprocess(run_id="bad", data=str(p), target="target", test_data=str(project/"test.csv"), wandb_mode="disabled")
    with pytest.raises(ParamError, match="task 'ranking'"):
        run_preprocess(run_id="bad", data=str(p), target="target", test_data="", task="ranking", wandb_mode="disabled")
    assert not (runs_dir()/"bad").exists()


def test_failed_stage_keeps_previous_outputs(project):
    run_preprocess(run_id="keep", wandb_mode="disabled")
    before = stage_dir(runs_dir()/"keep", "preprocess").manifest
    with pytest.raises(DataError):
        run_features(run_id="keep", engineered={"bad": "nope - age"}, wandb_mode="disabled")
    assert not stage_dir(runs_dir()/"keep", "features").exists()
    assert stage_dir(runs_dir()/"keep", "preprocess").manifest == before
    assert not [p for p in (runs_dir()/"keep").iterdir() if p.name.startswith(".staging")]
