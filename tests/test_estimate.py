"""The estimate module on evaluated runs and on the bundled Adult data: the bundle's extras, the label-free estimate
under covariate shift, realised performance under concept drift, and the estimate's coverage on random batches."""
import json

import numpy as np
import pandas as pd
import pytest

from sample_data import RAW, evaluated_run

from mlops_nb.estimate import (apply_calibrator, compare_performance, estimate_performance, fit_calibrator,
                               realised_performance)
from mlops_nb.metrics import compute_metrics
from mlops_nb.model import load_run_bundle


@pytest.mark.parametrize("kind", ["adult", "regression"])   # multiclass: the notebook's tests
def test_evaluated_bundle_carries_profile_and_calibration(project, kind):
    run = evaluated_run(f"est_{kind}", kind=kind, n=600)
    b = load_run_bundle(run, "evaluate")
    prof, cal = b.extras["profile"], b.extras["calibration"]
    assert prof["prediction_source"] == "oof" and prof["performance"]["source"] == "test"
    assert prof["n_predictions"] == prof["n_rows"] > 0
    test_rows = pd.read_parquet(run/"preprocess"/"test.parquet")
    assert prof["performance"]["n"] == len(test_rows)
    assert prof["performance"]["ci"]                       # the reference performance has its intervals
    if kind == "regression":
        assert cal is None and prof["calibration_check"] is None
        assert estimate_performance("regression", [1.0]) == {}
        return
    chk = prof["calibration_check"]
    assert (cal is None) == (chk["choice"] is None) and "reason" in chk
    assert set(prof["performance"]["segments"]) <= set(b.spec.categorical)
    pred = b.predict(test_rows)
    est = estimate_performance(b.task, pred, cal, b.threshold, n_samples=100)
    real = compute_metrics(b.task, _encode(test_rows[b.spec.target], b.classes), pred, b.threshold or 0.5)
    assert abs(est["metrics"]["accuracy"] - real["accuracy"]) < 0.08, (est["metrics"], real)
    if cal is not None: assert apply_calibrator(json.loads(json.dumps(cal)), pred).shape == np.shape(pred)


def _encode(y, classes):
    idx = {str(c): i for i, c in enumerate(classes)}
    return np.array([idx[str(v)] for v in y])


@pytest.fixture(scope="module")
def adult(tmp_path_factory):
    """A quick model on the full bundled Adult data (preprocess + features stages, then one XGBoost configuration with
    3-fold out-of-fold predictions), as in the notebook; the test split cut into a reference third and a pool."""
    from mlops_nb.core import stage_dir
    from mlops_nb.features import load_xy, run_features
    from mlops_nb.metrics import choose_threshold
    from mlops_nb.model import predict_booster
    from mlops_nb.preprocess import run_preprocess
    from mlops_nb.train import fit_xgb, xgb_params
    root = tmp_path_factory.mktemp("adult_full")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MLOPS_NB_ROOT", str(root)); mp.setenv("WANDB_MODE", "disabled")
        run_preprocess(run_id="full", data=str(RAW/"adult.data"), test_data=str(RAW/"adult.test"), wandb_mode="disabled")
        run = run_features(run_id="full", wandb_mode="disabled").run_dir
        X, y, spec = load_xy(run, "train"); Xt, yt, _ = load_xy(run, "test")
        xp = xgb_params(spec, max_depth=5, learning_rate=0.15, nthread=2)
        fold, oof = np.random.default_rng(0).permutation(len(y)) % 3, np.empty(len(y))
        for k in range(3):
            b, _ = fit_xgb(X[fold != k], y[fold != k], None, None, spec, xp, 100, None, eval_train=False)
            oof[fold == k] = predict_booster(b, X[fold == k], spec)
        b, _ = fit_xgb(X, y, None, None, spec, xp, 100, None, eval_train=False)
        test = stage_dir(run, "preprocess").read_parquet("test.parquet")
    perm = np.random.default_rng(1).permutation(len(yt))
    a = dict(spec=spec, y_oof=y.astype(int), oof=oof, test=test, y=yt.astype(int), p=predict_booster(b, Xt, spec),
             threshold=choose_threshold(y, oof, "cost"), ref=perm[:len(perm) // 3], pool=perm[len(perm) // 3:])
    a["cal"] = fit_calibrator("binary", a["y_oof"], a["oof"])
    a["seg"] = lambda i: {c: test[c].to_numpy()[i] for c in spec.categorical}
    a["refp"] = realised_performance("binary", a["y"][a["ref"]], a["p"][a["ref"]], a["threshold"], a["seg"](a["ref"]),
                                     n_bootstrap=500, segment_bootstrap=100)
    return a


def test_adult_estimate_covers_realised_accuracy_on_random_batches(adult):
    a, covered, errors = adult, 0, []
    for s in range(20):
        i = np.random.default_rng(100 + s).choice(a["pool"], 5000, replace=False)
        e = estimate_performance("binary", a["p"][i], a["cal"], a["threshold"], n_samples=300, seed=s)
        real = compute_metrics("binary", a["y"][i], a["p"][i], a["threshold"])["accuracy"]
        covered += e["ci"]["accuracy"][0] <= real <= e["ci"]["accuracy"][1]
        errors.append(e["metrics"]["accuracy"] - real)
    print(f"coverage {covered}/20, mean |error| {np.mean(np.abs(errors)):.4f}, max {np.max(np.abs(errors)):.4f}")
    assert covered >= 16 and np.max(np.abs(errors)) < 0.02


def test_adult_covariate_shift_caught_by_the_label_free_estimate(adult):
    a = adult
    married = a["test"]["marital-status"].eq("Married-civ-spouse").to_numpy()[a["pool"]]
    r = np.random.default_rng(7)
    i = np.r_[r.choice(a["pool"][married], 4000, replace=False), r.choice(a["pool"][~married], 1000, replace=False)]
    e = estimate_performance("binary", a["p"][i], a["cal"], a["threshold"])
    real = compute_metrics("binary", a["y"][i], a["p"][i], a["threshold"])["accuracy"]
    ref = a["refp"]["metrics"]["accuracy"]
    print(f"reference {ref:.4f}, estimated {e['metrics']['accuracy']:.4f} {e['ci']['accuracy']}, realised {real:.4f}")
    assert real < ref - 0.03                                   # the shift does lower accuracy
    assert abs(e["metrics"]["accuracy"] - real) < 0.02         # the estimate follows it
    assert compare_performance("binary", e, a["refp"], ["accuracy"])["alert"]


def test_adult_concept_drift_raises_a_realised_alert_naming_the_segment(adult):
    a = adult
    i = np.random.default_rng(42).choice(a["pool"], 5000, replace=False)
    wife = a["test"]["relationship"].to_numpy()[i] == "Wife"
    yf = np.where(wife, 1 - a["y"][i], a["y"][i])
    r = realised_performance("binary", yf, a["p"][i], a["threshold"], a["seg"](i), a["refp"], n_bootstrap=300,
                             segment_bootstrap=100)
    assert r["comparison"]["alert"] and "relationship=Wife" in r["comparison"]["reasons"][0], r["comparison"]["reasons"]
    same = realised_performance("binary", a["y"][i], a["p"][i], a["threshold"], a["seg"](i), a["refp"], n_bootstrap=300,
                                segment_bootstrap=100)
    assert not any("relationship=Wife" in x for x in same["comparison"]["reasons"])   # without the flip: not that segment
