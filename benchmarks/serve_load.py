"""Serving under load: `mlops-nb serve` against the framework's floor and the raw model, on this machine.

Load: wrk (Debian package; `make bench` installs it with tools/install-debian.sh) on loopback, 16 connections, single-record
`POST /predict` requests whose body is a real Adult test record (a wrk Lua script), a warm-up, then `duration_s`
seconds measured; cases alternate within each repetition and medians of `repeat` are reported. Latency p50/p99 come
from wrk's own histogram (the Lua `done` hook), errors (connect/read/write/timeout, non-2xx) are counted.

Cases, all in the same run:
(a) floor: a bare FastAPI endpoint returning a constant (benchmarks/serve_floor.py) under the SAME uvicorn settings as
    the model server (recorded in the JSON: workers, loop, http, access log, wrk threads/connections/duration);
    for information also the same app reading and parsing the JSON body (`/parse`);
(b) raw model: the booster's `inplace_predict` on one float32 row (the record already transformed), in this process,
    one thread: rows/s;
(c) server: `mlops-nb serve --bundle` on the train stage's model with its defaults, trained on the full bundled Adult
    data (preprocess and features with their defaults too), or on the bundle folder $MLOPS_NB_BENCH_BUNDLE (e.g. the
    evaluated model of a default pipeline run); the prediction log on, as by default. `ratio` =
    server / floor requests/s at one worker (targets: >= 0.70 and p99 <= 15 ms); `--workers 2` figures for information.
The server scores the requests parsed in the same event-loop turn together (its micro-batching, counted under
`batching` from GET /model), so its requests/s can exceed the raw model's single-row rows/s (`ratio_server_raw_model`).
Then a longer schemathesis run against the server's own OpenAPI schema (more cases than tests/test_serve_reliability.py):
its count of generated cases and of 5xx answers.

Quick variant (`--quick`): 3 s per measurement after 1 s of warm-up, one repetition, no 2-worker cases, a shorter
schemathesis run. The machine is shared and noisy: the ratios, measured in the same run, are what to read.
"""
from __future__ import annotations

import contextlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

DESCRIPTION = "POST /predict of one Adult record under wrk (16 connections): server vs bare FastAPI floor vs raw model"
from benchmarks import REPO, adult_project

sys.path.insert(0, str(REPO/"tests"))
from servers import Server, fuzz, http_get, serve_argv  # noqa: E402 (tests/servers.py: subprocess, free port, wait ready)

CONNECTIONS = 16
WRK_THREADS = 1             # one wrk thread drives 16 connections easily and leaves the second core to the server
TARGET_RATIO, TARGET_P99_MS = 0.70, 15.0
PARSE = "floor + JSON body parsed, 1 worker"      # for information: the floor app's /parse
RAW = "raw model inplace_predict, 1 row, 1 thread"

LUA = """wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = [==[%s]==]
function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format('WRKJSON {"requests": %%d, "duration_us": %%d, "bytes": %%d, "connect": %%d, "read": %%d, ' ..
    '"write": %%d, "status": %%d, "timeout": %%d, "p50_us": %%d, "p90_us": %%d, "p99_us": %%d, "max_us": %%d, ' ..
    '"mean_us": %%.1f}\\n', summary.requests, summary.duration, summary.bytes, e.connect, e.read, e.write, e.status,
    e.timeout, latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max, latency.mean))
end
"""


def train_model(root: Path) -> tuple[Path, dict, str]:
    """The model to serve and one Adult test record: the train stage's model (defaults) on the full bundled Adult
    data in project `root`, or the bundle folder $MLOPS_NB_BENCH_BUNDLE (e.g. a default pipeline run's evaluated
    model: `reports/runs/<run>/evaluate/model`), the record then from the same project's Adult test file."""
    import pandas as pd
    from mlops_nb.model import ModelBundle, load_run_bundle
    from mlops_nb.preprocess import run_preprocess
    given = os.environ.get("MLOPS_NB_BENCH_BUNDLE", "")
    if given:
        folder = Path(given)/"model" if (Path(given)/"model"/"bundle.json").is_file() else Path(given)  # a version folder
        bundle, what = ModelBundle.load(folder), f"the bundle {given}"
        run_dir = run_preprocess(run_id="serve", wandb_mode="disabled").run_dir
    else:
        from mlops_nb.train import run_train
        run_dir = run_train(run_id="serve", wandb_mode="disabled").run_dir
        bundle, what = load_run_bundle(run_dir), "train stage defaults on the full bundled Adult data"
    test = pd.read_parquet(Path(run_dir)/"preprocess"/"test.parquet")
    row = test[bundle.spec.source_columns].dropna().iloc[0]
    record = {c: (v.item() if hasattr(v, "item") else v) for c, v in row.items()}
    return Path(bundle.path), record, what


def _rate(fn, seconds: float) -> float:
    """Calls per second of `fn()` over about `seconds` (after 200 warm-up calls)."""
    for _ in range(200): fn()
    n, t0 = 0, time.perf_counter()
    while (el := time.perf_counter() - t0) < seconds:
        for _ in range(100): fn()
        n += 100
    return n / el


def raw_model_rows_per_s(bundle_dir: Path, record: dict, seconds: float) -> dict:
    """Rows/s of the booster's `inplace_predict` on one float32 row (transformed once), one thread, in this process;
    for information also the server's own single-row predictor (`reload.fast_predictor`: one C call, no Python
    argument handling) on the same row."""
    import numpy as np
    import pandas as pd
    from mlops_nb.features import transform
    from mlops_nb.model import ModelBundle
    b = ModelBundle.load(bundle_dir)
    row = np.ascontiguousarray(transform(pd.DataFrame([record]), b.spec).to_numpy(np.float32))
    b.booster.set_param({"nthread": 1})
    rng = (0, b.best_iteration + 1)
    predict = b.booster.inplace_predict
    raw = _rate(lambda: predict(row, iteration_range=rng), seconds)
    out = {"rows_per_s": raw, "us_per_row": 1e6 / raw, "trees": b.best_iteration + 1}
    try:
        from mlops_nb.reload import fast_predictor
        fast = fast_predictor(b)
        assert np.allclose(fast(row), predict(row, iteration_range=rng))
        out["fast_rows_per_s"] = _rate(lambda: fast(row), seconds)
    except ImportError: pass
    return out


def wrk(url: str, script: Path, seconds: float, connections: int = CONNECTIONS, threads: int = WRK_THREADS) -> dict:
    """One wrk run against `url`: requests/s, latency percentiles (ms) and error counts."""
    cmd = ["wrk", f"-t{threads}", f"-c{connections}", f"-d{max(1, round(seconds))}s", "--latency", "--timeout", "5s",
           "-s", str(script), url]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + 60)
    line = next((l for l in r.stdout.splitlines() if l.startswith("WRKJSON ")), None)
    if r.returncode or line is None: raise RuntimeError(f"wrk failed ({r.returncode}): {r.stdout[-1500:]}{r.stderr[-1500:]}")
    d = json.loads(line[8:])
    errors = d["connect"] + d["read"] + d["write"] + d["timeout"] + d["status"]
    return {"rps": d["requests"] / (d["duration_us"] / 1e6), "p50_ms": d["p50_us"] / 1e3, "p90_ms": d["p90_us"] / 1e3,
            "p99_ms": d["p99_us"] / 1e3, "max_ms": d["max_us"] / 1e3, "mean_ms": d["mean_us"] / 1e3,
            "requests": d["requests"], "errors": errors, "non_2xx": d["status"]}


FLOOR = """import sys, uvicorn
from mlops_nb.launch import UVICORN
uvicorn.run("benchmarks.serve_floor:app", host="127.0.0.1", port=int(sys.argv[1]), workers=int(sys.argv[2]),
            log_level="info", **UVICORN)
"""


def uvicorn_settings() -> dict:
    """The uvicorn settings of `mlops-nb serve` (mlops_nb.launch.UVICORN and its log level), used for the floor too."""
    from mlops_nb.launch import UVICORN
    return {**UVICORN, "log_level": "info"}


def floor_argv(workers: int) -> list[str]:
    """The floor app on uvicorn.run with exactly `mlops_nb.launch.UVICORN` (as `serve` calls it) and `workers`."""
    return [sys.executable, "-c", FLOOR, "{port}", str(workers)]


def check_answer(server: Server, body: bytes, floor: bool) -> dict:
    """One request before the load: 200 and, for the model server, a prediction for the record."""
    import urllib.request
    req = urllib.request.Request(server.url + "/predict", data=body, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=10) as r:
        assert r.status == 200, r.status
        doc = json.loads(r.read())
    if not floor: assert len(doc["predictions"]) == 1, doc
    return doc


def _median_row(case: str, runs: list[dict], **extra) -> dict:
    med = {k: statistics.median(r[k] for r in runs) for k in ("rps", "p50_ms", "p99_ms", "mean_ms")}
    return {"case": case, **extra, "rps": med["rps"], "p50_ms": med["p50_ms"], "p99_ms": med["p99_ms"],
            "mean_ms": med["mean_ms"], "min_rps": min(r["rps"] for r in runs), "max_rps": max(r["rps"] for r in runs),
            "errors": sum(r["errors"] for r in runs)}


def _cases(bundle_dir: Path, root: Path, env: dict, worker_counts) -> dict:
    """case -> (Server not yet started, workers, is the floor): floor and server per worker count."""
    cases = {}
    for w in worker_counts:
        n = f"{w} worker{'s' * (w > 1)}"
        cases[f"floor, {n}"] = (Server(floor_argv(w), cwd=REPO, env=env), w, True)
        cases[f"server, {n}"] = (Server(serve_argv("--bundle", str(bundle_dir), "--workers", str(w)), cwd=root, env=env),
                                 w, False)
    return cases


def _measure(cases: dict, script: Path, repeat: int, warm: float, secs: float, raw_fn) -> tuple[dict, list]:
    """wrk runs per case (and the floor's /parse), alternating within each repetition; raw-model rates per repetition."""
    targets = {**{c: (srv, "/predict") for c, (srv, _, _) in cases.items()}, PARSE: (cases["floor, 1 worker"][0], "/parse")}
    runs, raw = {c: [] for c in targets}, []
    for i in range(repeat):
        for c, (srv, path) in targets.items():
            wrk(srv.url + path, script, warm)
            runs[c].append(wrk(srv.url + path, script, secs))
            print(f"   [{i + 1}/{repeat}] {c}: {runs[c][-1]['rps']:.0f} req/s, p99 {runs[c][-1]['p99_ms']:.1f} ms", flush=True)
        raw.append(raw_fn())
    return runs, raw


def _rows(cases: dict, runs: dict, raw: list) -> list[dict]:
    """The table: medians per case, then the raw model (and the server's own predictor) in rows/s."""
    rows = [_median_row(c, runs[c], workers=w) for c, (_, w, _) in cases.items()]
    rows.insert(1, _median_row(PARSE, runs[PARSE], workers=1))
    raw_rps = statistics.median(r["rows_per_s"] for r in raw)
    rows.append({"case": RAW, "workers": "", "rps": raw_rps, "mean_ms": 1e3 / raw_rps})
    if "fast_rows_per_s" in raw[0]:                              # for information: the server's predictor alone
        fast = statistics.median(r["fast_rows_per_s"] for r in raw)
        rows.append({"case": "server's predictor (one C call), 1 row", "workers": "", "rps": fast, "mean_ms": 1e3 / fast})
    return rows


def _summary(rows: list[dict]) -> dict:
    """The headline ratios and whether the targets are met."""
    by = {r["case"]: r for r in rows}
    srv1, floor1 = by["server, 1 worker"], by["floor, 1 worker"]
    ratio = srv1["rps"] / floor1["rps"]
    out = {"ratio": ratio,                                       # the headline: server / floor, one worker each
           "server_p99_ms": srv1["p99_ms"], "target_ratio": TARGET_RATIO, "target_p99_ms": TARGET_P99_MS,
           "meets_targets": ratio >= TARGET_RATIO and srv1["p99_ms"] <= TARGET_P99_MS,
           "ratio_server_raw_model": srv1["rps"] / by[RAW]["rps"]}   # requests/s over the raw model's rows/s
    if "floor, 2 workers" in by: out["ratio_2_workers"] = by["server, 2 workers"]["rps"] / by["floor, 2 workers"]["rps"]
    return out


@contextlib.contextmanager
def _environ(env: dict):
    """`env` set in os.environ for the duration."""
    old = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try: yield
    finally:
        for k, v in old.items():
            if v is None: os.environ.pop(k, None)
            else: os.environ[k] = v


def run(repeat: int = 3, quick: bool = False) -> dict:
    """Measure floor, server (1 and, unless quick, 2 workers) under wrk, the raw model, then fuzz the server."""
    if shutil.which("wrk") is None: raise RuntimeError("wrk not found: run tools/install-debian.sh (make bench does)")
    repeat = 1 if quick else repeat
    warm, secs = (1.0, 3.0) if quick else (3.0, 10.0)
    worker_counts = (1,) if quick else (1, 2)
    with adult_project() as root, tempfile.TemporaryDirectory(prefix="mlops_nb_wrk_") as tmp, \
            _environ(env := {"WANDB_MODE": "disabled", "WANDB_SILENT": "true", "MLOPS_NB_ROOT": str(root)}):
        t0 = time.perf_counter()
        bundle_dir, record, what = train_model(root)
        train_s = time.perf_counter() - t0
        body = json.dumps(record, separators=(",", ":"))
        script = Path(tmp)/"predict.lua"
        script.write_text(LUA % body)
        cases = _cases(bundle_dir, root, env, worker_counts)
        try:
            answers = {c: check_answer(srv.start(), body.encode(), floor) for c, (srv, _, floor) in cases.items()}
            runs, raw = _measure(cases, script, repeat, warm, secs,
                                 lambda: raw_model_rows_per_s(bundle_dir, record, 1.0 if quick else 3.0))
            batching = {c: json.loads(http_get(srv.url + "/model")[1]).get("batching")    # the server's micro-batches
                        for c, (srv, _, floor) in cases.items() if not floor}
            fuzzed = fuzz(cases["server, 1 worker"][0].url, budget=600 if quick else 5000)
            alive = all(srv.alive() for srv, _, _ in cases.values())
        finally:
            for srv, _, _ in cases.values(): srv.stop()
    rows = _rows(cases, runs, raw)
    settings = {"uvicorn": uvicorn_settings(), "workers": list(worker_counts), "host": "127.0.0.1 (loopback)",
                "wrk": {"threads": WRK_THREADS, "connections": CONNECTIONS, "duration_s": secs, "warmup_s": warm,
                        "timeout_s": 5},
                "floor": "benchmarks/serve_floor.py on uvicorn.run(..., **mlops_nb.launch.UVICORN) as serve runs",
                "server": "mlops-nb serve --bundle <model>, prediction log on (default)",
                "model": f"{what} ({raw[0]['trees']} trees)", "train_s": round(train_s, 1), "request_body": record}
    return {"rows": rows, "quick": quick, **_summary(rows),
            "schemathesis_cases": fuzzed["cases"], "schemathesis_5xx": len(fuzzed["server_errors"]),
            "servers_alive_after": alive, "settings": settings, "answers": answers, "runs": runs, "raw_model": raw,
            "batching": batching,                                # per server case, from GET /model (one worker's)
            "schemathesis": fuzzed}
