"""The estimate module on evaluated runs and on the bundled Adult data: the bundle's extras, the label-free estimate
under covariate shift, realised performance under concept drift, and the estimate's coverage on random batches."""
import json

import numpy as np
import pandas as pd
import pytest

from sample_data import evaluated_run

from mlops_nb.estimate import (apply_calibrator, estimate_performance, fit_calibrator, realised_performance)
from mlops_nb.metrics import compute_metrics
from mlops_nb.model import load_run_bundle


@pytest.mark.parametrize("kind", ["adult", "multiclass", "regression"])
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
