"""Time to quality of the tune stage, and training throughput, on the full bundled Adult data.

1. Search: the tune stage with its default configuration (except `n_trials`, unbounded here so that the budget
   alone stops both searches; seeded multivariate TPE, warm start, pruning inside XGBoost,
   parallel trials) against scikit-learn's `RandomizedSearchCV` over the same search space, with the same wall-clock
   budget (the tune stage's default `timeout`), the same validation split (a `PredefinedSplit`), the same learning
   rate, round limit and early stopping (`xgboost.XGBClassifier` on the same transformed features, categorical codes
   declared through `feature_types`), and the same parallelism (trials at a time x XGBoost threads). At a quarter,
   half, three quarters and all of the budget, each side's best configuration so far is trained the way the search
   trained it (training part, early stopping on the validation part) and scored on the test set. The tune stage's
   own final model (the best configuration refit on all training rows, at a lower learning rate when that helps)
   is reported too. RandomizedSearchCV runs in batches of `2 x n_jobs` candidates and no new batch starts after the
   budget (as no trial starts after the tune stage's timeout).
2. Throughput: training rows per second of one 300-round fit with the default parameters: `train.fit_xgb` (frame in,
   DMatrix built inside) against the raw `xgboost.train` on a prebuilt DMatrix (the baseline) and the scikit-learn
   API `XGBClassifier.fit`; and prediction rows per second of `model.predict_booster` (float32 NumPy, `inplace_predict`)
   against `Booster.predict` on a DMatrix built from the same frame. Medians of `repeat` runs.

`MLOPS_NB_BENCH_BUDGET` (seconds) shortens the search budget for a quick run. The search comparison runs once per call;
the seed-to-seed spread of the tune stage is measured by `benchmarks.quality_seeds`.
"""
from __future__ import annotations

import inspect
import os
import statistics
import time

DESCRIPTION = "Optuna (tune defaults) vs RandomizedSearchCV at the same budget; training/prediction throughput"
from benchmarks import adult_project


def _sklearn_space(space: dict):
    """The tune stage's parsed search space as scipy distributions for RandomizedSearchCV, plus its fixed values."""
    import numpy as np
    from scipy.stats import loguniform, randint, uniform

    class LogInt:
        def __init__(self, lo, hi): self.lo, self.hi, self.d = lo, hi, loguniform(lo, hi + 1)
        def rvs(self, random_state=None):
            return int(min(self.hi, max(self.lo, np.floor(self.d.rvs(random_state=random_state)))))

    dists, fixed = {}, {}
    for name, e in space.items():
        if e["kind"] == "fixed": fixed[name] = e["value"]
        elif e["kind"] == "int": dists[name] = LogInt(e["low"], e["high"]) if e["log"] else randint(e["low"], e["high"] + 1)
        elif e["kind"] == "float":
            dists[name] = loguniform(e["low"], e["high"]) if e["log"] else uniform(e["low"], e["high"] - e["low"])
        else: dists[name] = list(e["choices"])
    return dists, fixed


def _checkpoints(history: list, budget: float, evaluate) -> list:
    """Rows at 1/4, 1/2, 3/4 and all of the budget: best validation value so far and its configuration's test scores."""
    rows = []
    for frac in (0.25, 0.5, 0.75, 1.0):
        t = frac * budget
        done = [h for h in history if h["t"] <= t]
        if frac == 1.0: done = history                         # the last trials/batch may finish after the budget
        if not done:
            rows.append({"at_s": round(t, 1), "trials": 0})
            continue
        scored = [h for h in done if h["value"] is not None]
        if not scored:
            rows.append({"at_s": round(t, 1), "trials": len(done)})
            continue
        best = min(scored, key=lambda h: h["value"])
        s = evaluate(best["params"])
        rows.append({"at_s": round(t, 1), "trials": len(done), "best_valid_log_loss": round(best["value"], 5),
                     "test_log_loss": round(s["log_loss"], 5), "test_roc_auc": round(s["roc_auc"], 5),
                     "test_accuracy": round(s["accuracy"], 5)})
    return rows


def run(repeat: int = 1) -> dict:
    from mlops_nb.train import default_nthread, fit_xgb, run_train, xgb_params  # noqa: F401 (sets OMP_WAIT_POLICY first)
    from mlops_nb.cv import load_splits
    from mlops_nb.metrics import compute_metrics as score
    from mlops_nb.model import load_run_bundle, predict_booster as predict
    import numpy as np
    import xgboost as xgb
    from mlops_nb.features import dmatrix, load_xy, run_features
    from mlops_nb.tune import parse_space, run_tune

    sig = inspect.signature(run_tune).parameters
    budget = float(os.environ.get("MLOPS_NB_BENCH_BUDGET") or sig["timeout"].default)
    max_rounds, esr, seed = sig["max_rounds"].default, sig["early_stopping_rounds"].default, sig["seed"].default
    rows = []
    with adult_project():
        run_dir = run_features(run_id="bench", wandb_mode="disabled").run_dir
        run_train(run_id="bench", wandb_mode="disabled")
        X, y, spec = load_xy(run_dir, "train")
        Xte, yte, _ = load_xy(run_dir, "test")
        splits = load_splits(run_dir)
        tr, va = splits.fit, splits.valid
        space = parse_space()
        cores = default_nthread()
        n_jobs = min(cores, 4)
        threads = max(1, cores // n_jobs)

        def evaluate(params: dict) -> dict:
            """Train a configuration as the search did (training part, early stopping on validation); test scores."""
            p = xgb_params(spec, **params, seed=seed)
            b, _ = fit_xgb(X.iloc[tr], y[tr], X.iloc[va], y[va], spec, p, max_rounds, esr, eval_train=False)
            return score(spec.task, yte, predict(b, Xte, spec))

        # -- 1a. the tune stage, default parameters except n_trials (unbounded: the budget alone stops both searches)
        t0 = time.time()
        res = run_tune(run_id="bench", timeout=budget, n_trials=100_000, wandb_mode="disabled")
        stage_s = time.time() - t0
        study = res.data["study"]
        fixed = {k: e["value"] for k, e in space.items() if e["kind"] == "fixed"}
        start = min(t.datetime_start for t in study.trials if t.datetime_start)
        hist = [{"t": (t.datetime_complete - start).total_seconds(), "params": {**fixed, **t.params},
                 "value": t.value if t.state.name == "COMPLETE" else None}         # pruned trials count, but never win
                for t in study.trials if t.state.name in ("COMPLETE", "PRUNED")]
        opt_rows = _checkpoints(hist, budget, evaluate)
        rows += [{"case": "optuna (tune stage defaults)", **r} for r in opt_rows]
        fin = score(spec.task, yte, load_run_bundle(run_dir, "tune").predict_features(Xte))
        rows.append({"case": "optuna: tune stage final model", "at_s": round(stage_s, 1),
                     "trials": res.metrics["n_trials"], "best_valid_log_loss": round(res.metrics["best_value"], 5),
                     "test_log_loss": round(fin["log_loss"], 5), "test_roc_auc": round(fin["roc_auc"], 5),
                     "test_accuracy": round(fin["accuracy"], 5)})

        # -- 1b. RandomizedSearchCV over the same space, same split, same budget
        from sklearn.model_selection import PredefinedSplit, RandomizedSearchCV
        dists, fixed_sk = _sklearn_space(space)
        est = xgb.XGBClassifier(tree_method="hist", n_estimators=max_rounds, early_stopping_rounds=esr,
                                eval_metric="logloss", enable_categorical=True, feature_types=spec.feature_types,
                                n_jobs=threads, random_state=seed, **fixed_sk)
        idx = np.r_[tr, va]
        Xall, yall = X.to_numpy(np.float32)[idx], y[idx]
        cv = PredefinedSplit(np.r_[np.full(len(tr), -1), np.zeros(len(va), int)])
        evalset = [(X.to_numpy(np.float32)[va], y[va])]
        rs_hist, batch, t0 = [], 0, time.time()
        while time.time() - t0 < budget:
            rs = RandomizedSearchCV(est, dists, n_iter=2 * n_jobs, scoring="neg_log_loss", cv=cv, refit=False,
                                    n_jobs=n_jobs, random_state=seed + batch)
            rs.fit(Xall, yall, eval_set=evalset, verbose=False)
            t = time.time() - t0
            for p, v in zip(rs.cv_results_["params"], rs.cv_results_["mean_test_score"]):
                rs_hist.append({"t": t, "value": -float(v), "params": {**fixed_sk, **p}})
            batch += 1
        rs_rows = _checkpoints(rs_hist, budget, evaluate)
        rows += [{"case": "RandomizedSearchCV (same space)", **r} for r in rs_rows]

        # -- 2. throughput
        p = xgb_params(spec, seed=seed)
        Xtr, ytr = X.iloc[tr], y[tr]
        dtr = dmatrix(Xtr, spec, ytr)
        rounds = 300
        cases = {
            "xgboost.train, prebuilt DMatrix (baseline)": lambda: xgb.train(p, dtr, rounds),
            "train.fit_xgb (frame in)": lambda: fit_xgb(Xtr, ytr, None, None, spec, p, rounds, None, eval_train=False),
            "XGBClassifier.fit (sklearn API)": lambda: xgb.XGBClassifier(
                n_estimators=rounds, enable_categorical=True, feature_types=spec.feature_types,
                **{k: v for k, v in p.items() if k not in ("objective", "eval_metric", "verbosity", "seed", "nthread")},
                n_jobs=p["nthread"], random_state=seed).fit(Xtr.to_numpy(np.float32), ytr),
        }
        times = {k: [] for k in cases}
        for _ in range(max(1, repeat)):
            for k, f in cases.items():                             # alternate the cases within each repetition
                t = time.perf_counter(); f(); times[k].append(time.perf_counter() - t)
        base = statistics.median(times["xgboost.train, prebuilt DMatrix (baseline)"])
        for k, ts in times.items():
            m = statistics.median(ts)
            rows.append({"case": f"throughput: {k}", "seconds": round(m, 3), "rows_per_sec": round(len(tr) / m, 1),
                         "row_rounds_per_sec": round(len(tr) * rounds / m), "vs_baseline": round(m / base, 3)})
        b = xgb.train(p, dtr, rounds)
        b.set_attr(best_iteration=str(rounds - 1))
        # a new DMatrix per call: XGBoost caches the predictions of a DMatrix it has seen, so reusing one measures the cache
        pcases = {"Booster.predict, new DMatrix (baseline)": lambda: b.predict(dmatrix(Xte, spec)),
                  "model.predict_booster (float32 NumPy, inplace)": lambda: predict(b, Xte, spec),
                  "model.predict_booster, one row (float32 NumPy)": lambda: predict(b, row, spec)}
        row = Xte.to_numpy(np.float32)[:1]
        ptimes = {k: [] for k in pcases}
        for _ in range(max(1, repeat)):
            for k, f in pcases.items():
                n = 200 if "one row" in k else 1
                t = time.perf_counter()
                for _ in range(n): f()
                ptimes[k].append((time.perf_counter() - t) / n)
        pbase = statistics.median(ptimes["Booster.predict, new DMatrix (baseline)"])
        for k, ts in ptimes.items():
            m = statistics.median(ts)
            nrows = 1 if "one row" in k else len(Xte)
            rows.append({"case": f"predict: {k}", "seconds": round(m, 6), "rows_per_sec": round(nrows / m, 1),
                         "vs_baseline": round(m / pbase, 3) if nrows > 1 else None})

    opt, rnd = opt_rows[-1], rs_rows[-1]
    return {"name": "time_to_quality", "rows": rows, "budget_s": budget,
            "optuna_trials": opt.get("trials"), "random_search_candidates": len(rs_hist),
            "optuna_best_valid_log_loss": opt["best_valid_log_loss"], "random_best_valid_log_loss": rnd["best_valid_log_loss"],
            "optuna_test_log_loss": opt["test_log_loss"], "random_test_log_loss": rnd["test_log_loss"],
            "final_test_log_loss": fin["log_loss"], "tune_stage_seconds": round(stage_s, 1),
            "fit_xgb_rows_per_sec": round(len(tr) / statistics.median(times["train.fit_xgb (frame in)"]), 1),
            "notes": (f"Adult, {len(tr)} training-part rows, {len(va)} validation rows, {len(yte)} test rows; budget "
                      f"{budget:g} s; {n_jobs} trials at a time x {threads} XGBoost thread(s); learning rate "
                      f"{fixed.get('learning_rate')}, at most {max_rounds} rounds, early stopping {esr}. Test scores "
                      "are of the best configuration so far trained as in the search; the final-model row is the tune "
                      "stage's saved model. Throughput: 300 rounds, default parameters, medians.")}


if __name__ == "__main__":
    import json
    print(json.dumps(run(), indent=2, default=str))
