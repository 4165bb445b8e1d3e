"""Stage 01 (EDA): run_eda on the Adult sample, leakage hints, regression on Parquet, and errors that write nothing."""
import json
from pathlib import Path

import numpy as np
import pytest

from sample_data import make_table, wandb_summary
from mlops_nb.core import DataError, ParamError, read_table, runs_dir
from mlops_nb.eda import run_eda


def _tree(root: Path) -> list[str]:
    "Every path under `root/reports` (empty when there is none)."
    rep = root/"reports"
    return sorted(str(p.relative_to(root)) for p in rep.rglob("*")) if rep.exists() else []


def test_adult_sample(project):
    res = run_eda(run_id="r1", wandb_mode="disabled")
    prof = res.out.read_json("profile.json")  # verified against the manifest
    assert (prof["rows"], prof["columns"], prof["target"], prof["task"]) == (2000, 15, "income", "classification")
    assert prof["target_summary"]["positive_class"] == ">50K" and 0.15 < prof["target_summary"]["positive_fraction"] < 0.35
    assert prof["column_profile"]["workclass"]["dtype"] == "str" and prof["column_profile"]["workclass"]["missing"] > 0
    assert prof["train_test"]["test_rows"] == 1000 and prof["train_test"]["missing_in_test"] == []
    assert prof["leakage_hints"] == []
    assert set(prof["associations"]) == set(prof["dtypes"]) - {"income"}
    assert {"profile.json", "associations.csv", "target.png", "missing.png", "numeric.png", "associations.png",
            "context.json", "manifest.json"} == {p.name for p in res.out.path.iterdir()}
    res.out.verify()
    summary = json.loads((project/"reports/runs/r1/summary.json").read_text())
    assert summary["stages"]["eda"]["status"] == "ok"
    assert summary["metrics"]["eda"]["rows"] == 2000 and summary["metrics"]["eda"]["n_classes"] == 2
    assert set(res.figures) == {"target", "missing", "numeric", "associations"}


def test_leaky_column_is_hinted(project):
    df = read_table("data/raw/adult.data")
    rich = (df["income"] == ">50K").to_numpy()
    df["income_flag"] = np.where(rich, "high", "low")                               # a copy of the target
    df["bonus_paid"] = np.where(rich, np.random.default_rng(0).lognormal(8, 1, len(df)), 0.0)  # known after the outcome
    df.insert(0, "row_id", range(100_000, 100_000 + len(df)))                       # an identifier
    df.to_csv(project/"data/raw/leaky.csv", index=False)
    res = run_eda(data="data/raw/leaky.csv", test_data="", wandb_mode="disabled")
    hints = {h["column"]: h for h in res.out.read_json("profile.json")["leakage_hints"]}
    assert set(hints) == {"income_flag", "bonus_paid", "row_id"}
    for c in ("income_flag", "bonus_paid"):                                         # found by what they do
        assert hints[c]["kind"] == "leakage_suspect" and hints[c]["score"] == 1.0
        assert hints[c]["detail"].startswith(f"{c!r} alone predicts the target: a one-column model reaches CV roc_auc")
    assert hints["row_id"]["kind"] == "id_like"
    assert res.metrics["n_leakage_hints"] == 3 and "test_rows" not in res.metrics
    assert res.tables["associations"]["feature"].iloc[0] == "income_flag"
    assert list(res.tables["leakage"]["column"]) == ["income_flag", "bonus_paid", "row_id"]


def test_function_of_regression_target_is_hinted(project):
    df = make_table("regression", n=400)
    df["target_x3"] = 3 * df["target"] + np.random.default_rng(0).normal(0, 0.1, len(df))
    df.to_parquet(project/"data/raw/reg.parquet", index=False)
    res = run_eda(data="data/raw/reg.parquet", target="target", test_data="", wandb_mode="disabled")
    hints = res.out.read_json("profile.json")["leakage_hints"]
    assert [(h["column"], h["kind"]) for h in hints] == [("target_x3", "leakage_suspect")]
    assert hints[0]["score"] >= 0.99


def test_regression_parquet(project):
    make_table("regression", n=400).to_parquet(project/"data/raw/reg.parquet", index=False)
    res = run_eda(data="data/raw/reg.parquet", target="target", test_data="", wandb_mode="disabled")
    prof = res.out.read_json("profile.json")
    assert prof["task"] == "regression" and prof["rows"] == 400
    assert prof["associations"]["x0"]["measure"] == "|Spearman ρ|"
    assert prof["associations"]["color"]["measure"] == "correlation ratio"
    assert prof["associations"]["color"]["association"] < 0.15  # random colours
    assert "target_mean" in res.metrics


def test_wrong_target_writes_nothing(project):
    with pytest.raises(DataError) as e:
        run_eda(target="incme", wandb_mode="disabled")
    msg = str(e.value)
    assert "target column 'incme' not in data/raw/adult.data" in msg
    assert "available columns: age, workclass, fnlwgt" in msg and "income" in msg
    assert not runs_dir().exists()  # no run folder was created

    run_eda(run_id="r1", wandb_mode="disabled")
    before = _tree(project)
    manifest = (project/"reports/runs/r1/eda/manifest.json").read_text()
    for bad in (dict(target="incme"), dict(data="data/raw/nope.csv"), dict(test_data="data/raw/nope.test"),
                dict(na_values="?"), dict(wandb_mode="sometimes")):
        with pytest.raises((DataError, ParamError)):
            run_eda(run_id="r1", **{"wandb_mode": "disabled", **bad})
        with pytest.raises((DataError, ParamError)):
            run_eda(run_id="r2", **{"wandb_mode": "disabled", **bad})
    assert _tree(project) == before  # no new run, no staging folder, outputs of r1 untouched
    assert (project/"reports/runs/r1/eda/manifest.json").read_text() == manifest


def test_missing_file_names_it(project):
    with pytest.raises(DataError, match=r"data: data file not found: .*nope\.csv"):
        run_eda(data="data/raw/nope.csv", wandb_mode="disabled")
    (project/"data/raw/empty.csv").write_text("a,income\n")
    with pytest.raises(DataError, match="empty"):
        run_eda(data="data/raw/empty.csv", test_data="", wandb_mode="disabled")
    assert not runs_dir().exists()


def test_wandb_offline_run(project):
    res = run_eda(run_id="r1", wandb_mode="offline")
    ctx = res.out.read_json("context.json")
    assert ctx["wandb_mode"] == "offline" and ctx["wandb_dir"]
    run = wandb_summary(ctx["wandb_dir"])
    assert run["state"] == "finished"
    assert run["summary"]["rows"] == 2000 and run["summary"]["n_leakage_hints"] == 0
    assert run["summary"]["eda/associations"]["nrows"] == 14
    assert set(run["config"]["inputs"]) == {"raw-data", "raw-test"}
    assert run["config"]["target"] == "income"
