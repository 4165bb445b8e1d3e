"""Real server subprocesses for tests and benchmarks: a free loopback port, start, wait until ready, always stop."""
from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
MLOPS_NB = str(Path(sys.executable).parent/"mlops-nb")


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http_get(url: str, timeout: float = 5.0) -> tuple[int, bytes]:
    """Status and body of a GET (4xx/5xx returned, not raised)."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r: return r.status, r.read()
    except urllib.error.HTTPError as e: return e.code, e.read()


class Server:
    """A server subprocess on a free port of 127.0.0.1: `argv` may hold "{port}"; stdout+stderr go to a log file."""

    def __init__(self, argv: list[str],          # command line; "{port}" is replaced by the chosen port
                 ready_path: str = "/health",    # GET path that answers 200 once the server is up
                 env: dict | None = None,        # extra environment variables
                 cwd: str | Path | None = None,  # working directory
                 timeout: float = 90.0):         # seconds to wait for readiness
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.argv = [a.replace("{port}", str(self.port)) for a in argv]
        self.ready_path, self.timeout = ready_path, timeout
        self.env = {**os.environ, **(env or {})}
        self.cwd = cwd
        self.log = Path(tempfile.mkstemp(prefix="mlops_nb_server_", suffix=".log")[1])
        self.proc: subprocess.Popen | None = None

    def start(self) -> "Server":
        """Start the process (own process group) and wait until `ready_path` answers 200; raise with the log if not."""
        with open(self.log, "wb") as out:
            self.proc = subprocess.Popen(self.argv, stdout=out, stderr=subprocess.STDOUT, env=self.env, cwd=self.cwd,
                                         start_new_session=True)
        deadline = time.monotonic() + self.timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                log = self.tail()
                self.stop()
                raise RuntimeError(f"server exited with {self.proc.returncode}: {self.argv}\n{log}")
            try:
                if http_get(self.url + self.ready_path, timeout=2)[0] == 200: return self
            except OSError: pass
            time.sleep(0.1)
        log = self.tail()
        self.stop()
        raise RuntimeError(f"server not ready after {self.timeout:.0f}s: {self.argv}\n{log}")

    def alive(self) -> bool:
        """Whether the process is still running."""
        return self.proc is not None and self.proc.poll() is None

    def tail(self, n: int = 4000) -> str:
        """The last `n` characters of the server's output."""
        try: return self.log.read_text(errors="replace")[-n:]
        except OSError: return ""

    def stop(self, grace: float = 10.0) -> int | None:
        """SIGTERM the process group, SIGKILL it after `grace` seconds; remove the log; the exit code."""
        if self.proc is None:
            self.log.unlink(missing_ok=True)
            return None
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError): os.killpg(self.proc.pid, signal.SIGTERM)
            try: self.proc.wait(grace)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError): os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(5)
        with contextlib.suppress(ProcessLookupError):   # workers left behind by a dead parent
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.log.unlink(missing_ok=True)
        return self.proc.returncode

    def __enter__(self): return self.start()
    def __exit__(self, *exc): self.stop()


def serve_argv(*args: str) -> list[str]:
    """`mlops-nb serve --host 127.0.0.1 --port {port}` plus `args`."""
    return [MLOPS_NB, "serve", "--host", "127.0.0.1", "--port", "{port}", *args]


class _Fuzzer:
    """Runs schemathesis cases of one operation and mode at a time over one HTTP session, and tallies them."""

    def __init__(self, base_url: str, session, headers: dict | None, real: dict):
        self.base_url, self.session, self.headers, self.real = base_url, session, headers, real
        self.counts, self.statuses, self.errors, self.seconds, self.call_seconds = {}, {}, [], {}, 0.0

    def drive(self, op, mode: str, n: int, seed: int, fixed: bool = False):
        """Up to `n` cases of `op` in `mode`; `fixed`: the path's name/version are the served model's."""
        from hypothesis import HealthCheck, Phase, given, seed as hseed, settings
        from hypothesis.errors import Unsatisfiable
        from schemathesis import GenerationMode
        names = {p.name for p in op.path_parameters} if fixed else set()
        path = {k: v for k, v in self.real.items() if k in names} or None
        key = f"{op.label} {mode}{' (served model)' if path else ''}"
        self.counts.setdefault(key, 0)
        t0 = time.perf_counter()

        @hseed(seed)
        @settings(max_examples=n, deadline=None, database=None, phases=[Phase.explicit, Phase.generate],
                  suppress_health_check=list(HealthCheck))
        @given(case=op.as_strategy(generation_mode=GenerationMode(mode), path_parameters=path))
        def one(case):
            t1 = time.perf_counter()
            r = case.call(base_url=self.base_url, session=self.session, headers=self.headers, timeout=30)
            self.call_seconds += time.perf_counter() - t1
            self.counts[key] += 1
            self.statuses[r.status_code] = self.statuses.get(r.status_code, 0) + 1
            if r.status_code >= 500 and len(self.errors) < 50:
                self.errors.append({"case": key, "status": r.status_code, "path": case.formatted_path,
                                    "query": case.query, "body": repr(case.body)[:500], "answer": r.text[:500]})
        try: one()
        except Unsatisfiable: pass                       # e.g. negative cases of an operation without inputs
        self.seconds[key] = self.seconds.get(key, 0.0) + time.perf_counter() - t0

    def result(self) -> dict:
        """Cases in all, per operation and mode, answers by status, time (all, and in HTTP calls), every 5xx."""
        return {"cases": sum(self.counts.values()), "per_operation": self.counts,
                "seconds": {k: round(v, 2) for k, v in self.seconds.items()}, "call_seconds": round(self.call_seconds, 2),
                "total_seconds": round(sum(self.seconds.values()), 2),
                "statuses": {str(k): v for k, v in sorted(self.statuses.items())}, "server_errors": self.errors}


def fuzz(base_url: str,            # the server, e.g. http://127.0.0.1:8123
         budget: int = 1200,       # generated cases to send at least, over all operations
         seed: int = 0,            # hypothesis seed (runs are reproducible)
         headers: dict | None = None,  # headers sent with every case (e.g. an API key)
         ) -> dict:
    """Schemathesis cases, positive and negative, from the server's own /openapi.json: counts and every 5xx answer.

    Operations without a request body get up to 20 cases per mode (fewer when hypothesis runs out of distinct
    inputs); those with one share the rest of `budget`, two thirds positive, in rounds with a new seed until it is met.
    Path parameters `name` and `version` are generated for the 20-case runs and otherwise set to the served model's
    (from GET /model), so that most cases of `/v2/models/{name}/...` reach the model rather than a 404.
    """
    import requests
    import schemathesis
    schema = schemathesis.openapi.from_url(base_url + "/openapi.json")
    ops = [r.ok() for r in schema.get_all_operations()]
    with_body = [op for op in ops if op.method.upper() in ("POST", "PUT", "PATCH")]
    status, text = http_get(base_url + "/model")
    model = json.loads(text) if status == 200 else {}
    real = {"name": str(model.get("name", "model")), "version": str(model.get("version", "1"))}
    with requests.Session() as session:
        f = _Fuzzer(base_url, session, headers, real)
        for op in ops:
            for mode in ("positive", "negative"):
                f.drive(op, mode, 20, seed)
                if op not in with_body and op.path_parameters: f.drive(op, mode, 20, seed, fixed=True)
        for rnd in range(4):
            left = budget - sum(f.counts.values())
            if left <= 0 or not with_body: break
            per = -(-left // len(with_body))
            for op in with_body:
                f.drive(op, "positive", max(1, per * 2 // 3), seed + rnd, fixed=True)
                f.drive(op, "negative", max(1, per - per * 2 // 3), seed + rnd, fixed=True)
    return f.result()


_PROJECTS: dict = {}                   # run id -> (root, run folder): built once per test process


@contextlib.contextmanager
def served_project(run_id: str = "serve"):
    """A project with the Adult sample and an evaluated run (`sample_data.evaluated_run`), built once per process
    in a temporary folder (removed at exit) and shared by the test modules; its environment is set meanwhile."""
    import atexit
    import shutil
    from sample_data import evaluated_run, write_adult_sample
    if run_id not in _PROJECTS:
        base = Path(tempfile.mkdtemp(prefix="mlops_nb_served_"))
        atexit.register(shutil.rmtree, base, ignore_errors=True)
        (base/"proj").mkdir()
        write_adult_sample(base/"proj")
        _PROJECTS[run_id] = (base/"proj", None)
    root, run_dir = _PROJECTS[run_id]
    env = {"MLOPS_NB_ROOT": str(root), "MLOPS_NB_NBS": str(REPO/"nbs"), "WANDB_MODE": "disabled",
           "WANDB_SILENT": "true", "WANDB_DIR": str(root)}
    old = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        if run_dir is None:
            run_dir = evaluated_run(run_id)
            _PROJECTS[run_id] = (root, run_dir)
        yield root, run_dir
    finally:
        for k, v in old.items():
            if v is None: os.environ.pop(k, None)
            else: os.environ[k] = v


def raw_records(run_dir: Path, n: int = 50, complete: bool = False) -> list[dict]:
    """The first `n` raw test rows of a run (without the target) as JSON records; `complete`: rows without nulls only."""
    import pandas as pd
    from mlops_nb.model import load_run_bundle
    spec = load_run_bundle(run_dir).spec
    df = pd.read_parquet(Path(run_dir)/"preprocess"/"test.parquet")[spec.source_columns]
    if complete: df = df.dropna()
    return json.loads(df.head(n).to_json(orient="records"))
