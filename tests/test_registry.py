"""Registry and promotion: versions, verification, path traversal, compare-and-swap, concurrent writers, kill -9, the rule, the CLI."""
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from sample_data import REPO, SMALL_MODEL, evaluated_run, make_table, wandb_summary

from mlops_nb.artifacts import ArtifactDir, ParamError
from mlops_nb.metrics import objective_score
from mlops_nb.model import ModelBundle, save_bundle
from mlops_nb.promote import promote, rollback, stored_predictions
from mlops_nb.registry import (RegistryConflict, RegistryError, aliases, audit_log, check_version, load_model,
                               register, resolve, set_alias, verify, versions)
from mlops_nb.cli import main

PY = sys.executable
NAME = "binary"   # default_name of the generated data/binary.csv
BAD = ["../x", "a/b", "..", "x/../../y", "/etc/passwd", ""]


def _weaken(run: Path, rounds: int = 1):
    """The run's evaluated model cut to its first `rounds` trees; its stored predictions and log loss recomputed from it.
    The gate verdict is the full model's (kept): this stands for a model that passed its gate yet is clearly worse."""
    ev = ArtifactDir(run/"evaluate")
    b = ModelBundle.load(run/"evaluate"/"model")
    bst = b.booster[0:rounds]
    bst.set_attr(best_iteration=str(rounds - 1))
    weak = ModelBundle(bst, b.spec, b.threshold, b.meta, b.extras)
    shutil.rmtree(run/"evaluate"/"model")
    save_bundle(ev, weak)
    test = ArtifactDir(run/"preprocess").read_parquet("test.parquet")
    pred = weak.predict(test)
    pf = ev.read_parquet("predictions.parquet")
    pf["probability"], pf["decision"] = pred, weak.decide(pred)
    ev.write_parquet("predictions.parquet", pf)
    y = np.array([weak.classes.index(v) for v in pf[weak.spec.target]])
    ev.write_json("metrics.json", {**ev.read_json("metrics.json"), "log_loss": objective_score("binary", y, pred)})


def _renamed_run(root: Path) -> Path:
    """An evaluated run of the binary table with its column `color` called `colour`: another schema."""
    from mlops_nb.evaluate import run_evaluate
    from mlops_nb.features import run_features
    from mlops_nb.preprocess import run_preprocess
    from mlops_nb.train import run_train
    from mlops_nb.tune import run_tune
    make_table("binary", n=600).rename(columns={"color": "colour"}).to_csv(root/"data"/"renamed.csv", index=False)
    run_preprocess(run_id="r1", data=str(root/"data"/"renamed.csv"), target="target", test_data="", wandb_mode="disabled")
    run_features(run_id="r1", engineered={}, wandb_mode="disabled")
    run_train(run_id="r1", wandb_mode="disabled", **SMALL_MODEL["train"])
    run_tune(run_id="r1", wandb_mode="disabled", **SMALL_MODEL["tune"])
    return run_evaluate(run_id="r1", wandb_mode="disabled", sensitive=[], **SMALL_MODEL["evaluate"]).run_dir


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Evaluated runs built once: two binary tables (600 and 800 rows: other test splits), a multiclass one, a weakened copy,
    a copy re-evaluated with a gate it cannot pass."""
    from mlops_nb.evaluate import run_evaluate
    root = tmp_path_factory.mktemp("proj")
    (root/"data").mkdir()
    with pytest.MonkeyPatch.context() as mp:
        for k, v in dict(MLOPS_NB_ROOT=str(root), MLOPS_NB_NBS=str(REPO/"nbs"), WANDB_MODE="disabled", WANDB_SILENT="true",
                         WANDB_DIR=str(root)).items(): mp.setenv(k, v)
        mp.delenv("WANDB_API_KEY", raising=False)
        mp.delenv("MLOPS_NB_REGISTRY", raising=False)
        out = {"b1": evaluated_run("b1", kind="binary", n=600)}
        for k in ("weak", "strict"): shutil.copytree(out["b1"], root/"reports"/"runs"/k); out[k] = root/"reports"/"runs"/k
        _weaken(out["weak"])
        run_evaluate(run_id="strict", wandb_mode="disabled", sensitive=[], gate={"roc_auc": [">=", 0.9999]},
                     **SMALL_MODEL["evaluate"])      # before b2 rewrites data/binary.csv
        out["b2"] = evaluated_run("b2", kind="binary", n=800)
        out["r1"] = _renamed_run(root)
        out["root"] = root
        yield out


@pytest.fixture
def env(runs, monkeypatch, tmp_path):
    """The runs' project as MLOPS_NB_ROOT, W&B disabled, and an empty registry folder."""
    monkeypatch.setenv("MLOPS_NB_ROOT", str(runs["root"]))
    monkeypatch.setenv("WANDB_MODE", "disabled")
    monkeypatch.delenv("MLOPS_NB_REGISTRY", raising=False)
    return tmp_path/"models"


def _subenv(runs) -> dict:
    return {**os.environ, "MLOPS_NB_ROOT": str(runs["root"]), "WANDB_MODE": "disabled", "PYTHONPATH": str(REPO)}


# --- versions, loading, verification ---------------------------------------------------------------------------------

def test_register_versions_monotonic(runs, env):
    infos = [register(runs["b1"], root=env) for _ in range(3)]
    assert [i["version"] for i in infos] == [1, 2, 3] and infos[0]["name"] == NAME and infos[0]["gate_passed"]
    assert aliases(NAME, env) == {"staging": 3}
    shutil.rmtree(env/NAME/"3")                                   # a deleted version's number is not reused
    assert register(runs["b1"], root=env)["version"] == 4
    m = load_model(NAME, "staging", env)
    assert (m.version, m.bundle.task, m.info["run_id"]) == (4, "binary", "b1")
    lin = m.read_json("lineage.json")
    assert lin["run_id"] == "b1" and lin["data"] and "git" in lin
    assert m.read_parquet("evaluation/test.parquet").shape[0] == m.info["test_rows"]
    y, p = stored_predictions(m)
    np.testing.assert_allclose(p, m.bundle.predict(m.read_parquet("evaluation/test.parquet")), atol=1e-6)
    assert [e["decision"] for e in audit_log(NAME, env)] == ["registered"] * 4
    assert verify(root=env) == []


@pytest.mark.parametrize("how,msg", [
    ("tamper-model", "model.ubj does not match its sha256"), ("tamper-gate", "gate.json does not match its sha256"),
    ("missing", "test.parquet is listed in the manifest but missing"), ("unlisted", "extra.json is not listed"),
    ("unlisted-top", "notes.txt is not listed"), ("manifest-escape", "not a plain relative path")])
def test_tampered_missing_unlisted_refused(runs, env, how, msg):
    register(runs["b1"], root=env); register(runs["b1"], root=env)
    d = env/NAME/"2"
    if how == "tamper-model": b = bytearray((d/"model"/"model.ubj").read_bytes()); b[len(b)//2] ^= 1; (d/"model"/"model.ubj").write_bytes(bytes(b))
    if how == "tamper-gate": (d/"evaluation"/"gate.json").write_text(json.dumps({"passed": True}))
    if how == "missing": (d/"evaluation"/"test.parquet").unlink()
    if how == "unlisted": (d/"model"/"extra.json").write_text("{}")
    if how == "unlisted-top": (d/"notes.txt").write_text("x")
    if how == "manifest-escape":
        m = json.loads((d/"manifest.json").read_text()); m["../1/version.json"] = m["version.json"]
        (d/"manifest.json").write_text(json.dumps(m))
    with pytest.raises(RegistryError, match=msg): load_model(NAME, 2, env)
    with pytest.raises(RegistryError, match=msg): load_model(NAME, "staging", env)
    problems = verify(NAME, root=env)
    assert any(msg.split(" is ")[0] in p or msg in p for p in problems) and any("alias 'staging'" in p for p in problems)
    assert verify(NAME, 1, env) == [] and load_model(NAME, 1, env).version == 1
    assert main(["registry", "verify", NAME, "--registry", str(env)]) == 1
    with pytest.raises(RegistryError): set_alias(NAME, "production", 2, root=env)   # an alias never moves onto it
    assert "production" not in aliases(NAME, env)


def test_path_traversal_refused(runs, env, tmp_path):
    register(runs["b1"], root=env)
    set_alias(NAME, "production", 1, root=env)
    for bad in BAD:
        calls = [lambda: load_model(bad, 1, env), lambda: promote(bad, 1, root=env), lambda: aliases(bad, env),
                 lambda: set_alias(bad, "production", 1, root=env), lambda: verify(bad, root=env),
                 lambda: load_model(NAME, bad, env), lambda: resolve(NAME, bad, env), lambda: verify(NAME, bad, env),
                 lambda: set_alias(NAME, bad, 1, root=env), lambda: set_alias(NAME, "production", bad, root=env),
                 lambda: promote(NAME, 1, alias=bad, root=env), lambda: promote(NAME, bad, root=env),
                 lambda: rollback(NAME, to=bad, root=env), lambda: rollback(NAME, alias=bad, root=env)]
        if bad: calls.append(lambda: register(runs["b1"], name=bad, root=env))   # name="" means the default name
        for call in calls:
            with pytest.raises(ParamError): call()
        assert main(["registry", "show", NAME, bad, "--registry", str(env)]) == 2
        assert main(["registry", "verify", bad, "--registry", str(env)]) == 2
    assert sorted(p.name for p in env.iterdir()) == [NAME] and not (tmp_path/"x").exists() and not (env.parent/"y").exists()
    assert [v["version"] for v in versions(NAME, env)] == [1]


def test_compare_and_swap(runs, env):
    register(runs["b1"], root=env); register(runs["b1"], root=env)
    set_alias(NAME, "production", 1, expected=None, root=env)
    n = len(audit_log(NAME, env))
    with pytest.raises(RegistryConflict, match="points at 1, not None"): set_alias(NAME, "production", 2, expected=None, root=env)
    with pytest.raises(RegistryConflict): set_alias(NAME, "production", 2, expected=2, root=env)
    assert aliases(NAME, env)["production"] == 1 and len(audit_log(NAME, env)) == n
    e = set_alias(NAME, "production", 2, expected=1, who="ops", why="manual", root=env)
    assert (e["from"], e["to"], e["who"].startswith("ops pid "), e["why"]) == (1, 2, True, "manual")


# --- concurrency and crashes -------------------------------------------------------------------------------------------

SPAWNER = r"""
import json, os, sys, traceback
from mlops_nb.registry import register
from mlops_nb.promote import promote
import mlops_nb.model, mlops_nb.publish, pandas, pyarrow.parquet, xgboost   # imported once; each worker is a fork

def work(out, root, run, name, n, mode="register"):
    with open(out, "w", buffering=1) as f:
        for i in range(n):
            if mode == "register":    # register a version, then promote it
                v = register(run, name=name, root=root)["version"]
                f.write(json.dumps({"registered": v}) + "\n")
            else: v = (1, 2)[i % 2]   # promote only: production moves between versions 1 and 2
            d = promote(name, v, root=root, n_bootstrap=50)
            f.write(json.dumps({"promote": v, "decision": d["decision"]}) + "\n")

print("ready", flush=True)
for line in sys.stdin:
    cmd = json.loads(line)
    if cmd["op"] == "start":
        pid = os.fork()
        if pid == 0:
            code = 0
            try: work(*cmd["args"])
            except BaseException: traceback.print_exc(); code = 1
            os._exit(code)
        print(json.dumps({"pid": pid}), flush=True)
    else:
        _, status = os.waitpid(cmd["pid"], 0)
        print(json.dumps({"status": status}), flush=True)
"""


class Spawner:
    """A process that imports the registry once and forks workers on request, so that each worker starts at once."""
    def __init__(self, runs):
        self.p = subprocess.Popen([PY, "-c", SPAWNER], env={**_subenv(runs), "OMP_NUM_THREADS": "1"}, text=True,
                                  stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        assert self.p.stdout.readline().strip() == "ready"

    def _ask(self, **cmd) -> dict:
        self.p.stdin.write(json.dumps(cmd) + "\n"); self.p.stdin.flush()
        return json.loads(self.p.stdout.readline())

    def start(self, *args) -> int: return self._ask(op="start", args=[str(a) for a in args[:4]] + [int(args[4]), *args[5:]])["pid"]
    def wait(self, pid: int) -> int: return self._ask(op="wait", pid=pid)["status"]
    def close(self):
        self.p.stdin.close(); self.p.wait(timeout=60)


def _chain_ok(log: list, alias: str) -> bool:
    """Each applied change of `alias` starts where the previous one ended."""
    ch = [e for e in log if e["alias"] == alias and e["changed"]]
    return all(a["to"] == b["from"] for a, b in zip(ch, ch[1:])) and (not ch or ch[0]["from"] is None)


def test_concurrent_register_and_promote(runs, env, tmp_path):
    n_proc, n_each = 8, 2
    sp = Spawner(runs)
    try:
        pids = [sp.start(tmp_path/f"w{i}.jsonl", env, runs["b1"], NAME, n_each) for i in range(n_proc)]
        assert [sp.wait(pid) for pid in pids] == [0] * n_proc
    finally: sp.close()
    lines = [json.loads(l) for i in range(n_proc) for l in (tmp_path/f"w{i}.jsonl").read_text().splitlines()]
    got = sorted(l["registered"] for l in lines if "registered" in l)
    assert got == list(range(1, n_proc * n_each + 1))                       # no version lost, none handed out twice
    assert [v["version"] for v in versions(NAME, env)] == got
    log = audit_log(NAME, env)
    assert sum(e["decision"] == "registered" for e in log) == n_proc * n_each
    promoted = [l for l in lines if l.get("decision") == "promoted"]
    assert len(promoted) == sum(e["decision"] == "promoted" for e in log) and promoted   # every change is in the log
    assert _chain_ok(log, "staging") and _chain_ok(log, "production")
    al = aliases(NAME, env)
    assert al["staging"] == [e for e in log if e["alias"] == "staging"][-1]["to"]
    assert al["production"] == [e for e in log if e["alias"] == "production" and e["changed"]][-1]["to"]
    assert verify(root=env) == [] and not list((env/NAME).glob(".tmp-*"))


def _visible_state_ok(env: Path, checked: set) -> dict:
    """Without taking the lock (as a reader): every visible version verifies, every alias points at one, the log parses."""
    mdir = env/NAME
    vs = sorted(int(p.name) for p in mdir.iterdir() if p.name.isdigit())
    for v in set(vs) - checked: check_version(mdir/str(v), (NAME, v))   # versions never change: check each new one once
    checked.update(vs)
    for a, v in aliases(NAME, env).items(): assert v in vs, (a, v, vs)
    log = audit_log(NAME, env)
    raw = (mdir/"audit.jsonl").read_bytes() if (mdir/"audit.jsonl").exists() else b""
    want = {e["alias"]: e["to"] for e in log if e["changed"]}
    return {"tmp": bool(list(mdir.glob(".tmp-*")) or list(mdir.glob(".*.tmp"))), "torn": bool(raw) and not raw.endswith(b"\n"),
            "pending": any(aliases(NAME, env).get(a) != v for a, v in want.items())}


def test_kill9_register_and_promote(runs, env, tmp_path):
    """Workers killed after a seeded random delay, alternately while registering+promoting and while only promoting."""
    rng, n_iter = random.Random(8), 20
    register(runs["b1"], root=env); register(runs["b1"], root=env)
    seen, checked = {"tmp": 0, "torn": 0, "pending": 0, "register": 0, "promote": 0}, set()
    sp = Spawner(runs)
    try:
        for it in range(n_iter):
            out, mode = tmp_path/f"k{it}.jsonl", ("register", "promote")[it % 2]
            pid = sp.start(out, env, runs["b1"], NAME, 1000, mode)
            time.sleep(rng.uniform(0.0, 0.4))
            os.kill(pid, signal.SIGKILL)
            assert sp.wait(pid) == signal.SIGKILL                     # killed, not finished
            done = len(out.read_text().splitlines()) if out.exists() else 0
            seen["register" if mode == "register" and done % 2 == 0 else "promote"] += 1
            state = _visible_state_ok(env, checked)                   # raises if a partial version or a dangling alias is visible
            for k in ("tmp", "torn", "pending"): seen[k] += state[k]
            v = register(runs["b1"], root=env)["version"]             # the next operation works, and cleans up
            assert promote(NAME, v, root=env, n_bootstrap=50)["decision"] == "promoted"
            assert not list((env/NAME).glob(".tmp-*")) and (env/NAME/"audit.jsonl").read_bytes().endswith(b"\n")
    finally: sp.close()
    assert verify(root=env) == []
    log = audit_log(NAME, env)
    assert _chain_ok(log, "staging") and _chain_ok(log, "production")
    print(f"kill -9: {n_iter} iterations: killed while registering {seen['register']}x, while promoting {seen['promote']}x; "
          f"left a temp folder {seen['tmp']}x, a torn audit line {seen['torn']}x, an audited alias change not yet applied "
          f"{seen['pending']}x; every alias on a verified version, {len(log)} audit entries")


# --- the promotion rule ------------------------------------------------------------------------------------------------

def test_promotion_rule(runs, env):
    v_strict = register(runs["strict"], name=NAME, root=env)["version"]
    d = promote(NAME, v_strict, root=env)
    assert d["decision"] == "refused" and "gate" in d["reasons"][0] and "roc_auc" in d["reasons"][0]
    assert "production" not in aliases(NAME, env) and audit_log(NAME, env)[-1]["decision"] == "refused"
    v1 = register(runs["b1"], root=env)["version"]
    assert promote(NAME, v1, root=env)["decision"] == "promoted"              # the first model
    v_weak = register(runs["weak"], name=NAME, root=env)["version"]
    d = promote(NAME, v_weak, root=env)
    n = d["numbers"]
    assert d["decision"] == "refused" and n["method"].startswith("stored predictions") and n["diff_ci"][0] > 0, d
    assert n["new"] > n["production"] and "significantly worse" in d["reasons"][0]
    e = audit_log(NAME, env)[-1]
    assert (e["decision"], e["to"], e["changed"], e["numbers"]["diff_ci"]) == ("refused", v_weak, False, n["diff_ci"])
    v_same = register(runs["b1"], root=env)["version"]
    d = promote(NAME, v_same, root=env)
    assert d["decision"] == "promoted" and d["numbers"]["diff"] == 0 and aliases(NAME, env)["production"] == v_same
    assert main(["registry", "promote", NAME, str(v_weak), "--registry", str(env), "--n-bootstrap", "200"]) == 1


def test_other_test_split_rescored(runs, env):
    v1 = register(runs["b1"], root=env)["version"]
    promote(NAME, v1, root=env)
    v2 = register(runs["b2"], root=env)["version"]
    assert versions(NAME, env)[0]["test_sha256"] != versions(NAME, env)[1]["test_sha256"]
    d = promote(NAME, v2, root=env)
    n = d["numbers"]
    assert n["method"].startswith("production re-scored") and n["production_version"] == v1
    new, prod = load_model(NAME, v2, env), load_model(NAME, v1, env)
    y, _ = stored_predictions(new)
    assert n["rows"] == len(y)
    expect = objective_score("binary", y, prod.bundle.predict(new.read_parquet("evaluation/test.parquet")))
    assert abs(n["production"] - expect) < 1e-9                              # production really scored the new rows
    assert d["decision"] in ("promoted", "refused") and audit_log(NAME, env)[-1]["numbers"]["method"] == n["method"]


def test_other_schema_refused_unless_forced(runs, env):
    v1 = register(runs["b1"], root=env)["version"]
    promote(NAME, v1, root=env)
    vr = register(runs["r1"], name=NAME, root=env)["version"]
    assert load_model(NAME, vr, env).info["gate_passed"]
    d = promote(NAME, vr, root=env)
    assert d["decision"] == "refused" and "lack column(s) color" in d["reasons"][0], d
    assert aliases(NAME, env)["production"] == v1 and audit_log(NAME, env)[-1]["decision"] == "refused"
    assert main(["registry", "promote", NAME, str(vr), "--registry", str(env)]) == 1
    assert main(["registry", "promote", NAME, str(vr), "--force", "--reason", "new schema", "--registry", str(env)]) == 0
    e = audit_log(NAME, env)[-1]
    assert (e["decision"], e["forced"], e["from"], e["to"]) == ("forced", True, v1, vr) and e["why"].startswith("new schema")
    assert aliases(NAME, env)["production"] == vr
    r = rollback(NAME, root=env)
    assert (r["from"], r["to"], aliases(NAME, env)["production"]) == (vr, v1, v1)
    assert audit_log(NAME, env)[-1]["decision"] == "rollback"
    with pytest.raises(ParamError, match="no earlier version"):   # rollbacks walk back: version 1 has nothing before it
        rollback(NAME, root=env)


# --- CLI and W&B -------------------------------------------------------------------------------------------------------

def test_cli_exit_codes(runs, env, capsys):
    register(runs["b1"], root=env); register(runs["b1"], root=env)
    reg = ["--registry", str(env)]
    assert main(["registry", "list", *reg]) == 0 and NAME in capsys.readouterr().out
    assert main(["registry", "list", "--json", *reg]) == 0 and json.loads(capsys.readouterr().out)[0]["versions"] == 2
    assert main(["registry", "show", NAME, *reg]) == 0 and "registered staging: 1 -> 2" in capsys.readouterr().out
    assert main(["registry", "show", NAME, "staging", "--json", *reg]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["version"]["version"] == 2 and doc["aliases"] == ["staging"] and doc["gate"]["passed"] and "log_loss" in doc["metrics"]
    assert doc["lineage"]["run_id"] == "b1"
    assert main(["registry", "promote", NAME, "1", *reg, "--n-bootstrap", "100"]) == 0
    assert main(["registry", "promote", NAME, "staging", *reg, "--n-bootstrap", "100"]) == 0
    assert main(["registry", "rollback", NAME, *reg]) == 0 and aliases(NAME, env)["production"] == 1
    assert main(["registry", "rollback", NAME, "--to", "2", *reg]) == 0 and aliases(NAME, env)["production"] == 2
    assert main(["registry", "verify", *reg]) == 0 and main(["registry", "verify", NAME, "production", *reg]) == 0
    assert main(["registry", "show", "nope", *reg]) == 2 and main(["registry", "promote", NAME, "9", *reg]) == 2
    assert main(["registry", "rollback", NAME, "--alias", "canary", *reg]) == 2
    for argv in (["registry"], ["registry", "promote", NAME], ["registry", "frobnicate"], ["registry", "list", "--bogus"]):
        r = subprocess.run([PY, "-m", "mlops_nb", *argv], env=_subenv(runs), capture_output=True, text=True, timeout=120)
        assert r.returncode == 2, (argv, r.stderr)
    (env/NAME/"2"/"model_card.md").write_text("edited")
    r = subprocess.run([PY, "-m", "mlops_nb", "registry", "verify", *reg], env=_subenv(runs), capture_output=True, text=True, timeout=120)
    assert r.returncode == 1 and "model_card.md does not match its sha256" in r.stdout
    r = subprocess.run([PY, "-m", "mlops_nb", "registry", "show", NAME, "2", *reg], env=_subenv(runs), capture_output=True, text=True, timeout=120)
    assert r.returncode == 1 and "does not match its sha256" in r.stderr and "Traceback" not in r.stderr


def _wandb_artifacts(run_dir: Path) -> list:
    """(name, type, aliases, digest) of the artifacts in an offline W&B run, read from its .wandb log with W&B's protobufs."""
    import struct
    from wandb.proto import wandb_internal_pb2 as pb
    out = []
    for f in run_dir.glob("*.wandb"):
        data, pos, buf = f.read_bytes(), 7, b""              # 7-byte header, then 32 KiB blocks of (crc, length, type) chunks
        while pos + 7 <= len(data):
            if 32768 - pos % 32768 < 7: pos += 32768 - pos % 32768; continue
            _, n, t = struct.unpack("<IHB", data[pos:pos + 7]); buf += data[pos + 7:pos + 7 + n]; pos += 7 + n
            if t in (1, 4):                                  # a full record, or the last chunk of one
                r = pb.Record(); r.ParseFromString(buf); buf = b""
                if r.WhichOneof("record_type") == "artifact":
                    out.append((r.artifact.name, r.artifact.type, sorted(r.artifact.aliases), r.artifact.digest))
    return out


def test_wandb_model_artifact_with_alias(runs, env, monkeypatch):
    """Offline W&B: register and promote each log the version as a model artifact carrying the alias (same digest)."""
    monkeypatch.setenv("WANDB_MODE", "offline"); monkeypatch.setenv("WANDB_SILENT", "true")
    register(runs["b1"], root=env, wandb_mode="offline")
    d = promote(NAME, 1, root=env, wandb_mode="offline")
    assert d["decision"] == "promoted" and d["wandb"]["aliases"] == ["production"] and d["wandb"]["artifact"] == f"registry-{NAME}"
    s = wandb_summary(str(d["wandb"]["dir"]))
    assert s["summary"]["decision"] == "promoted" and s["summary"]["version"] == 1 and s["config"]["aliases"] == ["production"], s
    arts = sorted(a for w in (runs["b1"]/"wandb").glob("offline-run-*") for a in _wandb_artifacts(w))
    assert [(a[0], a[1], a[2]) for a in arts] == [(f"registry-{NAME}", "model", ["latest", "production"]),
                                                 (f"registry-{NAME}", "model", ["latest", "staging"])], arts
    assert arts[0][3] == arts[1][3]                              # the same files: the same digest
