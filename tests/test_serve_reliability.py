"""The model server's reliability, against a real `mlops-nb serve` subprocess on a free loopback port.

- schemathesis over the server's own OpenAPI schema: no 5xx over at least 1,000 generated cases (counted);
- malformed bodies (wrong types, NaN/Infinity tokens, unknown fields, an empty list, an oversized batch, invalid JSON,
  a wrong content type) get a 4xx whose reason names the field, never a stack trace, and the server stays up;
- a hot swap under load: client threads post continuously while the registry's production alias moves twice: zero
  failed requests, both versions answer; then a tampered new version is refused (counted in /metrics, logged) and
  the old one keeps serving;
- SIGTERM while large requests are in flight: each is answered, the process exits, the prediction log holds every row.
"""
import http.client
import json
import threading
import time

import pytest

from servers import Server, fuzz, http_get, raw_records, serve_argv, served_project

MIN_CASES = 1000                       # schemathesis cases, all operations together


@pytest.fixture(scope="module")
def project():
    """A project with the Adult sample and one evaluated run (module-wide: the run takes a few seconds)."""
    with served_project() as (root, run_dir):
        yield root, run_dir


@pytest.fixture(scope="module")
def server(project):
    """`mlops-nb serve --bundle` on the run's evaluated bundle; always stopped."""
    from mlops_nb.model import load_run_bundle
    root, run_dir = project
    srv = Server(serve_argv("--bundle", str(load_run_bundle(run_dir).path), "--log-dir", str(root/"predlog")), cwd=root)
    try: yield srv.start()
    finally: srv.stop()


def post(url: str, body: bytes, content_type: str = "application/json", path: str = "/predict",
         headers: dict | None = None, timeout: float = 30) -> tuple[int, bytes]:
    """Status and body of a raw POST (the body is sent as given: invalid JSON stays invalid)."""
    host, port = url.removeprefix("http://").split(":")
    c = http.client.HTTPConnection(host, int(port), timeout=timeout)
    try:
        c.request("POST", path, body=body, headers={"Content-Type": content_type, **(headers or {})})
        r = c.getresponse()
        return r.status, r.read()
    finally: c.close()


def test_schemathesis_finds_no_server_error(server):
    res = fuzz(server.url, budget=1100, seed=0)
    print(f"schemathesis: {res['cases']} cases, statuses {res['statuses']}, per operation {res['per_operation']}")
    assert not res["server_errors"], json.dumps(res["server_errors"][:5], indent=1)
    assert res["cases"] >= MIN_CASES, res["per_operation"]
    assert server.alive() and http_get(server.url + "/health")[0] == 200, server.tail()


def _bodies(rec: dict) -> dict:
    """Malformed requests: name -> (raw body, content type, allowed statuses, text the reason must contain)."""
    num = next(k for k, v in rec.items() if isinstance(v, (int, float)))    # a numeric column (age)
    cat = next(k for k, v in rec.items() if isinstance(v, str))             # a categorical column (workclass)
    j = lambda o: json.dumps(o).encode()
    raw = lambda token: j(rec).replace(f'"{num}": {json.dumps(rec[num])}'.encode(), f'"{num}": {token}'.encode())
    return {
        "string for a number": (j({**rec, num: "abc"}), "application/json", {422}, num),
        "number for a category": (j({**rec, cat: 12}), "application/json", {422}, cat),
        "list for a number": (j({**rec, num: [1, 2]}), "application/json", {422}, num),
        "object for a category": (j({**rec, cat: {"a": 1}}), "application/json", {422}, cat),
        "boolean for a number": (j({**rec, num: True}), "application/json", {422}, num),
        "NaN token": (raw("NaN"), "application/json", {400, 422}, num),
        "Infinity token": (raw("Infinity"), "application/json", {400, 422}, num),
        "-Infinity token": (raw("-Infinity"), "application/json", {400, 422}, num),
        "overflowing number": (raw("1e999"), "application/json", {400, 422}, num),
        "unknown field": (j({**rec, "agee": 30}), "application/json", {422}, "agee"),
        "null for a required field": (j({**rec, num: None}), "application/json", {422}, num),
        "bad record in a list": (j([rec, rec, {**rec, num: "x"}]), "application/json", {422}, num),
        "empty list": (b"[]", "application/json", {422}, ""),
        "a bare string": (b'"hello"', "application/json", {422}, ""),
        "invalid JSON": (j(rec)[:-5], "application/json", {400}, ""),
        "empty body": (b"", "application/json", {400, 422}, ""),
        "oversized batch": (j([rec] * 12000), "application/json", {413}, ""),
        "wrong content type": (j(rec), "text/plain", {415, 400, 422}, ""),
    }


MALFORMED = list(_bodies({"age": 1, "workclass": "x"}))


@pytest.mark.parametrize("case", MALFORMED)
def test_a_malformed_body_gets_a_4xx_naming_the_field(server, project, case):
    rec = raw_records(project[1], n=1, complete=True)[0]
    body, ctype, statuses, field = _bodies(rec)[case]
    status, text = post(server.url, body, ctype)
    reason = text.decode(errors="replace")
    assert status in statuses, f"{case}: {status} {reason[:300]}"
    assert field in reason and "Traceback" not in reason and len(reason) < 2000, f"{case}: {status} {reason[:300]}"


def test_the_server_stays_up_after_malformed_bodies(server, project):
    rec = raw_records(project[1], n=1, complete=True)[0]
    for body, ctype, _, _ in _bodies(rec).values(): post(server.url, body, ctype)
    assert server.alive() and http_get(server.url + "/health")[0] == 200, server.tail()
    status, text = post(server.url, json.dumps(rec).encode())                      # and it still predicts
    assert status == 200 and len(json.loads(text)["predictions"]) == 1, text


class Clients:
    """`n` threads posting one record each, continuously, on keep-alive connections, until stopped."""

    def __init__(self, url: str, body: bytes, n: int = 6):
        self.host, port = url.removeprefix("http://").split(":")
        self.port, self.body = int(port), body
        self.stop_ev = threading.Event()
        self.lock = threading.Lock()
        self.versions, self.failures, self.ok = {}, [], 0
        self.threads = [threading.Thread(target=self._loop, daemon=True) for _ in range(n)]

    def _loop(self):
        c = http.client.HTTPConnection(self.host, self.port, timeout=30)
        while not self.stop_ev.is_set():
            try:
                c.request("POST", "/predict", body=self.body, headers={"Content-Type": "application/json"})
                r = c.getresponse()
                text = r.read()
                if r.status != 200: raise RuntimeError(f"{r.status} {text[:200]!r}")
                v = json.loads(text)["version"]
                with self.lock:
                    self.ok += 1
                    self.versions[v] = self.versions.get(v, 0) + 1
                    self.last = v
            except Exception as e:                                 # a failed request: counted, reconnect
                with self.lock: self.failures.append(f"{type(e).__name__}: {e}")
                c.close()
                c = http.client.HTTPConnection(self.host, self.port, timeout=30)
        c.close()

    def wait_for(self, version, timeout: float = 60.0) -> bool:
        """Wait until a response comes from `version` and then 50 more requests are answered."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.lock:
                if self.versions.get(version, 0) >= 50 and getattr(self, "last", None) == version: return True
            time.sleep(0.05)
        return False

    def __enter__(self):
        for t in self.threads: t.start()
        return self

    def __exit__(self, *exc):
        self.stop_ev.set()
        for t in self.threads: t.join(30)


def _tamper(version_dir) -> None:
    """Change one byte of the version's booster, as a disk error or an attacker would, leaving the manifest as it was."""
    f = next(p for p in (version_dir/"model").rglob("*.ubj"))
    data = bytearray(f.read_bytes())
    data[len(data) // 2] ^= 0xFF
    f.write_bytes(bytes(data))


def test_hot_swap_under_load_fails_no_request_and_a_tampered_version_is_refused(project, tmp_path):
    from mlops_nb import registry as reg
    root, run_dir = project
    regdir = tmp_path/"registry"
    v = [reg.register(run_dir, name="adult", root=regdir)["version"] for _ in range(3)]
    assert v == [1, 2, 3]
    reg.set_alias("adult", "production", 1, expected=None, why="test", root=regdir)
    body = json.dumps(raw_records(run_dir, n=1, complete=True)[0]).encode()
    srv = Server(serve_argv("--name", "adult", "--registry", str(regdir), "--log-dir", ""), cwd=root, env={"MLOPS_NB_REGISTRY": str(regdir)})
    try:
        srv.start()
        with Clients(srv.url, body, n=6) as cl:
            assert cl.wait_for(1), (cl.versions, cl.failures[:3], srv.tail())
            reg.set_alias("adult", "production", 2, expected=1, why="hot swap 1", root=regdir)
            assert cl.wait_for(2), (cl.versions, cl.failures[:3], srv.tail())
            reg.set_alias("adult", "production", 1, expected=2, why="hot swap 2", root=regdir)
            assert cl.wait_for(1), (cl.versions, cl.failures[:3], srv.tail())
            _tamper(reg.version_dir("adult", 3, root=regdir, verify=False))
            with pytest.raises(Exception, match="3"):               # the registry refuses to point at it ...
                reg.set_alias("adult", "production", 3, expected=1, why="tampered", root=regdir)
            p = reg.aliases_path("adult", root=regdir)              # ... so the alias file is changed behind its back
            tmp = p.with_name(".aliases.test.tmp")
            tmp.write_text(json.dumps({**json.loads(p.read_text()), "production": 3}))
            tmp.replace(p)
            seen = cl.ok
            time.sleep(4)                                           # several poll periods
            with cl.lock: after = dict(cl.versions)
            assert cl.ok > seen + 50
        assert not cl.failures, cl.failures[:5]
        assert set(after) == {1, 2}, after                          # version 3 never answered
        assert cl.last == 1
        assert srv.alive() and http_get(srv.url + "/ready")[0] == 200, srv.tail()
        status, text = http_get(srv.url + "/model")
        assert status == 200 and json.loads(text)["version"] == 1, text
        metrics = http_get(srv.url + "/metrics")[1].decode()
        refused = [l for l in metrics.splitlines() if l.startswith("mlops_nb_reload") and 'outcome="refused"' in l]
        assert refused and float(refused[0].split()[-1]) >= 1, metrics[-2000:]   # counted
        assert "refused" in srv.tail() and "version 3" in srv.tail()            # and logged
        print(f"hot swap: {cl.ok} requests, 0 failed, by version {after}")
    finally:
        srv.stop()


def test_sigterm_drains_the_requests_in_flight_and_flushes_the_prediction_log(project, tmp_path):
    from mlops_nb.model import load_run_bundle
    from mlops_nb.predlog import read_predictions
    root, run_dir = project
    rec = raw_records(run_dir, n=1, complete=True)[0]
    big = json.dumps([rec] * 1000).encode()                       # with explanations: a request that takes a while
    srv = Server(serve_argv("--bundle", str(load_run_bundle(run_dir).path), "--log-dir", str(tmp_path/"log"),
                            "--max-body", str(16 << 20)), cwd=root)
    try:
        srv.start()
        assert post(srv.url, json.dumps(rec).encode())[0] == 200
        results, sent = [], threading.Barrier(4)

        def slow():
            host, port = srv.url.removeprefix("http://").split(":")
            c = http.client.HTTPConnection(host, int(port), timeout=120)
            try:
                c.request("POST", "/predict?explain=true", body=big, headers={"Content-Type": "application/json"})
                sent.wait(30)
                r = c.getresponse()
                results.append((r.status, len(json.loads(r.read())["predictions"])))
            except Exception as e: results.append((type(e).__name__, str(e)))
            finally: c.close()

        threads = [threading.Thread(target=slow) for _ in range(3)]
        for t in threads: t.start()
        sent.wait(30)                                             # every body is on the wire
        time.sleep(0.2)
        srv.proc.send_signal(15)                                  # SIGTERM to the server, as an orchestrator does
        for t in threads: t.join(120)
        code = srv.proc.wait(60)
    finally: srv.stop()
    assert results == [(200, 1000)] * 3, (results, srv.tail())
    assert code in (0, -15), srv.tail()                          # uvicorn re-raises SIGTERM after its graceful shutdown
    log = read_predictions(tmp_path/"log")
    assert len(log) == 1 + 3 * 1000                               # every prediction flushed at shutdown
