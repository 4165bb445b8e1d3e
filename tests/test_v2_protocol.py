"""The server speaks the Open Inference Protocol (V2): Triton's own HTTP client, unchanged, against a real server.

One input tensor per raw column, as MLServer's pandas codec does (BYTES for categorical columns as NumPy object arrays,
FP64 or FP32 for numeric ones), sent as JSON and in Triton's binary tensor extension (tritonclient's default); the
predictions equal those of `POST /predict` on the same records.
"""
import json

import numpy as np
import pytest

from servers import Server, http_get, raw_records, serve_argv, served_project

tritonhttp = pytest.importorskip("tritonclient.http")


@pytest.fixture(scope="module")
def served():
    """(server, run folder, model name) for `mlops-nb serve --bundle` on an evaluated run; always stopped."""
    from mlops_nb.model import load_run_bundle
    with served_project() as (root, run_dir):
        srv = Server(serve_argv("--bundle", str(load_run_bundle(run_dir).path), "--log-dir", ""), cwd=root)
        try:
            srv.start()
            name = json.loads(http_get(srv.url + "/model")[1])["name"]
            yield srv, run_dir, name
        finally: srv.stop()


@pytest.fixture(scope="module")
def client(served):
    c = tritonhttp.InferenceServerClient(url=served[0].url.removeprefix("http://"), connection_timeout=30,
                                         network_timeout=30)
    yield c
    c.close()


def test_health_and_metadata(served, client):
    srv, run_dir, name = served
    from mlops_nb.model import load_run_bundle
    spec = load_run_bundle(run_dir).spec
    assert client.is_server_live() and client.is_server_ready() and client.is_model_ready(name)
    assert not client.is_model_ready("no-such-model")
    meta = client.get_model_metadata(name)
    assert meta["name"] == name
    inputs = {t["name"]: t["datatype"] for t in meta["inputs"]}
    assert list(inputs) == list(spec.source_columns)
    assert all(inputs[c] == "BYTES" for c in spec.categorical) and all(inputs[c].startswith("FP") for c in spec.numeric)
    assert {t["name"] for t in meta["outputs"]} >= {"predict", "predict_proba"}
    server_meta = client.get_server_metadata()
    assert server_meta["name"] and "version" in server_meta


def _inputs(records: list[dict], spec, fp32: set, binary: bool = False) -> list:
    """One InferInput per raw column: BYTES (object array) for categorical, FP32 for `fp32` columns, FP64 otherwise;
    as JSON, or with `binary` in Triton's binary tensor extension (tritonclient's default)."""
    out = []
    for c in spec.source_columns:
        vals = [r[c] for r in records]
        if c in spec.numeric:
            dt, arr = ("FP32", np.array(vals, np.float32)) if c in fp32 else ("FP64", np.array(vals, np.float64))
        else: dt, arr = "BYTES", np.array(vals, dtype=np.object_)
        t = tritonhttp.InferInput(c, [len(records)], dt)
        t.set_data_from_numpy(arr, binary_data=binary)
        out.append(t)
    return out


@pytest.mark.parametrize("binary", [False, True], ids=["json", "binary"])
def test_infer_equals_predict(served, client, binary):
    srv, run_dir, name = served
    from mlops_nb.model import load_run_bundle
    spec = load_run_bundle(run_dir).spec
    records = raw_records(run_dir, n=40, complete=True)
    import urllib.request
    req = urllib.request.Request(srv.url + "/predict", data=json.dumps(records).encode(),
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=30) as r: ref = json.loads(r.read())
    fp32 = {c for c in spec.numeric if all(float(np.float32(r[c])) == r[c] for r in records)}   # exact in FP32
    outputs = [tritonhttp.InferRequestedOutput(n, binary_data=False) for n in ("predict", "predict_proba")]
    res = client.infer(name, _inputs(records, spec, fp32, binary), outputs=outputs, request_id="req-1")
    assert res.get_response()["id"] == "req-1"
    labels = [x.decode() if isinstance(x, bytes) else x for x in res.as_numpy("predict").reshape(-1)]
    assert labels == ref["predictions"]
    proba = res.as_numpy("predict_proba")
    classes = list(ref["probabilities"][0])
    assert proba.shape == (len(records), len(classes))
    want = np.array([[p[k] for k in classes] for p in ref["probabilities"]])
    np.testing.assert_allclose(proba, want, rtol=0, atol=1e-9)
    res1 = client.infer(name, _inputs(records[:1], spec, set(), binary))  # one record, all outputs by default
    assert res1.as_numpy("predict_proba").shape == (1, len(classes))


def test_infer_rejects_a_wrong_tensor(served, client):
    srv, run_dir, name = served
    from mlops_nb.model import load_run_bundle
    from tritonclient.utils import InferenceServerException
    spec = load_run_bundle(run_dir).spec
    records = raw_records(run_dir, n=2, complete=True)
    required = next(c for c in spec.source_columns if c not in (getattr(spec, "nullable", None) or []))
    inputs = [t for t in _inputs(records, spec, set()) if t.name() != required]      # a required column missing
    with pytest.raises(InferenceServerException) as e: client.infer(name, inputs)
    assert required in str(e.value)
    with pytest.raises(InferenceServerException): client.infer("no-such-model", _inputs(records, spec, set()))
