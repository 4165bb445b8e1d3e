"""The serving benchmark's pieces that need no wrk: the Lua script, the summary, the floor app (make bench runs the rest)."""
import json

from benchmarks import serve_load as sl


def test_lua_script_carries_the_body_and_reports_json():
    body = json.dumps({"age": 25, "native-country": "United-States", "note": "a ]] b"})
    lua = sl.LUA % body
    assert f"wrk.body = [==[{body}]==]" in lua and 'wrk.method = "POST"' in lua
    assert "latency:percentile(99)" in lua and "WRKJSON" in lua and "%%" not in lua


def test_summary_ratios_and_targets():
    row = lambda case, rps, p99=5.0: {"case": case, "rps": rps, "p99_ms": p99}
    rows = [row("floor, 1 worker", 1000.0), row("server, 1 worker", 750.0, 12.0), row(sl.RAW, 3000.0)]
    s = sl._summary(rows)
    assert s["ratio"] == 0.75 and s["meets_targets"] and s["ratio_server_raw_model"] == 0.25
    s = sl._summary([rows[0], row("server, 1 worker", 750.0, 16.0), rows[2]])
    assert not s["meets_targets"]                                        # p99 over 15 ms
    runs = [{"rps": r, "p50_ms": 1.0, "p99_ms": 2.0, "mean_ms": 1.5, "errors": 0} for r in (90.0, 100.0, 120.0)]
    m = sl._median_row("c", runs, workers=1)
    assert m["rps"] == 100.0 and m["min_rps"] == 90.0 and m["max_rps"] == 120.0 and m["errors"] == 0


def test_floor_app_answers_a_constant_under_serves_uvicorn_settings():
    from fastapi.testclient import TestClient
    from benchmarks.serve_floor import ANSWER, app
    from mlops_nb.launch import UVICORN
    c = TestClient(app)
    assert c.post("/predict", content=b'{"age": 1}').json() == ANSWER
    assert c.post("/parse", content=b'{"age": 1}').json() == ANSWER and c.get("/health").status_code == 200
    assert sl.uvicorn_settings() == {**UVICORN, "log_level": "info"}
    assert sl.floor_argv(2)[-1] == "2" and "{port}" in sl.floor_argv(1)
