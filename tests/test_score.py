"""Batch scoring (`mlops_nb.score`, `mlops-nb score`) against the evaluate stage's stored predictions of the same rows."""
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from sample_data import evaluated_run
from mlops_nb.core import DataError, ParamError
from mlops_nb.score import errors_path, score_file

TOL = 1e-6


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Evaluated runs (Adult sample, a generated multiclass table, a generated regression table) in one project."""
    from _pytest.monkeypatch import MonkeyPatch
    from sample_data import REPO, write_adult_sample
    root = tmp_path_factory.mktemp("score")/"proj"
    root.mkdir()
    write_adult_sample(root)
    mp = MonkeyPatch()
    for k, v in {"MLOPS_NB_ROOT": str(root), "MLOPS_NB_NBS": str(REPO/"nbs"), "WANDB_MODE": "disabled"}.items(): mp.setenv(k, v)
    mp.chdir(root)
    yield root, {k: evaluated_run(k, kind=k) for k in ("adult", "multiclass", "regression")}
    mp.undo()


def expected(run: Path) -> pd.DataFrame:
    """The evaluate stage's predictions of the run's test rows."""
    return pd.read_parquet(run/"evaluate"/"predictions.parquet")


def check_against_evaluate(out: pd.DataFrame, run: Path, rows=slice(None)):
    """Every scored row's numbers equal evaluate's (within 1e-6); labels equal its decisions."""
    ev = expected(run).iloc[rows].reset_index(drop=True)
    out = out.reset_index(drop=True)
    if "probability" in ev:                                      # binary: P(positive class) and the decision
        pos = [c for c in out if c.startswith("p_")][-1]
        np.testing.assert_allclose(out[pos], ev["probability"], atol=TOL, rtol=0)
        np.testing.assert_allclose(out[[c for c in out if c.startswith("p_")]].sum(axis=1), 1, atol=TOL)
        assert (out["prediction"].astype(str) == ev["decision"].astype(str)).all()
    elif "prediction" in ev and "residual" in ev:                # regression: the value
        np.testing.assert_allclose(out["prediction"].astype(float), ev["prediction"], atol=TOL, rtol=0)
    else:                                                        # multiclass: every class's probability
        for c in [c for c in ev if c.startswith("p_")]: np.testing.assert_allclose(out[c], ev[c], atol=TOL, rtol=0)
        assert (out["prediction"].astype(str) == ev["decision"].astype(str)).all()


@pytest.mark.parametrize("kind", ["adult", "multiclass", "regression"])
@pytest.mark.parametrize("fmt", ["parquet", "csv"])
def test_scores_equal_evaluate_predictions(runs, kind, fmt, tmp_path):
    root, rs = runs
    run = rs[kind]
    test = pd.read_parquet(run/"preprocess"/"test.parquet")
    src = run/"preprocess"/"test.parquet"
    if fmt == "csv":
        src = tmp_path/"test.csv"
        test.to_csv(src, index=False)
    r = score_file(src, tmp_path/f"out.{fmt}", bundle=run/"evaluate"/"model", chunk_rows=97, progress=False)
    assert (r["rows"], r["scored"], r["bad_rows"]) == (len(test), len(test), 0)
    out = pd.read_parquet(tmp_path/"out.parquet") if fmt == "parquet" else pd.read_csv(tmp_path/"out.csv")
    target = pd.read_json(run/"preprocess"/"schema.json", typ="series")["target"]
    assert list(out.columns)[:1] == [target] and "model" in out and "version" in out   # the target passes through
    assert (out[target].astype(str) == test[target].astype(str)).all()
    check_against_evaluate(out, run)


def test_raw_adult_test_file_reads_as_training_reads_it(runs, tmp_path):
    """The raw `adult.test` (header line to skip, ' ?' for missing, labels ending in '.'): the data card's options."""
    root, rs = runs
    r = score_file(root/"data"/"raw"/"adult.test", tmp_path/"o.csv", bundle=rs["adult"]/"evaluate"/"model", progress=False)
    out = pd.read_csv(tmp_path/"o.csv")
    assert r["bad_rows"] == 0 and set(out["income"]) <= {"<=50K", ">50K"}
    check_against_evaluate(out, rs["adult"])


def test_passthrough_columns_kept_as_read(runs, tmp_path):
    run = runs[1]["adult"]
    test = pd.read_parquet(run/"preprocess"/"test.parquet")
    test.insert(0, "id", [f"{i:06d}" for i in range(len(test))])
    test["note"] = "x"
    test.to_csv(tmp_path/"t.csv", index=False)
    score_file(tmp_path/"t.csv", tmp_path/"o.parquet", bundle=run/"evaluate"/"model", progress=False)
    out = pd.read_parquet(tmp_path/"o.parquet")
    assert list(out.columns) == ["id", "income", "note", "prediction", "p_<=50K", "p_>50K", "model", "version"]
    assert out["id"].iloc[7] == "000007"                        # IDs as text: leading zeros kept


def test_bad_rows_reported_with_row_numbers_rest_scored(runs, tmp_path):
    run = runs[1]["adult"]
    test = pd.read_parquet(run/"preprocess"/"test.parquet")
    bad = test.astype({"age": object, "hours-per-week": object})
    bad.loc[2, "age"], bad.loc[40, "hours-per-week"], bad.loc[41, "age"] = "abc", "inf", "12 years"
    bad.to_csv(tmp_path/"bad.csv", index=False)
    lines = (tmp_path/"bad.csv").read_text().splitlines(keepends=True)
    lines.insert(100, lines[100].rstrip("\n") + ",extra\n")   # a line with a field too many (file line 101)
    (tmp_path/"bad.csv").write_text("".join(lines))
    r = score_file(tmp_path/"bad.csv", tmp_path/"o.csv", bundle=run/"evaluate"/"model", chunk_rows=30, progress=False)
    assert (r["rows"], r["bad_rows"], r["scored"]) == (len(test), 4, len(test) - 3)
    assert r["bad_by_column"] == {"age": 2, "hours-per-week": 1, "(line)": 1}
    err = pd.read_csv(errors_path(tmp_path/"o.csv"))
    cells = err[err["column"].notna()]
    assert cells[["row", "column", "value"]].values.tolist() == [[3, "age", "abc"], [41, "hours-per-week", "inf"],
                                                                 [42, "age", "12 years"]]
    assert set(cells["reason"]) == {"not a number", "not a finite number"}
    skipped = err[err["line"].notna()]
    assert skipped["line"].tolist() == [101] and "expected 15 fields, saw 16" in skipped["reason"].iloc[0]
    out = pd.read_csv(tmp_path/"o.csv")
    assert out["prediction"].isna().sum() == 3 and len(out) == len(test)
    ok = out["prediction"].notna().to_numpy()
    np.testing.assert_allclose(out["p_>50K"][ok], expected(run)["probability"][ok], atol=TOL, rtol=0)


def test_chunked_equals_one_chunk(runs, tmp_path):
    run = runs[1]["multiclass"]
    src, b = run/"preprocess"/"test.parquet", run/"evaluate"/"model"
    score_file(src, tmp_path/"one.parquet", bundle=b, chunk_rows=10**6, progress=False)
    score_file(src, tmp_path/"many.parquet", bundle=b, chunk_rows=7, progress=False)
    pd.testing.assert_frame_equal(pd.read_parquet(tmp_path/"one.parquet"), pd.read_parquet(tmp_path/"many.parquet"))
    pd.read_parquet(src).to_csv(tmp_path/"t.csv", index=False)
    score_file(tmp_path/"t.csv", tmp_path/"one.csv", bundle=b, chunk_rows=10**6, progress=False)
    score_file(tmp_path/"t.csv", tmp_path/"many.csv", bundle=b, chunk_rows=5, progress=False)
    assert (tmp_path/"one.csv").read_bytes() == (tmp_path/"many.csv").read_bytes()


def test_errors_before_writing_leave_earlier_output_intact(runs, tmp_path):
    run = runs[1]["adult"]
    b, src, out = run/"evaluate"/"model", run/"preprocess"/"test.parquet", tmp_path/"o.parquet"
    score_file(src, out, bundle=b, progress=False)
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    pd.read_parquet(src).drop(columns=["education"]).to_parquet(tmp_path/"less.parquet")
    before["less.parquet"] = (tmp_path/"less.parquet").read_bytes()
    with pytest.raises(DataError, match="'education'"): score_file(tmp_path/"less.parquet", out, bundle=b, progress=False)
    with pytest.raises(DataError, match="not found: .*nope.csv"): score_file(tmp_path/"nope.csv", out, bundle=b)
    with pytest.raises(ParamError, match="unsupported extension '.xlsx'"): score_file(tmp_path/"in.xlsx", out, bundle=b)
    with pytest.raises(ParamError, match="unsupported extension '.json'"): score_file(src, tmp_path/"o.json", bundle=b)
    with pytest.raises(ParamError, match="chunk_rows"): score_file(src, out, bundle=b, chunk_rows=0)
    with pytest.raises(ParamError, match="--bundle"): score_file(src, out)
    test = pd.read_parquet(src)
    test.to_csv(tmp_path/"broken.csv", index=False)
    data = (tmp_path/"broken.csv").read_bytes()
    (tmp_path/"broken.csv").write_bytes(data[:-200] + b"\xff\xfe" + data[-200:])    # undecodable bytes near the end
    before["broken.csv"] = (tmp_path/"broken.csv").read_bytes()
    with pytest.raises(DataError, match="broken.csv"): score_file(tmp_path/"broken.csv", out, bundle=b, chunk_rows=50, progress=False)
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before           # nothing written, no temporary left


def cli(*args, env=None):
    """`mlops-nb` as a subprocess: exit code, stdout, stderr."""
    exe = Path(sys.executable).parent/"mlops-nb"
    r = subprocess.run([str(exe), *map(str, args)], capture_output=True, text=True, timeout=300, env={**os.environ, **(env or {})})
    return r.returncode, r.stdout, r.stderr


def test_cli_exit_codes(runs, tmp_path):
    run = runs[1]["adult"]
    b, src = run/"evaluate"/"model", run/"preprocess"/"test.parquet"
    code, _, err = cli("score", src, tmp_path/"o.csv", "--bundle", b, "--chunk-rows", "100")
    assert code == 0 and "scored 1,000 of 1,000 rows" in err, err
    assert len(pd.read_csv(tmp_path/"o.csv")) == 1000
    bad = pd.read_parquet(src).astype({"age": object})
    bad.loc[5, "age"] = "old"
    bad.to_csv(tmp_path/"bad.csv", index=False)
    code, _, err = cli("score", tmp_path/"bad.csv", tmp_path/"b.parquet", "--bundle", b)
    assert code == 1 and "1 bad rows (age 1)" in err and "b.errors.csv" in err, err
    code, _, err = cli("score", tmp_path/"missing.csv", tmp_path/"x.csv", "--bundle", b)
    assert code == 2 and "missing.csv" in err and "Traceback" not in err and not (tmp_path/"x.csv").exists()
    code, _, err = cli("score", src, tmp_path/"x.csv", "--bundle", tmp_path)
    assert code == 2 and "not a model bundle" in err and "Traceback" not in err
    code, _, err = cli("score", src, tmp_path/"x.csv")
    assert code == 2 and "--bundle" in err


def test_registered_model_by_name_and_version_folder(runs, tmp_path):
    from mlops_nb.registry import register, version_dir
    run = runs[1]["adult"]
    reg = tmp_path/"models"
    v = register(run, name="adult", root=reg, wandb_mode="disabled")["version"]
    src = run/"preprocess"/"test.parquet"
    r = score_file(src, tmp_path/"o.parquet", name="adult", ref=v, root=reg, progress=False)
    out = pd.read_parquet(tmp_path/"o.parquet")
    assert (r["model"], r["version"]) == ("adult", str(v)) and set(out["model"]) == {"adult"} and set(out["version"]) == {str(v)}
    check_against_evaluate(out, run)
    code, _, err = cli("score", src, tmp_path/"o2.csv", "--name", "adult", "--ref", "staging", "--registry", reg)
    assert code == 0 and f"adult version {v}" in err, err
    score_file(src, tmp_path/"o3.parquet", bundle=version_dir("adult", v, reg), progress=False)   # a version folder
    pd.testing.assert_frame_equal(pd.read_parquet(tmp_path/"o3.parquet"), out)
    code, _, err = cli("score", src, tmp_path/"o4.csv", "--name", "nosuch", "--registry", reg)
    assert code == 2 and "nosuch" in err and "Traceback" not in err and not (tmp_path/"o4.csv").exists(), err


def test_batch_score_benchmark_pieces(runs, tmp_path):
    """The benchmark's resampled table and its memory probe, on a few rows (no timing asserted)."""
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from benchmarks import batch_score as bs
    run = runs[1]["adult"]
    f = bs.resample(run/"preprocess"/"test.parquet", tmp_path/"t.parquet", 2500, group=1000)
    t = pd.read_parquet(f)
    assert len(t) == 2500 and t["id"].tolist() == list(range(2500)) and list(t.columns)[1:] == list(pd.read_parquet(run/"preprocess"/"test.parquet").columns)
    m = bs.peak_rss(f, run/"evaluate"/"model", tmp_path/"o.parquet", 500)
    assert m["rows"] == 2500 and m["peak_mb"] >= m["base_mb"] > 0
    w = bs.peak_rss(f, run/"evaluate"/"model", tmp_path/"w.parquet", 0, mode="whole")
    assert w["rows"] == 2500
    np.testing.assert_allclose(pd.read_parquet(tmp_path/"w.parquet")["probability"], pd.read_parquet(tmp_path/"o.parquet")["p_>50K"], atol=TOL)
