"""Prediction log (Parquet, off the request path) and telemetry (Prometheus, several workers; canary router)."""
import os
import signal
import subprocess
import sys
import textwrap
import time
import warnings

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from mlops_nb.features import FeatureSpec
from mlops_nb.predlog import PredictionLog, log_files, log_schema, read_predictions
from mlops_nb.telemetry import ENV, Router, Telemetry

SPEC = dict(target="y", task="binary", classes=["<=50K", ">50K"], numeric={"age": 38.0, "hours": 40.0},
            categorical={"color": ["red", "blue", "__other__"]}, engineered=[], missing_indicators=[],
            features=["age", "color", "hours", "when__year"], feature_types=["q", "c", "q", "q"],
            datetime={"when": {"format": "ISO8601", "origin": 0, "origin_utc": True, "parts": ["year"],
                               "impute": {"year": 2020}}})

WRITER = textwrap.dedent('''
    import sys, time
    import numpy as np
    from mlops_nb.features import FeatureSpec
    from mlops_nb.predlog import PredictionLog
    spec, d, n, tag, max_bytes = FeatureSpec.from_json(open(sys.argv[1]).read()), sys.argv[2], int(sys.argv[3]), sys.argv[4], int(sys.argv[5])
    pl = PredictionLog(d, spec, model="m", max_bytes=max_bytes, flush_rows=50, flush_seconds=0.01, max_queue=10**6)
    cols = {"age": np.array([30.0, np.nan]), "color": np.array(["red", None], object), "hours": np.array([8.0, 9.5]),
            "when": np.array(["2024-01-01", None], object)}
    i = 0
    while n < 0 or i < n:
        pl.append(cols, np.array([0.25, 0.75]), np.array(["<=50K", ">50K"], object), version=1, request_id=f"{tag}-{i}")
        i += 1
        if n < 0 and i % 20 == 0: time.sleep(0.001)
    pl.close()
    print(pl.rows_written, pl.files_written, pl.errors, pl.dropped)
''')


def spec(task="binary"):
    d = dict(SPEC, task=task, classes={"binary": ["<=50K", ">50K"], "multiclass": ["a", "b", "c"], "regression": []}[task])
    return FeatureSpec(**d)


def frame(n, seed=0):
    """Raw rows as a DataFrame the way pandas 3 reads them (str columns, NaN for missing)."""
    rng = np.random.default_rng(seed)
    df = pd.DataFrame({"age": rng.normal(40, 10, n), "color": rng.choice(["red", "blue", "green"], n),
                       "hours": rng.uniform(1, 80, n), "when": [f"2024-02-{1 + i % 28:02d}" for i in range(n)]})
    df.loc[::3, "age"] = np.nan
    df.loc[1::4, "color"] = None
    return df.astype({"color": "str", "when": "str"})


def run_writer(tmp_path, d, n, tag, max_bytes=64 << 20, wait=True):
    sp = tmp_path/"spec.json"
    if not sp.exists(): sp.write_text(spec().to_json())
    (tmp_path/"writer.py").write_text(WRITER)
    p = subprocess.Popen([sys.executable, str(tmp_path/"writer.py"), str(sp), str(d), str(n), tag, str(max_bytes)],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    return p.communicate(timeout=120) if wait else p


# --- the log -------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("task", ["binary", "multiclass", "regression"])
def test_rows_written_equal_rows_appended(tmp_path, task):
    s, df = spec(task), frame(50)
    k = max(len(s.classes), 1)
    pred = np.random.default_rng(1).dirichlet(np.ones(3), 50) if task == "multiclass" else np.linspace(0, 1, 50)
    labels = None if task == "regression" else np.asarray(s.classes)[(pred.argmax(1) if pred.ndim == 2 else pred >= .5).astype(int)]
    with PredictionLog(tmp_path, s, model="adult", flush_seconds=10) as pl:  # close() must flush it all
        for lo in range(0, 50, 10):
            pl.append(df.iloc[lo:lo + 10], pred[lo:lo + 10], None if labels is None else labels[lo:lo + 10], 7,
                      request_id=f"r{lo}", ts=pd.Timestamp("2026-01-01T12:00:00Z") + pd.Timedelta(seconds=lo))
    assert (pl.rows_written, pl.errors, pl.dropped) == (50, 0, 0)
    out = read_predictions(tmp_path)
    assert pq.read_schema(log_files(tmp_path)[0]).equals(log_schema(s))
    np.testing.assert_array_equal(out["age"].to_numpy(), df["age"].to_numpy())      # NaN where NaN
    np.testing.assert_array_equal(out["hours"].to_numpy(), df["hours"].to_numpy())  # float64, exact
    assert out["color"].isna().tolist() == df["color"].isna().tolist()
    assert out["color"].dropna().tolist() == df["color"].dropna().tolist()
    assert out["when"].tolist() == df["when"].tolist()
    assert set(out["version"]) == {"7"} and set(out["model"]) == {"adult"} and set(out["role"]) == {"champion"}
    assert out["request_id"].tolist() == [f"r{lo}" for lo in range(0, 50, 10) for _ in range(10)]
    assert str(out["ts"].dtype) == "datetime64[us, UTC]" and out["ts"].iloc[-1] == pd.Timestamp("2026-01-01T12:00:40Z")
    if task == "regression":
        np.testing.assert_array_equal(out["pred_value"].to_numpy(), pred)
    else:
        probs = np.column_stack([1 - pred, pred]) if task == "binary" else pred
        np.testing.assert_allclose(out[[f"pred_p_{c}" for c in s.classes]].to_numpy(), probs, rtol=0, atol=0)
        assert out["pred_label"].tolist() == labels.tolist()
    assert k >= 1


def test_rotation_by_size_and_age(tmp_path):
    with PredictionLog(tmp_path/"size", spec(), max_bytes=6000, flush_rows=25, flush_seconds=0.01) as pl:
        for i in range(60): pl.append(frame(10, seed=i), np.full(10, 0.5), None, 1, request_id=str(i))
    files = log_files(tmp_path/"size")
    assert len(files) >= 3
    assert [pq.read_table(f).num_rows for f in files] and sum(pq.read_table(f).num_rows for f in files) == 600
    assert not list((tmp_path/"size").glob(".*"))
    assert sorted(read_predictions(tmp_path/"size")["request_id"].astype(int).unique()) == list(range(60))
    pl = PredictionLog(tmp_path/"age", spec(), flush_seconds=0.01, rotate_seconds=0.2)
    pl.append(frame(3), np.full(3, 0.5), None, 1)
    deadline = time.monotonic() + 20
    while not log_files(tmp_path/"age") and time.monotonic() < deadline: time.sleep(0.02)
    assert len(read_predictions(tmp_path/"age")) == 3                    # visible before close, by age
    pl.close()


def test_writer_error_is_counted_and_the_log_goes_on(tmp_path, monkeypatch, caplog):
    import mlops_nb.predlog as m
    real, calls, seen = m.pq.ParquetWriter, [], []
    def flaky(*a, **k):
        calls.append(1)
        if len(calls) == 1: raise OSError("disk full (simulated)")
        return real(*a, **k)
    monkeypatch.setattr(m.pq, "ParquetWriter", flaky)
    pl = PredictionLog(tmp_path, spec(), flush_seconds=0.01, on_error=seen.append)
    pl.append(frame(4), np.full(4, 0.5), None, 1)
    assert pl.flush()
    pl.append(frame(5), np.full(5, 0.5), None, 1)
    pl.append("not columns", np.full(2, 0.5))                            # malformed item: counted, skipped
    pl.close()
    assert (pl.errors, len(seen), pl.rows_written) == (2, 2, 5)
    assert len(read_predictions(tmp_path)) == 5
    assert "disk full" in caplog.text


def test_full_queue_drops_and_never_blocks(tmp_path):
    drops = []
    pl = PredictionLog(tmp_path, spec(), max_queue=3, flush_seconds=30, on_drop=drops.append)
    pl._stop.set(); pl._thread.join()                                      # a stalled writer: nothing drains the queue
    c = {"age": np.zeros(1)}
    t0 = time.perf_counter()
    ok = [pl.append(c, np.zeros(1)) for _ in range(1000)]
    assert ok.count(True) == 3 and pl.dropped == 997 == len(drops)
    assert time.perf_counter() - t0 < 5                                    # never waits (a loose sanity bound)


def test_kill_9_leaves_only_complete_files(tmp_path):
    d = tmp_path/"log"
    p = run_writer(tmp_path, d, -1, "k", max_bytes=20_000, wait=False)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not (len(log_files(d)) >= 3 and list(d.glob(".*.part"))): time.sleep(0.01)
    os.kill(p.pid, signal.SIGKILL)
    p.wait(30)
    files = log_files(d)
    assert len(files) >= 3, p.stderr.read()
    assert list(d.glob(".*.part"))                                         # the file being written stays hidden
    rows = sum(pq.read_table(f).num_rows for f in files)                   # every visible file is complete
    with warnings.catch_warnings():
        warnings.simplefilter("error")                                     # no skipped file
        out = read_predictions(d)
    assert len(out) == rows > 0 and rows % 2 == 0
    ids = out["request_id"].str.split("-").str[1].astype(int)
    assert sorted(set(ids)) == list(range(ids.max() + 1))                  # a prefix of what was appended, no holes


def test_exit_without_close_flushes(tmp_path):
    code = ("import sys, numpy as np; from mlops_nb.features import FeatureSpec; from mlops_nb.predlog import PredictionLog; "
            "pl = PredictionLog(sys.argv[2], FeatureSpec.from_json(open(sys.argv[1]).read()), flush_seconds=60); "
            "[pl.append({'age': np.array([float(i)])}, np.array([0.5]), None, 1) for i in range(25)]")
    (tmp_path/"spec.json").write_text(spec().to_json())
    r = subprocess.run([sys.executable, "-c", code, str(tmp_path/"spec.json"), str(tmp_path/"log")], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    out = read_predictions(tmp_path/"log")                                 # written at interpreter exit (atexit)
    assert out["age"].tolist() == [float(i) for i in range(25)] and out["color"].isna().all()


def test_two_processes_one_directory(tmp_path):
    d = tmp_path/"log"
    procs = [run_writer(tmp_path, d, 400, tag, max_bytes=8_000, wait=False) for tag in ("a", "b")]
    for p in procs:
        out, err = p.communicate(timeout=120)
        assert p.returncode == 0, err
        assert out.split()[0] == "800"
    pids = {f.name.split("-")[2] for f in log_files(d)}
    assert len(pids) == 2 and len(log_files(d)) >= 4
    df = read_predictions(d)
    assert len(df) == 1600
    assert sorted(df["request_id"].unique()) == sorted(f"{t}-{i}" for t in "ab" for i in range(400))


def test_read_predictions_window_and_bad_files(tmp_path):
    t0 = pd.Timestamp("2026-03-01T00:00:00Z")
    with PredictionLog(tmp_path, spec(), flush_seconds=0.01) as pl:
        for h in range(10):
            pl.append(frame(3, seed=h), np.full(3, h / 10), None, 1, ts=t0 + pd.Timedelta(hours=h))
            if h % 3 == 2: pl.flush()
    assert len(log_files(tmp_path)) >= 3
    w = read_predictions(tmp_path, since=t0 + pd.Timedelta(hours=2), until=(t0 + pd.Timedelta(hours=5)).isoformat())
    assert sorted(w["ts"].dt.hour.unique()) == [2, 3, 4] and len(w) == 9
    assert w["ts"].is_monotonic_increasing
    (tmp_path/"predictions-garbage.parquet").write_bytes(b"not parquet at all")
    with pytest.warns(UserWarning, match="predictions-garbage.parquet skipped"):
        assert len(read_predictions(tmp_path)) == 30


# --- telemetry -----------------------------------------------------------------------------------------------------

TEL = textwrap.dedent('''
    import sys
    from mlops_nb.telemetry import setup_multiprocess, Telemetry
    import numpy as np
    setup_multiprocess(sys.argv[1], clean=False)
    t = Telemetry()
    n, version = int(sys.argv[2]), sys.argv[3]
    for i in range(n):
        t.request("/predict", 200, 0.002)
        t.predicted(version, "champion", np.array([0.9]), np.array([">50K"]))
    t.set_model("adult", version)
    t.predicted(version, "champion", np.linspace(0, 1, 10))             # a batch: binned with NumPy, shared files
    print("ready", flush=True)
    if sys.argv[4] == "stay": sys.stdin.read()
''')


def parse(body: bytes) -> dict:
    from prometheus_client.parser import text_string_to_metric_families
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for fam in text_string_to_metric_families(body.decode()) for s in fam.samples}


def test_two_processes_aggregate(tmp_path, monkeypatch):
    from prometheus_client import values
    d = tmp_path/"prom"
    d.mkdir()
    (d/"counter_999999.db").write_bytes(b"stale")                        # an earlier run's file: cleaned at start
    (tmp_path/"tel.py").write_text(TEL)
    r = subprocess.run([sys.executable, "-c", "import prometheus_client, sys; from mlops_nb.telemetry import "
                        "setup_multiprocess; setup_multiprocess(sys.argv[1])", str(d)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert not list(d.iterdir())
    stay = subprocess.Popen([sys.executable, str(tmp_path/"tel.py"), str(d), "30", "3", "stay"],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert stay.stdout.readline().strip() == "ready"
        r = subprocess.run([sys.executable, str(tmp_path/"tel.py"), str(d), "12", "4", "exit"], capture_output=True, text=True)
        assert r.returncode == 0, r.stderr
        monkeypatch.setenv(ENV, str(d))                                  # this process renders, as any worker would
        monkeypatch.setattr(values, "ValueClass", values.get_value_class())
        body, ctype = Telemetry().render()
    finally:
        stay.communicate("", timeout=30)
    s = parse(body)
    assert ctype.startswith("text/plain")
    assert s[("mlops_nb_requests_total", (("endpoint", "/predict"), ("status", "200")))] == 42
    assert s[("mlops_nb_request_seconds_count", (("endpoint", "/predict"),))] == 42
    assert s[("mlops_nb_predictions_total", (("class", ">50K"), ("role", "champion"), ("version", "3")))] == 30
    assert s[("mlops_nb_predictions_total", (("class", ">50K"), ("role", "champion"), ("version", "4")))] == 12
    assert s[("mlops_nb_predictions_total", (("class", "value"), ("role", "champion"), ("version", "4")))] == 10
    assert s[("mlops_nb_prediction_value_count", (("role", "champion"), ("version", "3")))] == 40
    assert s[("mlops_nb_prediction_value_bucket", (("le", "0.5"), ("role", "champion"), ("version", "4")))] == 5
    info = {k[1]: v for k, v in s.items() if k[0] == "mlops_nb_model_info"}
    assert info == {(("name", "adult"), ("role", "champion"), ("version", "3")): 1}  # the exited worker's is pruned


def test_router_is_stable_across_processes():
    keys = [f"k{i}" for i in range(2000)]
    here = "".join("1" if Router("canary", 0.2, seed=5).challenger_for(k) else "0" for k in keys)
    code = ("from mlops_nb.telemetry import Router; r = Router('canary', 0.2, seed=5); "
            f"print(''.join('1' if r.challenger_for(f'k{{i}}') else '0' for i in range({len(keys)})))")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env={**os.environ, "PYTHONHASHSEED": "123"})
    assert r.stdout.strip() == here
    assert abs(here.count("1") / len(keys) - 0.2) < 0.03


def test_real_model_predictions_round_trip(project):
    """The Adult sample's evaluated model: raw test rows (one by one, then in a batch) and its predictions, logged and read back."""
    from sample_data import evaluated_run
    from mlops_nb.model import load_run_bundle
    run = evaluated_run("pl")
    b = load_run_bundle(run)
    test = pd.read_parquet(run/"preprocess"/"test.parquet")
    cols = {c: test[c].to_numpy() for c in b.spec.source_columns}
    pred = b.predict(test)
    labels = b.decide(pred)
    with PredictionLog(project/"log", b.spec, model="adult", flush_rows=64, flush_seconds=0.01) as pl:
        for i in range(100):
            pl.append({c: a[i:i + 1] for c, a in cols.items()}, pred[i:i + 1], labels[i:i + 1], 1, request_id=f"one-{i}")
        pl.append({c: a[100:] for c, a in cols.items()}, pred[100:], labels[100:], 1, request_id="batch")
    assert (pl.errors, pl.dropped, pl.rows_written) == (0, 0, len(test))
    out = read_predictions(project/"log")
    assert len(out) == len(test)
    for c in b.spec.source_columns:
        if c in b.spec.numeric: np.testing.assert_array_equal(out[c].to_numpy(np.float64), test[c].to_numpy(np.float64))
        else: assert out[c].isna().tolist() == test[c].isna().tolist() and out[c].dropna().tolist() == test[c].dropna().astype(str).tolist()
    pos = b.spec.classes[1]
    np.testing.assert_array_equal(out[f"pred_p_{pos}"].to_numpy(), pred.astype(np.float64))
    assert out["pred_label"].tolist() == [str(l) for l in labels]


UVICORN_APP = textwrap.dedent('''
    import os, sys
    from mlops_nb.telemetry import setup_multiprocess
    if __name__ == "__main__":
        import uvicorn
        setup_multiprocess(sys.argv[2])                      # in the parent, before the workers start
        uvicorn.run("tel_app:app", host="127.0.0.1", port=int(sys.argv[1]), workers=2, log_level="warning")
    else:
        from fastapi import FastAPI, Response
        from mlops_nb.telemetry import Telemetry
        app, tel = FastAPI(), Telemetry()
        tel.set_model("adult", 3)
        @app.get("/hit")
        def hit():
            tel.request("/hit", 200, 0.001)
            return {"pid": os.getpid()}
        @app.get("/metrics")
        def metrics():
            body, ctype = tel.render()
            return Response(body, media_type=ctype)
''')


def test_uvicorn_workers_metrics_aggregate(tmp_path):
    """`uvicorn --workers 2`: whichever worker answers /metrics reports the requests of both."""
    import json
    import socket
    import urllib.request
    (tmp_path/"tel_app.py").write_text(UVICORN_APP)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0)); port = s.getsockname()[1]
    p = subprocess.Popen([sys.executable, "tel_app.py", str(port), str(tmp_path/"prom")], cwd=tmp_path,
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        pids, deadline = {}, time.monotonic() + 60
        while len(pids) < 2 and time.monotonic() < deadline:     # new connection per request: both workers answer
            try: pid = json.load(urllib.request.urlopen(url + "/hit", timeout=5))["pid"]
            except OSError: time.sleep(0.2); continue
            pids[pid] = pids.get(pid, 0) + 1
        assert len(pids) == 2, p.stdout.read1().decode() if p.poll() is not None else pids
        for _ in range(4):
            s = parse(urllib.request.urlopen(url + "/metrics", timeout=5).read())
            assert s[("mlops_nb_requests_total", (("endpoint", "/hit"), ("status", "200")))] == sum(pids.values())
            assert s[("mlops_nb_model_info", (("name", "adult"), ("role", "champion"), ("version", "3")))] == 1
    finally:
        p.terminate()
        try: p.wait(20)
        except subprocess.TimeoutExpired: os.killpg(p.pid, signal.SIGKILL); p.wait(10)
