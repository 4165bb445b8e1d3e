"""The model server: endpoints, record rules, explanations, V2, hot reload, canary and shadow (in-process), and with
real uvicorn processes: SIGTERM drains a request in flight, --workers 2 aggregates /metrics."""
import asyncio
import json
import math
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from fastapi.testclient import TestClient

from sample_data import evaluated_run, write_adult_sample

NAME = "adult"


@pytest.fixture(scope="module")
def reg(tmp_path_factory):
    """A project with one evaluated Adult run registered three times (versions 1, 2, 3; production -> 1)."""
    root = tmp_path_factory.mktemp("serve")/"proj"
    root.mkdir()
    write_adult_sample(root)
    mp = pytest.MonkeyPatch()
    for k, v in dict(MLOPS_NB_ROOT=str(root), WANDB_MODE="disabled", WANDB_SILENT="true", WANDB_DIR=str(root)).items():
        mp.setenv(k, v)
    mp.delenv("WANDB_API_KEY", raising=False)
    from mlops_nb.registry import register, set_alias
    run = evaluated_run("r1")
    for _ in range(3): register(run, name=NAME, root=root/"models", wandb_mode="disabled")
    set_alias(NAME, "production", 1, root=root/"models")
    test = pd.read_parquet(run/"preprocess"/"test.parquet")
    yield {"root": root, "models": root/"models", "run": run, "test": test, "env": dict(os.environ)}
    mp.undo()


def _records(df: pd.DataFrame) -> list:
    """Rows as JSON records (NaN -> null)."""
    return [{k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in r.items()}
            for r in json.loads(df.to_json(orient="records"))]


def _cfg(reg, **kw):
    from mlops_nb.serve import ServeConfig
    return ServeConfig(name=NAME, root=str(reg["models"]), **{"log_dir": "", "poll_seconds": 0.05, **kw})


def _client(reg, **kw):
    from mlops_nb.serve import create_app
    return TestClient(create_app(_cfg(reg, **kw)))


def _metric(text: str, name: str, **labels) -> float:
    """The sum of a metric's samples whose labels include `labels`."""
    tot = 0.0
    for line in text.splitlines():
        if not line.startswith(name + "{") and not line.startswith(name + " "): continue
        head, val = line.rsplit(" ", 1)
        if all(f'{k}="{v}"' in head for k, v in labels.items()): tot += float(val)
    return tot


def test_endpoints_and_evaluate_equality(reg):
    rows = reg["test"].drop(columns=["income"])
    recs = _records(rows)
    ev = pd.read_parquet(reg["run"]/"evaluate"/"predictions.parquet")
    with _client(reg) as c:
        assert c.get("/health").json() == {"status": "ok"}
        assert c.get("/ready").json() == {"ready": True, "model": NAME, "version": 1}
        m = c.get("/model").json()
        assert (m["name"], m["version"], m["task"]) == (NAME, 1, "binary")
        assert set(m["input_schema"]["properties"]) == set(rows.columns)
        r = c.post("/predict", json=recs)               # the whole test split in one request
        assert r.status_code == 200 and r.headers["x-model-version"] == "1"
        d = r.json()
        p = np.array([q[">50K"] for q in d["probabilities"]])
        np.testing.assert_allclose(p, ev["probability"].to_numpy(), atol=1e-6)
        assert d["predictions"] == ev["decision"].tolist()
        one = c.post("/predict", json=recs[5]).json()  # one record: the same numbers as in the batch
        assert one["predictions"] == d["predictions"][5:6] and one["probabilities"] == d["probabilities"][5:6]
        # Open Inference Protocol V2: one tensor per raw column; same answers as /predict
        inputs = [{"name": k, "shape": [20], "datatype": "BYTES" if rows[k].dtype.kind not in "if" else "FP64",
                   "data": [rec[k] for rec in recs[:20]]} for k in rows.columns]
        v = c.post(f"/v2/models/{NAME}/infer", json={"id": "q1", "inputs": inputs})
        assert v.status_code == 200, v.text
        out = {o["name"]: o for o in v.json()["outputs"]}
        assert v.json()["id"] == "q1" and out["predict"]["data"] == d["predictions"][:20]
        np.testing.assert_allclose(np.reshape(out["predict_proba"]["data"], (20, 2))[:, 1], p[:20], atol=1e-9)
        assert c.post(f"/v2/models/{NAME}/versions/1/infer", json={"inputs": inputs}).status_code == 200
        assert c.post(f"/v2/models/{NAME}/versions/9/infer", json={"inputs": inputs}).status_code == 404
        assert c.get("/v2").json()["name"] == "mlops_nb"
        assert c.get("/v2/health/live").status_code == 200 and c.get("/v2/health/ready").json() == {"ready": True}
        assert c.get(f"/v2/models/{NAME}").json()["name"] == NAME
        assert c.get(f"/v2/models/{NAME}/ready").json()["ready"] is True
        assert c.get("/v2/models/nope/ready").status_code == 404
        met = c.get("/metrics")
        assert met.headers["content-type"].startswith("text/plain")
        assert _metric(met.text, "mlops_nb_requests_total", endpoint="/predict", status="200") == 2
        assert _metric(met.text, "mlops_nb_predictions_total", version="1") == len(recs) + 1 + 20 + 20
        assert 'mlops_nb_model_info{name="adult",role="champion",version="1"} 1.0' in met.text
        spec = c.get("/openapi.json").json()
        body = spec["paths"]["/predict"]["post"]["requestBody"]["content"]["application/json"]["schema"]
        assert "oneOf" in body


def test_v2_binary_tensors(reg):
    """Triton's binary tensor extension (tritonclient's default) gives the same answers as JSON tensors."""
    th = pytest.importorskip("tritonclient.http")
    rows = reg["test"].drop(columns=["income"]).head(12).reset_index(drop=True)
    recs = _records(rows)
    inputs = []
    for k in rows.columns:
        vals = [r[k] for r in recs]
        arr = np.array(vals, dtype=np.object_) if rows[k].dtype.kind not in "if" else np.array(vals, np.float64)
        t = th.InferInput(k, [len(recs)], "BYTES" if arr.dtype == object else "FP64")
        t.set_data_from_numpy(np.array(["" if v is None else v for v in vals], dtype=np.object_) if arr.dtype == object else arr,
                              binary_data=True)
        inputs.append(t)
    body, n = th.InferenceServerClient.generate_request_body(inputs, request_id="b1")
    assert n is not None                                       # a binary body: JSON header of n bytes, then tensors
    with _client(reg) as c:
        ref = c.post("/predict", json=[{k: ("" if v is None else v) for k, v in r.items()} for r in recs]).json()
        r = c.post(f"/v2/models/{NAME}/infer", content=body, headers={"Inference-Header-Content-Length": str(n),
                                                                       "Content-Type": "application/octet-stream"})
        assert r.status_code == 200, r.text
        out = {o["name"]: o for o in r.json()["outputs"]}
        assert r.json()["id"] == "b1" and out["predict"]["data"] == ref["predictions"]
        bad = c.post(f"/v2/models/{NAME}/infer", content=body, headers={"Inference-Header-Content-Length": str(len(body) + 5)})
        assert bad.status_code == 400


def test_explain(reg):
    recs = _records(reg["test"].drop(columns=["income"]).head(3))
    with _client(reg) as c:
        d = c.post("/predict?explain=true&top=3", json=recs).json()
        assert len(d["explanations"]) == 3
        for e, q in zip(d["explanations"], d["probabilities"]):
            assert len(e["contributions"]) == 3
            total = sum(x["contribution"] for x in e["contributions"]) + e["other"] + e["bias"]
            assert abs(total - math.log(q[">50K"] / q["<=50K"])) < 1e-3      # TreeSHAP sums to the log-odds
        assert "explanations" not in c.post("/predict", json=recs).json()


def test_record_rules(reg):
    rec = _records(reg["test"].drop(columns=["income"]).head(1))[0]
    with _client(reg, max_body=200_000, max_records=500) as c:
        def post(body, **kw):
            r = c.post("/predict", json=body, **kw) if not isinstance(body, bytes) else c.post("/predict", content=body, **kw)
            assert "Traceback" not in r.text
            return r.status_code, r.json()
        ok, _ = post({**rec, "workclass": None})                 # null where training had missing values
        assert ok == 200
        ok, _ = post({k: v for k, v in rec.items() if k != "occupation"})   # absent likewise
        assert ok == 200
        before = _metric(c.get("/metrics").text, "mlops_nb_unseen_categories_total", column="native-country")
        ok, _ = post({**rec, "native-country": "Atlantis"})      # unseen category: accepted and counted
        assert ok == 200
        assert _metric(c.get("/metrics").text, "mlops_nb_unseen_categories_total", column="native-country") == before + 1
        s, e = post({**rec, "agee": 40})                         # misspelt field: 422 naming it
        assert (s, e["field"]) == (422, "agee")
        s, e = post({**rec, "age": "forty"})                     # wrong type
        assert (s, e["field"]) == (422, "age")
        s, e = post({**rec, "education": 12})
        assert (s, e["field"]) == (422, "education")
        s, e = post({k: v for k, v in rec.items() if k != "age"})  # required (no missing values in training)
        assert (s, e["field"]) == (422, "age")
        for bad in (float("nan"), float("inf"), float("-inf")):  # not JSON, but what json.dumps writes: named
            s, e = post(json.dumps({**rec, "age": bad}).encode())
            assert (s, e["field"]) == (422, "age") and "age" in e["error"]
        s, e = post(b'{"age": 1e999}')
        assert (s, e["field"]) == (422, "age")
        s, e = post(json.dumps({**rec, "age": 1e300}).encode())  # finite, but beyond float32
        assert (s, e["field"]) == (422, "age")
        r = c.post("/predict", content=json.dumps(rec), headers={"Content-Type": "text/plain"})
        assert r.status_code == 415
        assert post([])[0] == 422                                 # empty list
        assert post([rec] * 501)[0] == 413                        # too many records
        assert post(b"[" + b" " * 200_001 + b"]")[0] == 413      # too large a body (by its Content-Length)
        r = c.post("/predict", content=iter([b"[", b" " * 150_000, b" " * 150_000, b"]"]))  # chunked: counted as it arrives
        assert r.status_code == 413 and "content-length" not in r.request.headers
        assert post(b'{"age": 3')[0] == 400                      # invalid JSON
        assert post("a string")[0] == 422
        assert c.post("/predict?explain=perhaps", json=rec).status_code == 422
        assert c.get("/health").status_code == 200               # still up


def test_api_key(reg):
    rec = _records(reg["test"].drop(columns=["income"]).head(1))[0]
    with _client(reg, api_key="k3y") as c:
        assert c.post("/predict", json=rec).status_code == 401
        assert c.post("/predict", json=rec, headers={"X-API-Key": "nope"}).status_code == 401
        assert c.post("/predict", json=rec, headers={"X-API-Key": "k3y"}).status_code == 200
        assert c.get("/model").status_code == 401 and c.get("/metrics").status_code == 401
        assert all(c.get(p).status_code == 200 for p in ("/health", "/ready", "/v2/health/live", "/v2/health/ready"))


def test_hot_reload_and_corrupt_version(reg):
    """Requests keep succeeding while the alias flips between versions; a tampered version is refused."""
    import httpx
    from mlops_nb.registry import set_alias
    from mlops_nb.serve import create_app
    models, rec = reg["models"], _records(reg["test"].drop(columns=["income"]).head(2))
    app = create_app(_cfg(reg))
    srv = app.state.server
    seen, stop = [], threading.Event()

    def flip():
        v = 1
        while not stop.is_set():
            v = 2 if v == 1 else 1
            set_alias(NAME, "production", v, root=models)
            srv.watcher.check()

    async def load():
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as c:
            async def one(i):
                r = await c.post("/predict", json=rec[i % 2])
                seen.append((r.status_code, r.json().get("version")))
            for _ in range(40): await asyncio.gather(*[one(i) for i in range(8)])

    t = threading.Thread(target=flip)
    t.start()
    try: asyncio.run(load())
    finally:
        stop.set()
        t.join()
    assert {s for s, _ in seen} == {200} and len(seen) == 320
    assert srv.models.reloads["ok"] >= 2
    set_alias(NAME, "production", 2, root=models)
    srv.watcher.check()
    set_alias(NAME, "production", 3, root=models)               # then version 3's model is tampered with
    mf = models/NAME/"3"/"model"/"model.ubj"
    good = mf.read_bytes()
    try:
        mf.write_bytes(good[:-10] + b"0123456789")
        srv.watcher.check()
        assert srv.models.champion.version == 2                 # refused: version 2 keeps serving
        assert srv.models.reloads["refused"] == 1
        with TestClient(app) as c:
            assert c.post("/predict", json=rec[0]).json()["version"] == 2
            assert _metric(c.get("/metrics").text, "mlops_nb_reload_total", outcome="refused") == 1
            assert "3" in " ".join(c.get("/model").json()["reloads"]["refused_versions"])
    finally:
        mf.write_bytes(good)
        set_alias(NAME, "production", 1, root=models)
        srv.close()


def test_watcher_thread_follows_alias(reg):
    from mlops_nb.registry import set_alias
    rec = _records(reg["test"].drop(columns=["income"]).head(1))[0]
    with _client(reg) as c:                                    # the lifespan starts the watcher thread
        assert c.post("/predict", json=rec).json()["version"] == 1
        set_alias(NAME, "production", 2, root=reg["models"])
        try:
            for _ in range(200):
                if c.get("/ready").json()["version"] == 2: break
                time.sleep(0.05)
            assert c.post("/predict", json=rec).json()["version"] == 2
        finally: set_alias(NAME, "production", 1, root=reg["models"])


def test_canary_and_shadow(reg, tmp_path):
    from mlops_nb.predlog import read_predictions
    recs = _records(reg["test"].drop(columns=["income"]).head(4))
    with _client(reg, challenger="2", mode="canary", share=0.5) as c:
        got = {}
        for i in range(200):
            k = f"user-{i}"
            vs = {c.post("/predict", json=recs[i % 4], headers={"X-Request-Key": k}).json()["version"] for _ in range(2)}
            assert len(vs) == 1                                  # the same key always reaches the same version
            got[k] = vs.pop()
        share = sum(v == 2 for v in got.values()) / len(got)
        assert 0.35 < share < 0.65
        met = c.get("/metrics").text
        assert _metric(met, "mlops_nb_predictions_total", version="2", role="canary") > 0
        assert _metric(met, "mlops_nb_predictions_total", version="1", role="champion") > 0
        assert c.get("/model").json()["challenger"]["version"] == 2
    log = tmp_path/"log"
    with _client(reg, challenger="3", mode="shadow", log_dir=str(log)) as c:
        for i in range(10):
            r = c.post("/predict", json=recs[i % 4], headers={"X-Request-ID": f"q{i}"})
            assert r.json()["version"] == 1 and r.headers["x-model-role"] == "champion"
    # leaving the block ran the shut-down: shadow queue finished, logs flushed
    df = read_predictions(log)
    assert sorted(df.groupby("role")["version"].first().astype(int).to_dict().items()) == [("champion", 1), ("shadow", 3)]
    assert (df["role"] == "shadow").sum() == 10 and (df["role"] == "champion").sum() == 10
    assert set(df.loc[df["role"] == "shadow", "request_id"]) == {f"q{i}" for i in range(10)}


# --- real uvicorn processes -------------------------------------------------------------------------------------------

def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _start(reg, *args, log_dir="") -> tuple[subprocess.Popen, int]:
    port = _free_port()
    cmd = [sys.executable, "-m", "mlops_nb", "serve", "--name", NAME, "--registry", str(reg["models"]),
           "--port", str(port), "--log-dir", log_dir, *args]
    p = subprocess.Popen(cmd, env=reg["env"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    import httpx
    for _ in range(300):
        try:
            if httpx.get(f"http://127.0.0.1:{port}/ready", timeout=1).status_code == 200: return p, port
        except httpx.HTTPError: pass
        if p.poll() is not None: break
        time.sleep(0.1)
    p.kill()
    raise AssertionError(f"server did not start: {p.communicate()[0][-2000:]}")


def test_sigterm_drains_in_flight_request(reg, tmp_path):
    rec = json.dumps(_records(reg["test"].drop(columns=["income"]).head(50))).encode()
    log = tmp_path/"log"
    p, port = _start(reg, log_dir=str(log))
    try:
        s = socket.create_connection(("127.0.0.1", port))
        s.sendall(b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                  b"Content-Length: %d\r\n\r\n" % len(rec) + rec[:100])      # a request in flight: half its body
        time.sleep(0.5)
        p.send_signal(signal.SIGTERM)
        time.sleep(0.5)
        assert p.poll() is None                                  # still draining
        s.sendall(rec[100:])
        s.settimeout(20)
        resp = b""
        while chunk := s.recv(65536): resp += chunk            # the server closes the connection after answering
        assert resp.startswith(b"HTTP/1.1 200"), resp[:200]
        s.close()
        out, _ = p.communicate(timeout=30)
        assert p.returncode in (0, -signal.SIGTERM), out          # uvicorn re-raises the signal after a clean drain
    finally:
        if p.poll() is None: p.kill()
    from mlops_nb.predlog import read_predictions
    assert len(read_predictions(log)) == 50                      # the prediction log was flushed on shut-down


def test_two_workers_aggregate_metrics(reg):
    import httpx
    rec = _records(reg["test"].drop(columns=["income"]).head(1))[0]
    p, port = _start(reg, "--workers", "2")
    try:
        url = f"http://127.0.0.1:{port}"
        for _ in range(30):                                       # a new connection each: both workers answer some
            assert httpx.post(url + "/predict", json=rec).status_code == 200
        for _ in range(8):                                        # whichever worker answers, it reports all 30
            assert _metric(httpx.get(url + "/metrics").text, "mlops_nb_requests_total", endpoint="/predict", status="200") == 30
    finally:
        p.send_signal(signal.SIGTERM)
        p.communicate(timeout=30)


def test_cli_errors(reg, capsys):
    from mlops_nb.cli import main
    assert main(["serve"]) == 2
    assert "name" in capsys.readouterr().err
    assert main(["serve", "--name", "nosuch", "--registry", str(reg["models"])]) == 2
    assert main(["serve", "--bundle", str(reg["root"]/"nowhere")]) == 2
    assert main(["serve", "--name", NAME, "--api-key-env", "MLOPS_NB_NO_SUCH_VAR"]) == 2
