"""Evaluate stage: test metrics, intervals, comparisons, fairness, explanations, model card and gate on small runs."""

import numpy as np
import pandas as pd
import pytest

from sample_data import adult_run, make_table, table_run
from mlops_nb.core import ArtifactDir, ParamError, read_summary, runs_dir, stage_dir
from mlops_nb.evaluate import run_evaluate
from mlops_nb.features import load_xy
from mlops_nb.model import ModelBundle, load_run_bundle
from mlops_nb.preprocess import run_preprocess
from mlops_nb.train import run_train
from mlops_nb.tune import run_tune

SMALL = dict(n_bootstrap=200, n_explain=200, explain_rows=3, min_slice_size=20)
RELATIVE = {"beats_baselines", "cv_beats_baselines", "leakage"}


def _model(run_id: str):
    """Train and tune a small model in the run, W&B disabled, one thread (tiny data)."""
    run_train(run_id=run_id, cv_folds=3, max_rounds=80, early_stopping_rounds=10, nthread=1, wandb_mode="disabled")
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
    const = m["baseline"]["constant"]
    assert const["objective"] == "log_loss" and const["gain"] > 0 and const["log_loss_diff_ci"][1] < 0 and const["better"]
    assert m["best_baseline"] == "linear" and m["baseline_gain"] == m["baseline"]["linear"]["gain"]
    assert m["sensitive"] == ["sex", "race"]                     # from the Adult data card (sensitive=None)
    assert set(m["fairness"]) >= {"sex", "race", "demographic_parity_difference", "equalized_odds_difference"}
    assert m["fairness"]["sex"]["groups"] == 2
    assert m["shap_additivity_error"] < 1e-3
    out = stage_dir(run, "evaluate")
    out.verify()
    gate = out.read_json("gate.json")
    assert gate["passed"] == m["gate_passed"] and set(gate["checks"]) == RELATIVE   # no absolute defaults
    sel = stage_dir(run, "tune").read_json("selection.json")
    assert gate["checks"]["cv_beats_baselines"]["passed"] is sel["beats_baselines"] and gate["notes"] == []
    assert gate["checks"]["leakage"]["passed"] and gate["checks"]["leakage"]["suspects"] == []   # none on Adult
    assert gate["checks"]["beats_baselines"]["passed"] is m["baseline"]["linear"]["better"]
    assert gate["reasons"] == [c["reason"] for c in gate["checks"].values() if c["passed"] is False]
    assert gate["passed"] == (not gate["reasons"])
    assert gate["threshold"] == m["threshold"]
    # the evaluated bundle: the final model with its threshold, in evaluate's folder; tune's folder untouched
    assert "model/manifest.json" in out.manifest
    b = load_run_bundle(run, "evaluate")
    assert b.threshold == m["threshold"] and b.meta["evaluated"]["run_id"] == "a"
    assert load_run_bundle(run).threshold == m["threshold"]     # evaluate's bundle comes first
    X, _, _ = load_xy(run, "test")
    assert np.allclose(b.predict_features(X), res.data["bundle"].predict_features(X))
    assert not (run/"tune"/"model").exists() or load_run_bundle(run, "tune").threshold is None
    for f in ("roc.png", "pr.png", "calibration.png", "confusion_matrix.png", "importance.png", "shap_summary.png",
              "fairness_sex.png", "fairness_race.png", "model_card.md", "model_card.html", "predictions.parquet",
              "slices.csv", "fairness.csv", "explanations.csv", "shap_values.parquet"):
        assert f in out.manifest, f
    card = out.read_text("model_card.md")
    for s in (f"{m['threshold']:.4g}", "## Fairness", "## Limitations", "## Model selection", "## Leakage", "## Gate",
              "tune stage's out-of-fold predictions", "The leakage check found no suspect column", "| default | train stage |"):
        assert s in card, s
    assert "<table>" in out.read_text("model_card.html")
    preds = out.read_parquet("predictions.parquet")
    assert len(preds) == 1000 and set(preds["decision"]) <= {"<=50K", ">50K"}
    assert set(res.figures) >= {"roc", "calibration", "shap_summary"} and "slices" in res.tables
    assert list(res.tables["baselines"].columns[:5]) == ["name", "metric", "model", "baseline", "diff"]
    assert out.read_json("context.json")["wandb_mode"] == "offline"
    # comparing the run with itself (its evaluated bundle, then the bundle folder): no difference, McNemar p = 1
    for ref_name in ("a", str(run/"evaluate"/"model")):
        res2 = run_evaluate(run_id="a", compare_to=ref_name, sensitive=[], n_bootstrap=0, n_explain=0, explain_rows=0,
                            wandb_mode="disabled")
        ref = res2.metrics["reference"]
        assert ref["log_loss_diff"] == 0 and ref["mcnemar_p"] == 1.0 and ref["threshold"] == m["threshold"]
        assert not ref["better"] and ref["log_loss_diff_ci"] == [None, None]
    assert res2.metrics["fairness"]["demographic_parity_difference"] is None and res2.metrics["ci"] == {}


def test_new_layout_files(project):
    """The readers of the new train/tune files: OOF predictions for the threshold, CV selection and leakage in the gate."""
    adult_run("n")
    _model("n")
    run = runs_dir()/"n"
    _, ytr, _ = load_xy(run, "train")
    tune, train = ArtifactDir(run/"tune"), ArtifactDir(run/"train")
    tune.write_parquet("oof.parquet", pd.DataFrame({"row": np.arange(len(ytr)), "y": ytr.astype(int), "pred": 0.3}))
    tune.write_json("selection.json", {"objective": "log_loss", "best_baseline": "linear", "beats_baselines": False,
                                       "candidates": [{"name": "default", "cv_mean": 0.41, "cv_std": 0.01, "selected": True}],
                                       "baselines": {"constant": 0.55, "linear": 0.40}})
    train.write_json("leakage.json", {"suspects": [{"column": "relationship", "reason": "one-column model", "evidence": 0.99}],
                                      "accepted": [{"column": "age", "reason": "near-copy", "evidence": 0.98}],
                                      "accept_leakage": ["age"]})
    train.write_parquet("oof_linear.parquet", pd.DataFrame({"row": np.arange(len(ytr)), "y": ytr.astype(int), "pred": 0.9}))
    res = run_evaluate(run_id="n", sensitive=[], n_bootstrap=0, n_explain=0, explain_rows=0, wandb_mode="disabled")
    m, gate = res.metrics, res.data["gate"]
    # a constant OOF score: the cheapest guarded choice is to predict the majority class, so just above 0.3
    assert 0.3 < m["threshold"] < 0.3 + 1e-9
    assert 0.9 < m["baseline"]["linear"]["threshold"] < 0.9 + 1e-9            # the baseline's own OOF predictions
    assert 0 < m["baseline"]["constant"]["threshold"] < 1                      # its own OOF file, else the validation rows
    assert not gate["passed"] and not gate["checks"]["cv_beats_baselines"]["passed"] and not gate["checks"]["leakage"]["passed"]
    reasons = " ".join(gate["reasons"])
    assert "found no XGBoost candidate as good as the best baseline `linear`" in reasons
    assert "`relationship` (one-column model)" in reasons and "`age`" not in reasons
    assert "`drop_columns`" in reasons and "`accept_leakage`" in reasons
    card = res.data["model_card"]
    assert "out-of-fold" in card and "**does not beat**" in card and "| relationship | one-column model" in card
    assert "| age | near-copy | 0.98 | yes |" in card
    assert load_run_bundle(run, "evaluate").threshold == m["threshold"]


@pytest.mark.parametrize("kind", ["multiclass", "regression"])
def test_multiclass_and_regression(project, kind):
    rid = _table_run(project, kind)
    gate = {"regression": {"r2": [">=", 0.999]}, "multiclass": {"accuracy": [">=", 0.0]}}
    res = run_evaluate(run_id=rid, sensitive=["group"], gate=gate, wandb_mode="disabled", **SMALL)
    m = read_summary(runs_dir()/rid)["metrics"]["test"]
    out = stage_dir(runs_dir()/rid, "evaluate")
    assert set(m["fairness"]["group"]) >= {"groups", "smallest_group"} and m["fairness"]["group"]["groups"] == 2
    assert set(m["gate"]) == RELATIVE | set(gate[kind])
    assert ModelBundle.load(out.path/"model").threshold is None
    if kind == "multiclass":
        assert m["threshold"] is None and m["threshold_strategy"] == "argmax"
        for k in ("roc_auc", "log_loss", "accuracy", "f1"):
            lo, hi = m["ci"][k]
            assert lo <= m[k] <= hi, k
        assert "confusion_matrix.png" in out.manifest and m["baseline"]["linear"]["mcnemar_p"] <= 1
        assert m["gate"]["accuracy"] is True and m["baseline"]["linear"]["objective"] == "log_loss"
        assert res.data["contribs"].ndim == 3
    else:
        for k in ("rmse", "mae", "r2"):
            lo, hi = m["ci"][k]
            assert lo <= m[k] <= hi, k
        assert "residuals.png" in out.manifest and "roc.png" not in out.manifest
        assert m["gate_passed"] is False and m["gate"]["r2"] is False            # a failing gate does not fail the stage
        g = out.read_json("gate.json")
        assert g["checks"]["r2"]["value"] == m["r2"] and f"`r2` is {m['r2']:.4g}, but the gate asks for r2 >= 0.999." in g["reasons"]
        assert m["baseline"]["constant"]["objective"] == "rmse" and "mae_difference" in m["fairness"]
    assert m["shap_additivity_error"] < 1e-3


def test_bad_parameters_write_nothing(project):
    p = project/"b.csv"
    make_table("binary", n=300).to_csv(p, index=False)
    run_preprocess(run_id="b", data=str(p), target="target", test_data="", wandb_mode="disabled")
    run = runs_dir()/"b"
    with pytest.raises(ParamError, match=r"sensitive columns 'sex', 'race' not in the data; columns: x0, x1, .*group"):
        run_evaluate(run_id="b", sensitive=["sex", "race"], wandb_mode="disabled")
    with pytest.raises(ParamError, match="gate metric 'auc' is not a known metric"):
        run_evaluate(run_id="b", gate={"auc": [">=", 0.9]}, wandb_mode="disabled")
    with pytest.raises(ParamError, match="gate metric 'rmse' is not a binary metric"):
        run_evaluate(run_id="b", gate={"rmse": ["<=", 1.0]}, wandb_mode="disabled")
    with pytest.raises(ParamError, match="threshold_strategy 'best'"):
        run_evaluate(run_id="b", threshold_strategy="best", wandb_mode="disabled")
    with pytest.raises(ParamError, match="compare_to 'nope'"):
        run_evaluate(run_id="b", compare_to="nope", wandb_mode="disabled")
    assert not (run/"train").exists() and not (run/"evaluate").exists()   # checked before any later stage ran
    assert "test" not in read_summary(run)["metrics"]


def test_leaked_column_fails_the_gate(project):
    """A column that copies the outcome: train flags it, the gate fails naming it and both ways on; accepted, it passes that check."""
    from mlops_nb.features import run_features
    df = make_table("binary", n=500)
    df["paid"] = np.where(df["target"] == 1, "yes", "no")                  # the outcome itself, as text
    df.to_csv(project/"leak.csv", index=False)
    run_preprocess(run_id="l", data=str(project/"leak.csv"), target="target", test_data="", wandb_mode="disabled")
    run_features(run_id="l", engineered={}, wandb_mode="disabled")
    _model("l")
    g = run_evaluate(run_id="l", n_bootstrap=0, n_explain=0, explain_rows=0, wandb_mode="disabled").data["gate"]
    assert not g["passed"] and not g["checks"]["leakage"]["passed"] and "paid" in g["checks"]["leakage"]["suspects"]
    why = next(r for r in g["reasons"] if "leakage" in r)
    assert "`paid`" in why and "`drop_columns`" in why and "`accept_leakage`" in why
    run_train(run_id="l", cv_folds=3, max_rounds=80, early_stopping_rounds=10, nthread=1, accept_leakage=["paid"],
              wandb_mode="disabled")
    res = run_evaluate(run_id="l", n_bootstrap=0, n_explain=0, explain_rows=0, wandb_mode="disabled")
    assert res.data["gate"]["checks"]["leakage"]["passed"] and "| paid |" in res.data["model_card"]


def test_no_better_than_a_baseline_fails_the_gate(project):
    """A target that is noise: the model cannot beat the baselines on log loss, so the relative gate fails and says why."""
    from mlops_nb.features import run_features
    df = make_table("binary", n=500)
    df["target"] = np.random.default_rng(3).integers(0, 2, len(df))
    df.to_csv(project/"noise.csv", index=False)
    run_preprocess(run_id="z", data=str(project/"noise.csv"), target="target", test_data="", wandb_mode="disabled")
    run_features(run_id="z", engineered={}, wandb_mode="disabled")
    _model("z")
    res = run_evaluate(run_id="z", n_bootstrap=200, n_explain=0, explain_rows=0, wandb_mode="disabled")
    g, m = res.data["gate"], res.metrics
    assert not g["passed"] and not g["checks"]["beats_baselines"]["passed"]
    assert any(r.startswith(f"The model is not better than the best baseline `{m['best_baseline']}` on test log_loss") for r in g["reasons"])
    oof = stage_dir(runs_dir()/"z", "tune").read_parquet("oof.parquet")        # the rows the threshold was chosen on
    y = oof["y"].to_numpy()
    assert ((oof["pred"].to_numpy() >= m["threshold"]) == y).mean() >= max(y.mean(), 1 - y.mean())   # the majority guard
    assert "**FAILED**" in res.data["model_card"]
