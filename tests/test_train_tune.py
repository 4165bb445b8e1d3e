"""Train and tune stages: three tasks end to end, honest selection, bad input, W&B offline logging, trial failures and kill-and-resume of a study."""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from sample_data import adult_run, table_run, wandb_summary
from mlops_nb.baselines import predict_baseline
from mlops_nb.core import DataError, ParamError, read_summary, runs_dir, stage_dir
from mlops_nb.cv import carve_valid, load_splits, read_oof
from mlops_nb.features import load_xy
from mlops_nb.metrics import objective_score
from mlops_nb.model import ModelBundle, load_run_bundle
from mlops_nb.train import run_train
from mlops_nb.tune import run_tune

QUICK_TRAIN = dict(cv_folds=3, max_rounds=300, early_stopping_rounds=20, wandb_mode="disabled")
QUICK_TUNE = dict(n_trials=4, timeout=120, max_rounds=300, early_stopping_rounds=20, select_top_k=2, wandb_mode="disabled")
FAST_TUNE = dict(select_top_k=1, refit_lr_factor=1.0, wandb_mode="disabled")   # selection: the best trial and the default


def no_stage_left(run: Path, name: str):
    assert not (run/name).exists(), f"{name}/ was written"
    assert not list(run.glob(f".staging-{name}-*")), "a staging folder was left behind"


def tamper_features(run: Path, fn):
    """Rewrite features/train.parquet through `fn` (the manifest follows), as if the features came from elsewhere."""
    ad = stage_dir(run, "features")
    df = ad.read_parquet("train.parquet")
    ad.write_parquet("train.parquet", fn(df))


# -- three tasks, end to end ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("kind,metric", [("binary", "log_loss"), ("multiclass", "log_loss"), ("regression", "rmse")])
def test_train_and_tune(project, kind, metric):
    run = table_run(project, kind)
    tr = run_train(run_id=kind, **QUICK_TRAIN)
    m = read_summary(run)["metrics"]["train"]
    assert m["task"] == kind and m["objective"] == metric and m["row_rounds_per_sec"] > 0
    assert m["cv"]["mean"] < m["baselines_cv"]["constant"]                  # XGBoost beats the constant baseline in CV
    out = stage_dir(run, "train")
    out.verify()
    assert {"model/manifest.json", "splits.parquet", "baselines.json", "valid.parquet", "cv.json", "oof.parquet",
            "oof_linear.parquet", "oof_constant.parquet", "leakage.json", "learning_curve.png"} <= set(out.manifest)
    assert not [p for p in out.path.rglob("*") if p.suffix in (".pkl", ".pickle", ".joblib")]
    # splits are data: every row in one fold; the out-of-fold predictions score as cv.json says
    splits = load_splits(run)
    X, y, spec = load_xy(run, "train")
    assert len(splits.frame) == len(y) and splits.n_folds == 3
    cv = out.read_json("cv.json")
    oof = read_oof(out.read_parquet("oof.parquet"))
    for k, (_, te) in enumerate(splits.folds()):
        assert objective_score(kind, y[te], oof[te]) == pytest.approx(cv["default"]["scores"][k], rel=1e-9)

    # the saved bundle predicts like the in-memory one; the baselines load from JSON
    Xt, yt, _ = load_xy(run, "test")
    b = load_run_bundle(run, "train")
    assert b.meta["stage"] == "train" and b.task == kind and b.meta["trained_on_rows"] == len(y)
    p = b.predict_features(Xt)
    np.testing.assert_allclose(p, tr.data["bundle"].predict_features(Xt), rtol=1e-6)
    assert p.shape == ((len(Xt), 3) if kind == "multiclass" else (len(Xt),))
    for bl in out.read_json("baselines.json")["baselines"].values():
        assert predict_baseline(bl, Xt, spec).shape == p.shape

    run_tune(run_id=kind, **QUICK_TUNE)
    t = read_summary(run)["metrics"]["tune"]
    assert t["n_trials"] == 4 and t["complete"] + t["pruned"] == 4 and not t["resumed"]
    tout = stage_dir(run, "tune")
    tout.verify()
    assert {"model/manifest.json", "selection.json", "oof.parquet", "trials.csv", "trials.parquet",
            "optimization_history.png"} <= set(tout.manifest)
    sel = tout.read_json("selection.json")
    names = [c["name"] for c in sel["candidates"]]
    assert "default" in names and sum(c["selected"] for c in sel["candidates"]) == 1
    chosen = min(sel["candidates"], key=lambda c: c["cv_mean"])
    assert chosen["selected"] and sel["selected"] == chosen["name"]            # the best cross-validated candidate
    assert sel["beats_baselines"] == (chosen["cv_mean"] <= min(sel["baselines"].values()))
    tb = load_run_bundle(run)                                                  # the tuned model wins
    assert tb.meta["stage"] == "tune" and tb.meta["selected"] == sel["selected"]
    assert np.isfinite(objective_score(kind, yt, tb.predict_features(Xt)))
    # the same command again: the study is complete, nothing new runs
    run_tune(run_id=kind, **QUICK_TUNE)
    t2 = read_summary(run)["metrics"]["tune"]
    assert t2["resumed"] and t2["finished_before"] == 4 and t2["n_trials"] == 4


def test_selection_beats_the_linear_baseline_on_a_small_nearly_linear_table(project):
    """On a small table whose log-odds are linear plus one strong threshold effect, trees alone lose to the logistic baseline
    in cross-validation, and the selection still finds a candidate at least as good (trees boosted from it)."""
    rng = np.random.default_rng(3)
    n = 800
    X = rng.normal(size=(n, 6))
    score = X @ np.array([1.2, -0.8, 0.6, 0.0, 0.4, -0.3]) + 2.0 * (X[:, 3] > 0.5)
    df = pd.DataFrame(X, columns=[f"x{i}" for i in range(6)])
    df["target"] = (rng.uniform(size=n) < 1 / (1 + np.exp(-score))).astype(int)
    path = project/"data"/"linear.csv"
    df.to_csv(path, index=False)
    from mlops_nb.features import run_features
    from mlops_nb.preprocess import run_preprocess
    run_preprocess(run_id="lin", data=str(path), target="target", test_data="", wandb_mode="disabled")
    run_features(run_id="lin", engineered={}, wandb_mode="disabled")
    run_train(run_id="lin", wandb_mode="disabled")
    res = run_tune(run_id="lin", n_trials=30, timeout=60, wandb_mode="disabled")
    sel = res.data["selection"]
    trees_alone = [c["cv_mean"] for c in sel["candidates"] if c["origin"] != "boosted from the linear baseline"]
    assert min(trees_alone) > sel["baselines"]["linear"]                   # the premise: trees alone lose here
    assert sel["beats_baselines"], sel
    assert sel["selected"] == "linear + shallow trees" and "base_margin" in res.data["bundle"].extras


def test_train_flags_a_leaking_column_and_accepts_it_when_told(project):
    """A column that is a copy of the outcome is a leakage suspect in train/leakage.json, unless accepted by name."""
    from sample_data import make_table
    from mlops_nb.features import run_features
    from mlops_nb.preprocess import run_preprocess
    df = make_table("binary", n=600)
    df["outcome_code"] = np.where(df["target"] == 1, "paid", "defaulted")
    df.to_csv(project/"data"/"leak.csv", index=False)
    run_preprocess(run_id="lk", data="data/leak.csv", target="target", test_data="", wandb_mode="disabled")
    run_features(run_id="lk", wandb_mode="disabled")
    run_train(run_id="lk", **QUICK_TRAIN)
    doc = stage_dir(runs_dir()/"lk", "train").read_json("leakage.json")
    assert [s["column"] for s in doc["suspects"]] == ["outcome_code"] and doc["accepted"] == []
    run_train(run_id="lk", accept_leakage=["outcome_code"], **QUICK_TRAIN)
    doc = stage_dir(runs_dir()/"lk", "train").read_json("leakage.json")
    assert doc["suspects"] == [] and [s["column"] for s in doc["accepted"]] == ["outcome_code"]
    with pytest.raises(ParamError, match="accept_leakage names 'outcome'"):
        run_train(run_id="lk", accept_leakage=["outcome"], **QUICK_TRAIN)


def test_tune_wandb_offline_logs_trials(project):
    """Each trial is logged to the stage's offline W&B run; the summary holds the tune metrics."""
    run = adult_run("wb")
    run_tune(run_id="wb", n_trials=3, timeout=120, max_rounds=200, early_stopping_rounds=20, **{**FAST_TUNE, "wandb_mode": "offline"})
    ctx = stage_dir(run, "tune").read_json("context.json")
    assert ctx["wandb_mode"] == "offline" and ctx["wandb_dir"]
    flat = json.dumps(wandb_summary(ctx["wandb_dir"]))
    assert "best_value" in flat and "n_trials" in flat                   # per-trial history and the stage's metrics


def test_tune_timeout_stops_starting_trials(project):
    run = adult_run("to")
    res = run_tune(run_id="to", n_trials=10_000, timeout=2, max_rounds=200, early_stopping_rounds=20, **FAST_TUNE)
    assert 1 <= res.metrics["n_trials"] < 10_000 and res.metrics["complete"] >= 1
    assert stage_dir(run, "tune").exists()


def test_failing_trials_stop_the_search_with_the_first_error(project, monkeypatch):
    """Trials that raise are not retried until the timeout: after max_failures in a row the stage fails with the first error."""
    import mlops_nb.train as train                                       # the trial objective (workers) imports fit_xgb from it
    run = adult_run("tf")
    run_train(run_id="tf", **QUICK_TRAIN)
    calls = []
    def broken(*a, **k):
        calls.append(1)
        raise ValueError("column 'age' exploded")
    monkeypatch.setattr(train, "fit_xgb", broken)
    t0 = time.time()
    with pytest.raises(DataError, match=r"3 failed trials in a row; the first failure: ValueError: column 'age' exploded"):
        run_tune(run_id="tf", n_trials=50, timeout=300, n_jobs=1, **FAST_TUNE)
    assert len(calls) == 3 and time.time() - t0 < 60
    no_stage_left(run, "tune")


def test_explicit_study_name_with_other_settings(project):
    adult_run("sn")
    run_tune(run_id="sn", study_name="mine", n_trials=2, timeout=60, max_rounds=100, early_stopping_rounds=10, **FAST_TUNE)
    with pytest.raises(ParamError, match="study_name 'mine'.*other settings"):
        run_tune(run_id="sn", study_name="mine", n_trials=2, timeout=60, max_rounds=100, early_stopping_rounds=10,
                 search_space={"max_depth": ["int", 2, 3]}, **FAST_TUNE)


# -- bad input: a clear error before anything is written ----------------------------------------------------------

@pytest.mark.parametrize("kw,msg", [
    (dict(learning_rate=0), "learning_rate must be in"),
    (dict(valid_size=1.5), "valid_size must be between 0 and 1"),
    (dict(cv_folds=1), "cv_folds must be an integer >= 2"),
    (dict(accept_leakage="age"), "accept_leakage must be a list"),
    (dict(max_depth=0), "max_depth must be an integer >= 1"),
    (dict(subsample=1.5), "subsample must be in"),
    (dict(max_rounds=0), "max_rounds must be an integer >= 1"),
])
def test_train_rejects_bad_parameters(project, kw, msg):
    with pytest.raises(ParamError, match=msg):
        run_train(run_id="bp", wandb_mode="disabled", **kw)
    assert not runs_dir().exists()                      # rejected before the run (or any earlier stage) is touched


@pytest.mark.parametrize("kw,msg", [
    (dict(n_trials=0), "n_trials must be an integer >= 1"),
    (dict(timeout=0), "timeout must be a number > 0"),
    (dict(timeout=-5), "timeout must be a number > 0"),
    (dict(search_space={"depth": ["int", 2, 5]}), "unknown hyperparameter 'depth'; known: learning_rate, max_depth"),
    (dict(search_space={"max_depth": ["int", 5, 2]}), "low must be below high"),
    (dict(refit_lr_factor=2), "refit_lr_factor must be in"),
    (dict(search_space="[1, 2]"), "search_space must be a mapping"),
    (dict(search_space="{max_depth: [int, 3, 8], bogus: 1}"), "unknown hyperparameter 'bogus'"),
])
def test_tune_rejects_bad_parameters(project, kw, msg):
    with pytest.raises(ParamError, match=msg):
        run_tune(run_id="bt", wandb_mode="disabled", **kw)
    assert not runs_dir().exists()                      # no run, stage or study folder


def _rare_class_1(d):
    """Keep only three rows of class index 1 (the others become class 0)."""
    t = d["target"].to_numpy()
    return d.assign(target=np.where((t == 1) & (np.cumsum(t == 1) > 3), 0, t))


@pytest.mark.parametrize("kind,fn,kw,msg,tune_too", [
    ("regression", lambda d: d.assign(target=3.0), {}, "target 'target' is constant", True),
    ("regression", lambda d: d.assign(target=d["target"].where(d.index % 7 > 0)), {}, r"missing in \d+ of \d+ rows", True),
    ("binary", lambda d: d.assign(target=d["target"].astype(float).where(d.index != 3)), {}, "missing in 1 of", True),
    ("binary", lambda d: d.assign(target=0), {}, "single class of target 'target'", True),
    ("binary", lambda d: d.iloc[:6].assign(target=[0, 1] * 3), dict(cv_folds=10),
     "cv_folds=10 but the training split has only 6 rows", False),
    ("multiclass", _rare_class_1, dict(cv_folds=5), "cv_folds=5 needs at least 5 rows of every class, but class index 1 has 3", False),
])
def test_train_and_tune_reject_bad_data(project, kind, fn, kw, msg, tune_too):
    run = table_run(project, kind, run_id=f"bad-{kind}", n=200)
    tamper_features(run, fn)
    with pytest.raises(DataError, match=msg):
        run_train(run_id=run.name, wandb_mode="disabled", **kw)
    no_stage_left(run, "train")
    if tune_too:
        with pytest.raises(DataError, match=msg):
            run_tune(run_id=run.name, wandb_mode="disabled", n_trials=2)
        no_stage_left(run, "tune")
        assert not (run/"tune_study").exists()


# -- kill -9 in the middle of a study, then the same command again ------------------------------------------------

def _study_states(journal: Path) -> dict:
    import optuna
    from optuna.storages.journal import JournalFileBackend, JournalStorage
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    if not journal.is_file(): return {}
    storage = JournalStorage(JournalFileBackend(str(journal)))
    names = optuna.get_all_study_names(storage)
    if not names: return {}
    study = optuna.load_study(study_name=names[0], storage=storage)
    return pd.Series([t.state.name for t in study.trials], dtype=object).value_counts().to_dict()


def test_tune_resumes_after_kill(project):
    run = adult_run("kr")
    run_train(run_id="kr", **QUICK_TRAIN)
    n = 16
    cmd = [sys.executable, "-c",
           "from mlops_nb.tune import run_tune; "
           f"run_tune(run_id='kr', n_trials={n}, timeout=600, search_space={{'learning_rate': 0.03}}, "
           "max_rounds=2000, early_stopping_rounds=30, select_top_k=1, refit_lr_factor=1.0, wandb_mode='disabled')"]
    journal = run/"tune_study"/"study.journal"
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    finished = 0
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None:
        states = _study_states(journal)
        finished = states.get("COMPLETE", 0) + states.get("PRUNED", 0)
        if finished >= 2: break
        time.sleep(0.1)
    assert proc.poll() is None, f"the study ended before it could be killed:\n{proc.stdout.read().decode()}"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    before = _study_states(journal)
    assert 2 <= before.get("COMPLETE", 0) + before.get("PRUNED", 0) < n
    assert not stage_dir(run, "tune").exists()                          # the killed stage committed nothing

    again = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stdout + again.stderr
    after = _study_states(journal)
    assert after.get("COMPLETE", 0) + after.get("PRUNED", 0) == n
    assert after.get("RUNNING", 0) == 0 and after.get("WAITING", 0) == 0
    assert after.get("FAIL", 0) == before.get("RUNNING", 0)              # the dead process's trials, and only those
    m = read_summary(run)["metrics"]["tune"]
    assert m["resumed"] and m["n_trials"] == n and m["stale_trials_failed"] == before.get("RUNNING", 0)
    assert not list(run.glob(".staging-tune-*"))
    load_run_bundle(run, "tune")
