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


def _timestamp_table(n: int = 400, seed: int = 0) -> pd.DataFrame:
    """A binary table with an ISO timestamp column (times of day, some missing, one unparseable) and look-alikes."""
    rng = np.random.default_rng(seed)
    t = pd.Timestamp("2023-01-01") + pd.to_timedelta(rng.integers(0, 365 * 86400, n), unit="s")
    ts = pd.Series(t.strftime("%Y-%m-%d %H:%M:%S"), dtype=object)
    ts[rng.choice(n, n // 20, replace=False)] = None
    ts[5] = "not a date"
    mostly = pd.Series(pd.Timestamp("2020-01-01") + pd.to_timedelta(rng.integers(0, 1000, n), unit="D")).dt.strftime("%Y-%m-%d")
    mostly[np.arange(n) % 10 == 0] = "unknown"                                   # 90% dates: not a datetime
    x = rng.normal(size=n)
    return pd.DataFrame({"ts": ts, "id": 10_000_000 + rng.permutation(n), "year": rng.integers(1990, 2021, n),
                         "mostly_dates": mostly, "x": x,
                         "target": np.where(x + (t.hour >= 12) + rng.normal(0, 0.5, n) > 0.5, "yes", "no")})


def test_timestamp_column_becomes_datetime_features(project):
    p = project/"stamps.csv"
    _timestamp_table().to_csv(p, index=False)
    res = run_preprocess(run_id="ts", data=str(p), target="target", wandb_mode="disabled")   # no data card: a split
    schema = res.data["schema"]
    assert {c: v["kind"] for c, v in schema["columns"].items()} == {
        "ts": "datetime", "id": "numeric", "year": "numeric", "mostly_dates": "categorical", "x": "numeric"}
    assert schema["columns"]["ts"]["format"] == "ISO8601" and schema["columns"]["ts"]["unparsed"] == 1
    assert schema["cleaning"]["datetime_unparsed"] == 1 and res.metrics["datetime_columns"] == 1
    assert schema["split"]["method"] == "stratified random"
    run = runs_dir()/"ts"
    train = stage_dir(run, "preprocess").read_parquet("train.parquet")
    test = stage_dir(run, "preprocess").read_parquet("test.parquet")
    assert str(train["ts"].dtype) == "datetime64[us, UTC]"

    f = run_features(run_id="ts", wandb_mode="disabled")                    # engineered=None: no card, none
    spec = load_spec(run)
    assert spec.version == 2 and spec.engineered == []
    assert [c for c in spec.features if c.startswith("ts__")] == [
        "ts__year", "ts__month", "ts__dayofweek", "ts__hour", "ts__elapsed_s", "ts__missing"]
    assert "ts" in spec.source_columns and set(spec.source_columns) == {"ts", "id", "year", "mostly_dates", "x"}
    assert spec.datetime["ts"]["origin"] == train["ts"].min().timestamp()
    stored = stage_dir(run, "features").read_parquet("test.parquet")[spec.features]
    pd.testing.assert_frame_equal(transform(test, spec), stored)
    assert f.metrics["datetime"] == 1

    # serving rows: the same instants as text with a +02:00 offset, one row at a time, give the stored values
    rows = test.astype(object)
    rows["ts"] = [None if pd.isna(v) else v.tz_convert("Etc/GMT-2").isoformat() for v in test["ts"]]
    assert rows["ts"].dropna().iloc[0].endswith("+02:00")
    pd.testing.assert_frame_equal(transform(rows, spec), stored)
    for i in range(0, len(rows), 7):
        pd.testing.assert_frame_equal(transform(rows.iloc[[i]], spec), stored.iloc[[i]])

    # a single record with an offset, one without, one missing
    rec = {"id": 1, "year": 2000, "mostly_dates": "2020-02-02", "x": 0.0}
    one = transform(pd.DataFrame([rec | {"ts": "2023-06-15T14:30:00+02:00"}]), spec).iloc[0]
    assert (one["ts__year"], one["ts__month"], one["ts__dayofweek"], one["ts__hour"], one["ts__missing"]) == (2023, 6, 3, 12, 0)
    want = (pd.Timestamp("2023-06-15 12:30", tz="UTC") - train["ts"].min()).total_seconds()
    assert one["ts__elapsed_s"] == np.float32(want)
    naive = transform(pd.DataFrame([rec | {"ts": "2023-06-15 12:30:00"}]), spec).iloc[0]
    pd.testing.assert_series_equal(naive, one)                                # naive text is UTC
    gone = transform(pd.DataFrame([rec | {"ts": None}]), spec).iloc[0]
    assert gone["ts__missing"] == 1
    assert gone["ts__elapsed_s"] == np.float32(spec.datetime["ts"]["impute"]["elapsed_s"])


def test_adult_has_no_datetime_and_data_card_defaults(project):
    res = run_preprocess(run_id="ad", wandb_mode="disabled")                       # test_data=None: adult.test
    assert {v["kind"] for v in res.data["schema"]["columns"].values()} == {"numeric", "categorical"}
    assert stage_dir(runs_dir()/"ad", "preprocess").read_json("context.json")["params"]["test_data"] == "data/raw/adult.test"
    spec = run_features(run_id="ad", wandb_mode="disabled").data["spec"]          # engineered=None: the card's
    assert spec.datetime == {} and [e["name"] for e in spec.engineered] == ["net_capital_gain"]
    spec = run_features(run_id="ad", engineered={}, wandb_mode="disabled").data["spec"]   # explicit wins
    assert spec.engineered == [] and "net_capital_gain" not in spec.features
    res = run_preprocess(run_id="ad2", test_data="", wandb_mode="disabled")        # explicit "": a split of adult.data
    assert res.data["schema"]["split"]["method"] == "stratified random"


@pytest.mark.parametrize("tz", [None, "Europe/Paris"])
def test_parquet_datetime_column(project, tz):
    df = _timestamp_table(n=200).drop(columns=["ts", "mostly_dates"])
    when = pd.Series(pd.date_range("2024-03-01 09:00", periods=len(df), freq="5h"))
    df["when"] = when.dt.tz_localize(tz) if tz else when
    df.loc[3, "when"] = pd.NaT
    df.to_parquet(project/"t.parquet")
    res = run_preprocess(run_id="pq", data=str(project/"t.parquet"), target="target", wandb_mode="disabled")
    assert res.data["schema"]["columns"]["when"]["kind"] == "datetime"
    spec = run_features(run_id="pq", wandb_mode="disabled").data["spec"]
    row = df.iloc[[0]].drop(columns="target")
    X = transform(row, spec)
    assert X["when__hour"].iloc[0] == (8 if tz else 9)                        # 09:00 in Paris (UTC+1) is 08:00 UTC
    assert X["when__dayofweek"].iloc[0] == 4 and "when__missing" in spec.features   # 2024-03-01 was a Friday
