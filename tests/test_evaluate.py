"""Evaluate stage: test metrics, intervals, comparisons, fairness, explanations, model card and gate on small runs."""

import pytest

from sample_data import adult_run, make_table, table_run
from mlops_nb.core import ParamError, read_summary, runs_dir, stage_dir
from mlops_nb.evaluate import run_evaluate
from mlops_nb.preprocess import run_preprocess
from mlops_nb.train import run_train
from mlops_nb.tune import run_tune

SMALL = dict(n_bootstrap=200, n_explain=200, explain_rows=3, min_slice_size=20)


def _model(run_id: str):
    """Train and tune a small model in the run, W&B disabled, one thread (tiny data)."""
    run_train(run_id=run_id, n_folds=0, max_rounds=80, early_stopping_rounds=10, nthread=1, wandb_mode="disabled")
    run_tune(run_id=run_id, n_trials=2, max_rounds=80, early_stopping_rounds=10, timeout=60.0, refit_lr_factor=1.0,
             n_startup_trials=2, nthread=1, wandb_mode="disabled")


def _table_run(project, kind: str) -> str:
    table_run(project, kind, n=500)
    _model(kind)
    return kind


def test_binary_adult_sample(project):
    adult_run("a")                                               # preprocess runs first with its defaults
    _model("a")
    res = run_evaluate(run_id="a", **SMALL)                      # W&B offline (the fixture's default)
    run = runs_dir()/"a"
    m = read_summary(run)["metrics"]["test"]
    for k in ("roc_auc", "pr_auc", "log_loss", "brier", "accuracy", "precision", "recall", "f1", "ece", "threshold"):
        assert isinstance(m[k], float), k
    for k in ("roc_auc", "log_loss", "f1"):
        lo, hi = m["ci"][k]
        assert lo <= m[k] <= hi, k
    assert 0 <= m["ci"]["ece"][0] <= m["ci"]["ece"][1]   # binned ECE: a percentile CI need not cover the estimate
    assert 0 < m["threshold"] < 1 and m["threshold_strategy"] == "cost" and m["roc_auc"] > 0.8
    assert set(m["baseline"]) == {"constant", "linear"} and 0 <= m["baseline"]["linear"]["mcnemar_p"] <= 1
    assert m["baseline"]["constant"]["roc_auc"] == 0.5 and m["baseline_gain"] is not None
    assert set(m["fairness"]) >= {"sex", "race", "demographic_parity_difference", "equalized_odds_difference"}
    assert m["fairness"]["sex"]["groups"] == 2
    assert m["shap_additivity_error"] < 1e-3
    out = stage_dir(run, "evaluate")
    out.verify()
    gate = out.read_json("gate.json")
    assert gate["passed"] == m["gate_passed"] and set(gate["checks"]) == {"roc_auc", "ece", "baseline_gain"}
    assert gate["threshold"] == m["threshold"]
    for f in ("roc.png", "pr.png", "calibration.png", "confusion_matrix.png", "importance.png", "shap_summary.png",
              "fairness_sex.png", "fairness_race.png", "model_card.md", "model_card.html", "predictions.parquet",
              "slices.csv", "fairness.csv", "explanations.csv", "shap_values.parquet"):
        assert f in out.manifest, f
    card = out.read_text("model_card.md")
    assert f"{m['threshold']:.4g}" in card and "## Fairness" in card and "## Limitations" in card
    assert "<table>" in out.read_text("model_card.html")
    preds = out.read_parquet("predictions.parquet")
    assert len(preds) == 1000 and set(preds["decision"]) <= {"<=50K", ">50K"}
    assert set(res.figures) >= {"roc", "calibration", "shap_summary"} and "slices" in res.tables
    assert list(res.tables["baselines"].columns[:5]) == ["name", "metric", "model", "baseline", "diff"]
    assert out.read_json("context.json")["wandb_mode"] == "offline"
    # comparing the run with itself: no difference, McNemar p = 1
    res2 = run_evaluate(run_id="a", compare_to="a", sensitive=[], n_bootstrap=0, n_explain=0, explain_rows=0,
                        wandb_mode="disabled")
    ref = res2.metrics["reference"]
    assert ref["roc_auc_diff"] == 0 and ref["mcnemar_p"] == 1.0 and ref["threshold"] == m["threshold"]
    assert res2.metrics["fairness"]["demographic_parity_difference"] is None and res2.metrics["ci"] == {}


@pytest.mark.parametrize("kind", ["multiclass", "regression"])
def test_multiclass_and_regression(project, kind):
    rid = _table_run(project, kind)
    gate = {"regression": {"r2": [">=", 0.999]}, "multiclass": {"accuracy": [">=", 0.0]}}
    res = run_evaluate(run_id=rid, sensitive=["group"], gate=gate, wandb_mode="disabled", **SMALL)
    m = read_summary(runs_dir()/rid)["metrics"]["test"]
    out = stage_dir(runs_dir()/rid, "evaluate")
    assert set(m["fairness"]["group"]) >= {"groups", "smallest_group"} and m["fairness"]["group"]["groups"] == 2
    if kind == "multiclass":
        assert m["threshold"] is None and m["threshold_strategy"] == "argmax"
        for k in ("roc_auc", "log_loss", "accuracy", "f1"):
            lo, hi = m["ci"][k]
            assert lo <= m[k] <= hi, k
        assert "confusion_matrix.png" in out.manifest and m["baseline"]["linear"]["mcnemar_p"] <= 1
        assert m["gate_passed"] is True
        assert res.data["contribs"].ndim == 3
    else:
        for k in ("rmse", "mae", "r2"):
            lo, hi = m["ci"][k]
            assert lo <= m[k] <= hi, k
        assert "residuals.png" in out.manifest and "roc.png" not in out.manifest
        assert m["gate_passed"] is False and m["gate"] == {"r2": False}           # a failing gate does not fail the stage
        assert out.read_json("gate.json")["checks"]["r2"]["value"] == m["r2"]
        assert "mae_difference" in m["fairness"]
    assert m["shap_additivity_error"] < 1e-3


def test_bad_parameters_write_nothing(project):
    p = project/"b.csv"
    make_table("binary", n=300).to_csv(p, index=False)
    run_preprocess(run_id="b", data=str(p), target="target", test_data="", wandb_mode="disabled")
    run = runs_dir()/"b"
    with pytest.raises(ParamError, match=r"sensitive columns 'sex', 'race' not in the data; columns: x0, x1, .*group"):
        run_evaluate(run_id="b", wandb_mode="disabled")           # Adult's default on another table
    with pytest.raises(ParamError, match="gate metric 'auc' is not a known metric"):
        run_evaluate(run_id="b", sensitive=[], gate={"auc": [">=", 0.9]}, wandb_mode="disabled")
    with pytest.raises(ParamError, match="gate metric 'rmse' is not a binary metric"):
        run_evaluate(run_id="b", sensitive=[], gate={"rmse": ["<=", 1.0]}, wandb_mode="disabled")
    with pytest.raises(ParamError, match="threshold_strategy 'best'"):
        run_evaluate(run_id="b", sensitive=[], threshold_strategy="best", wandb_mode="disabled")
    with pytest.raises(ParamError, match="compare_to 'nope'"):
        run_evaluate(run_id="b", sensitive=[], compare_to="nope", wandb_mode="disabled")
    assert not (run/"train").exists() and not (run/"evaluate").exists()   # checked before any later stage ran
    assert "test" not in read_summary(run)["metrics"]
