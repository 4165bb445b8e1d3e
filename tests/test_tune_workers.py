"""Tuning workers: several processes on one study (journal file, and a PostgreSQL server started here on loopback), none left RUNNING, and a worker killed with SIGKILL while it holds a trial."""
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from sample_data import REPO, adult_run
from mlops_nb.core import read_summary, stage_dir
from mlops_nb.train import run_train
from mlops_nb.tune import run_tune

QUICK_TRAIN = dict(cv_folds=3, max_rounds=300, early_stopping_rounds=20, wandb_mode="disabled")
TUNE = dict(max_rounds=300, early_stopping_rounds=20, select_top_k=1, refit_lr_factor=1.0, wandb_mode="disabled")


def _trials(study_name, storage):
    import optuna
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    return optuna.load_study(study_name=study_name, storage=storage).get_trials(deepcopy=False)


def test_three_workers_share_the_journal(project):
    """tune_workers=3 on the default journal: n_trials finished, a surplus of at most 2, none RUNNING, both workers exit 0."""
    run = adult_run("w3")
    run_train(run_id="w3", **QUICK_TRAIN)
    n = 16                                                                # slow trials (a low rate), so that workers get some
    run_tune(run_id="w3", n_trials=n, timeout=120, tune_workers=3, n_jobs=1, **{**TUNE, "max_rounds": 1000},
             search_space={"learning_rate": 0.02})
    m = read_summary(run)["metrics"]["tune"]
    assert m["workers"] == 3 and m["workers_failed"] == 0
    assert n <= m["n_trials"] <= n + 2 and m["trials_surplus"] == m["n_trials"] - n and m["running"] == 0
    trials = stage_dir(run, "tune").read_parquet("trials.parquet")
    assert not (trials["state"] == "RUNNING").any()
    assert trials["worker"].nunique() >= 2      # a worker ran trials beside the stage (all three do on an idle machine)
    assert "exit code 0" in stage_dir(run, "tune").read_text("workers.log")
    print(f"journal: {m['n_trials']} finished of {n}, surplus {m['trials_surplus']}, per worker {trials['worker'].value_counts().tolist()}")


# -- PostgreSQL on loopback, started by the test -----------------------------------------------------------------

def _pg_bin() -> Path | None:
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"))
    return found[-1].parent if found else None


@pytest.fixture(scope="module")
def postgres():
    """A throw-away PostgreSQL cluster on 127.0.0.1 (initdb refuses root: it runs as the postgres user)."""
    if _pg_bin() is None:
        r = subprocess.run(["bash", str(REPO/"tools"/"install-debian.sh"), "postgresql"], capture_output=True, text=True)
        if _pg_bin() is None: pytest.skip(f"PostgreSQL is not installed and could not be installed: {r.stderr.strip()[-300:]}")
    bin_ = _pg_bin()
    as_pg = ["runuser", "-u", "postgres", "--"] if os.getuid() == 0 else []
    if as_pg and shutil.which("runuser") is None: pytest.skip("running as root without runuser: cannot start PostgreSQL")
    tmp = Path(tempfile.mkdtemp(prefix="mlops-nb-pg-"))
    if as_pg: shutil.chown(tmp, "postgres")
    data, port = tmp/"data", 55401
    r = subprocess.run([*as_pg, str(bin_/"initdb"), "-D", str(data), "-U", "postgres", "-A", "trust"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    r = subprocess.run([*as_pg, str(bin_/"pg_ctl"), "-D", str(data), "-l", str(tmp/"log"), "-w", "-o",
                        f"-h 127.0.0.1 -p {port} -k {tmp}", "start"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr + (tmp/"log").read_text()
    yield f"postgresql+psycopg://postgres@127.0.0.1:{port}/postgres"
    subprocess.run([*as_pg, str(bin_/"pg_ctl"), "-D", str(data), "-m", "immediate", "stop"], capture_output=True)
    shutil.rmtree(tmp, ignore_errors=True)


def _worker(study, url, cwd, *extra):
    cmd = [sys.executable, "-m", "mlops_nb", "tune-worker", "--study", study, "--storage", url, "--nthread", "1", *extra]
    return subprocess.Popen(cmd, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)


def test_workers_on_postgres_survive_a_killed_worker(project, postgres, tmp_path):
    """Two workers (started elsewhere, reading the run from the study's record); one killed while RUNNING a trial."""
    run = adult_run("pg")
    run_train(run_id="pg", **QUICK_TRAIN)
    run_tune(run_id="pg", n_trials=2, timeout=60, storage=postgres, study_name="pg", heartbeat_interval=1, n_jobs=1, **TUNE)
    assert read_summary(run)["metrics"]["tune"]["storage"] == postgres
    elsewhere = tmp_path/"elsewhere"; elsewhere.mkdir()                   # not the project: the worker reads the recorded path
    victim = _worker("pg", postgres, elsewhere, "--n-trials", "200", "--heartbeat-interval", "1")
    held, deadline = None, time.time() + 90
    while held is None and time.time() < deadline and victim.poll() is None:
        held = next((t for t in _trials("pg", postgres)
                     if t.state.name == "RUNNING" and t.user_attrs.get("worker", "").endswith(f":{victim.pid}")), None)
        if held is None: time.sleep(0.05)
    assert held is not None, f"the worker never held a RUNNING trial:\n{victim.stdout.read().decode() if victim.poll() is not None else ''}"
    os.kill(victim.pid, signal.SIGKILL); victim.wait()
    assert next(t for t in _trials("pg", postgres) if t.number == held.number).state.name in ("RUNNING", "COMPLETE", "PRUNED")
    time.sleep(4)                                                         # past the grace period of 3 missed beats
    n = len([t for t in _trials("pg", postgres) if t.state.name in ("COMPLETE", "PRUNED")]) + 6
    a, b = (_worker("pg", postgres, elsewhere, "--n-trials", str(n), "--heartbeat-interval", "1") for _ in range(2))
    for w in (a, b):
        out = w.communicate(timeout=180)[0].decode()
        assert w.returncode == 0, out
    trials = _trials("pg", postgres)
    states = [t.state.name for t in trials]
    assert states.count("RUNNING") == 0
    assert n <= states.count("COMPLETE") + states.count("PRUNED") <= n + 1   # a surplus of at most workers - 1
    killed = next(t for t in trials if t.number == held.number)
    print(f"postgres: killed trial {held.number} -> {killed.state.name}; states {dict((k, states.count(k)) for k in set(states))}; n {n}")
    if killed.state.name == "FAIL":                                       # the usual case: it was still running when killed
        assert any(t.system_attrs.get("failed_trial") == held.number for t in trials)   # ... and was retried
    assert {t.user_attrs.get("worker", "").split(":")[-1] for t in trials[held.number + 1:]} >= {str(a.pid), str(b.pid)}
