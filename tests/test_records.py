"""Request records (mlops_nb.records) and the one transform on both paths: frames and parsed columns give the same numbers."""
import json

import jsonschema
import numpy as np
import pandas as pd
import pytest

from sample_data import adult_run, make_table
from mlops_nb.core import stage_dir
from mlops_nb.features import FeatureSpec, load_spec, run_features, transform
from mlops_nb.preprocess import run_preprocess
from mlops_nb.records import RecordSchema, RequestError, v2_metadata, v2_response


@pytest.fixture(scope="module")
def adult(tmp_path_factory):
    """The Adult sample's spec and raw test split (one features run for the whole module)."""
    from sample_data import write_adult_sample
    root = tmp_path_factory.mktemp("records")/"proj"
    root.mkdir()
    write_adult_sample(root)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MLOPS_NB_ROOT", str(root))
        mp.setenv("WANDB_MODE", "disabled")
        run = adult_run("rec")
        spec, test = load_spec(run), stage_dir(run, "preprocess").read_parquet("test.parquet")
    return spec, test.drop(columns=[spec.target])


def as_json_records(df: pd.DataFrame) -> list:
    """Rows as a client sends them: JSON objects, missing values as null."""
    return json.loads(df.to_json(orient="records", date_format="iso"))


def v2_body(df: pd.DataFrame, spec: FeatureSpec) -> dict:
    """An OIP V2 request as tritonclient or MLServer's pandas codec builds it: one [n, 1] tensor per column."""
    ins = []
    for c in spec.source_columns:
        vals = [None if v is None or v != v else pd.Timestamp(v).isoformat() if c in spec.datetime else v
                for v in df[c].astype(object).tolist()]
        dtype = "FP64" if c in spec.numeric else "BYTES"
        ins.append({"name": c, "datatype": dtype, "shape": [len(df), 1], "data": vals})
    return {"id": "t1", "parameters": {"content_type": "pd"}, "inputs": ins}


def check_paths(spec: FeatureSpec, df: pd.DataFrame):
    """Every way into transform gives the frame's numbers: mappings, parsed JSON records, V2 tensors, one row at a time."""
    want = transform(df, spec).to_numpy()
    rs = RecordSchema(spec, max_records=len(df))
    maps = {"object": {c: df[c].to_numpy(dtype=object) for c in spec.source_columns},
            "lists": {c: df[c].tolist() for c in spec.source_columns},
            "records": rs.parse_records(as_json_records(df)),
            "v2": rs.parse_v2(v2_body(df, spec))[0]}
    for how, cols in maps.items():
        np.testing.assert_array_equal(transform(cols, spec), want, err_msg=how)
    recs = as_json_records(df.iloc[:40])
    for i, r in enumerate(recs):                         # the server's case: one record alone
        np.testing.assert_array_equal(transform(rs.parse_records(r), spec), want[i:i + 1], err_msg=f"row {i}")
    return rs


def test_adult_paths_identical(adult):
    spec, test = adult
    odd = test.iloc[:30].copy()
    odd.loc[odd.index[:5], "workclass"] = "Astronaut"                # unseen: mapped to __other__, counted
    odd.loc[odd.index[5:10], "occupation"] = None                    # nullable in training
    rs = check_paths(spec, pd.concat([test, odd]))
    assert rs.required and set(spec.nullable) == {"workclass", "occupation", "native-country"}
    cols = rs.parse_records(as_json_records(odd))
    assert rs.unseen(cols)["workclass"] >= 5
    assert rs.unseen(cols) == rs.unseen(cols, transform(cols, spec)) == rs.unseen(odd)


@pytest.mark.parametrize("kind", ["binary", "multiclass", "regression"])
def test_generated_tables_with_datetimes(tmp_path, monkeypatch, kind):
    monkeypatch.setenv("MLOPS_NB_ROOT", str(tmp_path))
    rng = np.random.default_rng(3)
    df = make_table(kind, n=400)
    df["when"] = (pd.Timestamp("2021-01-01", tz="UTC") + pd.to_timedelta(rng.integers(0, 10**8, len(df)), unit="s")).astype(str)
    df["day"] = (pd.Timestamp("2022-03-01") + pd.to_timedelta(rng.integers(0, 900, len(df)), unit="D")).strftime("%d/%m/%Y")
    df.loc[rng.choice(len(df), 20, replace=False), "when"] = None
    df.to_csv(tmp_path/"t.csv", index=False)
    run_preprocess(run_id="t", data=str(tmp_path/"t.csv"), target="target", test_data="", wandb_mode="disabled")
    res = run_features(run_id="t", engineered={"d": "x0 - x2"}, wandb_mode="disabled")
    spec, raw = res.data["spec"], stage_dir(res.run_dir, "preprocess").read_parquet("test.parquet")
    assert {"when", "day"} <= set(spec.datetime) and spec.datetime["day"]["format"] == "%d/%m/%Y"
    raw = raw.drop(columns=["target"])
    raw.loc[raw.index[:5], "color"] = "purple"
    raw.loc[raw.index[5:10], "x1"] = np.nan
    check_paths(spec, raw)
    rs = RecordSchema(spec)
    iso = as_json_records(raw.iloc[:3])
    for r in iso: r["day"] = pd.Timestamp(r["day"]).strftime("%Y-%m-%d")     # ISO for a column trained as %d/%m/%Y
    np.testing.assert_array_equal(transform(rs.parse_records(iso), spec), transform(raw.iloc[:3], spec).to_numpy())


def error(rs, obj, v2=False) -> RequestError:
    with pytest.raises(RequestError) as e:
        rs.parse_v2(obj) if v2 else rs.parse_records(obj)
    return e.value


def test_every_refusal_names_the_field(adult):
    spec, test = adult
    rs = RecordSchema(spec, max_records=50)
    rec = as_json_records(test.iloc[:1])[0]
    rec["workclass"] = rec["workclass"] or "Private"
    cases = [({"hours_per_week": 40}, "hours_per_week", "did you mean 'hours-per-week'"),
             ({"Age": 40}, "Age", "did you mean 'age'"), ({"income": ">50K"}, "income", "the target"),
             ({"net_capital_gain": 0}, "net_capital_gain", "computes"), ({"zzz": 1}, "zzz", "known: age, workclass"),
             ({"age": "39"}, "age", "must be a number, got a string"), ({"age": True}, "age", "got a boolean"),
             ({"age": None}, "age", "must not be null"), ({"sex": 1}, "sex", "must be a string"),
             ({"age": [39]}, "age", "got an array"), ({"race": {"a": 1}}, "race", "got an object"),
             ({"fnlwgt": 1e39}, "fnlwgt", "float32"), ({"fnlwgt": 10**40}, "fnlwgt", "float32")]   # beyond float32: no inf reaches a DMatrix
    for patch, field, why in cases:
        e = error(rs, rec | patch)
        assert e.field == field and why in str(e) and e.status == 422, (patch, str(e))
    for token in ("NaN", "Infinity", "-Infinity"):                  # json.loads lets these through; orjson refuses them
        e = error(rs, json.loads(json.dumps(rec)[:-1] + f', "capital-gain": {token}}}'))
        assert e.field == "capital-gain" and "finite" in e.reason
    absent = {k: v for k, v in rec.items() if k != "education"}
    assert error(rs, absent).field == "education" and "required" in error(rs, absent).reason
    assert {k: v for k, v in rs.parse_records({k: v for k, v in rec.items() if k != "occupation"}).items()}["occupation"][0] is None
    assert error(rs, [rec, rec | {"age": "x"}]).record == 1
    assert error(rs, []).status == 422 and error(rs, [rec] * 51).status == 413
    assert error(rs, "hello").field is None and error(rs, [rec, 3]).record == 1
    body = v2_body(test.iloc[:3], spec)
    e = error(rs, body | {"inputs": body["inputs"] + [{"name": "hours_per_week", "datatype": "FP64", "shape": [3], "data": [1, 2, 3]}]}, v2=True)
    assert e.field == "hours_per_week" and "did you mean 'hours-per-week'" in e.reason
    bad = [dict(t, datatype="BYTES", data=["x"] * 3) if t["name"] == "age" else t for t in body["inputs"]]
    assert error(rs, body | {"inputs": bad}, v2=True).field == "age"
    assert error(rs, body | {"inputs": [t for t in body["inputs"] if t["name"] != "fnlwgt"]}, v2=True).field == "fnlwgt"


def test_json_schema_validates_real_records_and_rejects_unknown_fields(adult):
    spec, test = adult
    rs = RecordSchema(spec)
    schema = rs.json_schema()
    jsonschema.Draft202012Validator.check_schema(schema)
    v = jsonschema.Draft202012Validator(schema)
    recs = as_json_records(test)
    for r in recs: v.validate(r)
    v.validate(rs.example())
    rs.parse_records(rs.example())
    assert set(schema["required"]) == set(spec.source_columns) - set(spec.nullable)
    assert not v.is_valid(recs[0] | {"hours_per_week": 40}) and not v.is_valid(recs[0] | {"income": "<=50K"})
    assert not v.is_valid({k: x for k, x in recs[0].items() if k != "age"})
    props = schema["properties"]
    assert "Private" in props["workclass"]["x-categories"] and "Private" in props["workclass"]["description"]
    assert "enum" not in json.dumps(schema) and v.is_valid(recs[0] | {"workclass": "Astronaut"})   # unseen is valid
    rv = jsonschema.Draft202012Validator(rs.request_schema())
    assert rv.is_valid(recs[:5]) and rv.is_valid(recs[0]) and not rv.is_valid([])


def test_v2_metadata_and_response(adult):
    spec, test = adult
    md = v2_metadata("adult", 2, spec)
    assert [t["name"] for t in md["inputs"]] == spec.source_columns and md["versions"] == ["2"]
    assert {t["name"]: t["datatype"] for t in md["inputs"]}["age"] == "FP64"
    assert [o["name"] for o in md["outputs"]] == ["predict", "predict_proba"]
    r = v2_response("adult", 2, spec, np.array([0.2, 0.9]), ["<=50K", ">50K"], "t1")
    assert r["id"] == "t1" and r["outputs"][0]["data"] == ["<=50K", ">50K"]
    assert r["outputs"][1]["shape"] == [2, 2] and np.allclose(r["outputs"][1]["data"], [0.8, 0.2, 0.1, 0.9])
    json.dumps(r, allow_nan=False)


def test_specs_saved_before_nullable_load_and_accept_missing_everywhere(adult):
    spec, test = adult
    d = json.loads(spec.to_json())
    d.pop("nullable")
    old = FeatureSpec.from_dict(d)
    assert old.nullable is None and RecordSchema(old).required == []
    np.testing.assert_array_equal(transform(test, old).to_numpy(), transform(test, spec).to_numpy())
    cols = RecordSchema(old).parse_records({"age": 30})
    assert np.isnan(cols["fnlwgt"][0]) and cols["sex"][0] is None
