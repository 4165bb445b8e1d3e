"""The deploy stage: register, promote through the rule (a failed gate never reaches production), the server check,
the runner's `--from deploy`, and parameters checked before anything is written."""
import json
import re
import shutil
import sys

import pytest

from mlops_nb import core, deploy, registry as reg
from mlops_nb.cli import main
from mlops_nb.deploy import run_deploy
from mlops_nb.evaluate import run_evaluate
from mlops_nb.pipeline import plan_run
from sample_data import SMALL_MODEL, evaluated_run, wandb_summary

pytestmark = pytest.mark.slow


def test_register_promote_then_refuse_a_failed_gate(project, monkeypatch):
    evaluated_run("good")
    # a server that does not start: the stage fails, nothing is promoted, deploy/ is not written, the server is gone
    failing = [sys.executable, "-c", "import sys; print('cannot load the model'); sys.exit(3)"]
    with monkeypatch.context() as mp, \
         pytest.raises(core.ArtifactError, match=r"(?s)exited with code 3 before it was ready.*cannot load the model"):
        mp.setattr(deploy, "serve_command", lambda *a: failing)
        run_deploy(run_id="good", wandb_mode="disabled")
    assert reg.aliases("adult") == {"staging": 1} and not (core.runs_dir()/"good"/"deploy").exists()

    res = run_deploy(run_id="good", serve_check=False, wandb_mode="disabled")
    m = res.metrics
    assert (m["model"], m["version"], m["promoted"], m["reason"]) == ("adult", 1, True, "")
    assert reg.aliases("adult") == {"production": 1, "staging": 1}
    doc = core.stage_dir(core.runs_dir()/"good", "deploy").read_json("deploy.json")
    assert doc["version"] == 1 and doc["decision"]["promoted"] and doc["gate"]["passed"]
    assert not doc["new"] and len(reg.versions("adult")) == 1       # the version registered above is reused, not copied
    assert doc["registry"] == str(project/"models") and doc["server"] is None
    assert core.read_summary(core.runs_dir()/"good")["metrics"]["deploy"]["version"] == 1

    # another run with the same model, test rows and gate outcome (as a cached re-run has): nothing new is registered
    shutil.copytree(core.runs_dir()/"good", core.runs_dir()/"again", ignore=shutil.ignore_patterns("deploy", "wandb"))
    res = run_deploy(run_id="again", serve_check=False, wandb_mode="disabled")
    doc = res.data["deploy"]
    assert (doc["version"], doc["new"], doc["registered"]["run_id"]) == (1, False, "good") and len(reg.versions("adult")) == 1
    assert "already registered from run good" in deploy.deploy_markdown(doc)

    # a second run whose evaluation gate failed (an absolute check it cannot pass): registered, never promoted,
    # not even with force (the run is a copy of the first one up to tune, evaluated again with that gate)
    shutil.copytree(core.runs_dir()/"good", core.runs_dir()/"bad", ignore=shutil.ignore_patterns("deploy", "wandb"))
    run_evaluate(run_id="bad", gate={"roc_auc": [">=", 0.9999]}, wandb_mode="disabled", **SMALL_MODEL["evaluate"])
    res = run_deploy(run_id="bad", force=True, serve_check=False, wandb_mode="disabled")
    m = res.metrics
    assert (m["version"], m["promoted"]) == (2, False)
    assert "force does not override a failed evaluation gate" in m["reason"]
    assert reg.aliases("adult")["production"] == 1 and reg.aliases("adult")["staging"] == 2
    assert [v["version"] for v in reg.versions("adult")] == [1, 2] and not reg.versions("adult")[1]["gate_passed"]
    doc = res.data["deploy"]
    assert not doc["gate"]["passed"] and doc["gate"]["reasons"] and doc["aliases"]["production"] == 1
    assert reg.verify("adult") == []


def test_bad_parameters_fail_before_anything_is_written(project):
    for kw, msg in [({"name": "../x"}, "model name '../x' is not valid"), ({"name": "a/b"}, "model name 'a/b' is not valid"),
                    ({"alias": "../prod"}, "alias '../prod' is not valid"), ({"alias": "2"}, "alias '2' is not valid"),
                    ({"n_requests": 0}, "n_requests must be an integer >= 1"), ({"promote": "yes"}, "promote must be true or false")]:
        with pytest.raises(core.ParamError, match=re.escape(msg)):
            run_deploy(run_id="fresh", wandb_mode="disabled", **kw)
    (project/"afile").write_text("x")
    with pytest.raises(core.ParamError, match="is not a folder"):
        run_deploy(run_id="fresh", registry="afile", wandb_mode="disabled")
    assert not core.runs_dir().exists() and not (project/"models").exists()     # no run, no registry


def test_pipeline_from_deploy_with_the_server_check(project, capsys):
    run = evaluated_run("piped", wandb_mode="disabled")
    assert plan_run(to_stage="evaluate", run_id="piped")["stages"][-1] == "evaluate"
    assert plan_run(from_stage="deploy", run_id="piped")["stages"] == ["deploy", "monitor"]
    assert main(["run", "--from", "deploy", "--to", "deploy", "--run-id", "piped", "--no-html", "-p", "n_requests", "30"]) == 0
    out = capsys.readouterr().out
    assert "[1/1] deploy ... ok" in out
    assert re.search(r"deploy: adult v1 promoted to production; server answered 33 requests, max \|diff\| 0\b", out), out
    s = core.read_summary(run)
    assert s["status"] == "ok" and s["stages"]["deploy"]["status"] == "ok"
    ad = core.stage_dir(run, "deploy")
    doc = ad.read_json("deploy.json")
    srv = doc["server"]
    assert srv["passed"] and srv["rows"] == 30 and srv["max_abs_diff"] <= 1e-6 and srv["decisions_differ"] == 0
    assert srv["invalid"]["status"] == 422 and "not_a_column" in json.dumps(srv["invalid"]["answer"])
    assert srv["v2_rows"] > 0 and any(l.startswith("mlops_nb_") for l in srv["metrics_excerpt"])
    assert {"answers.csv", "server.log", "deploy.json"} <= set(ad.manifest)
    assert reg.aliases("adult")["production"] == 1
    # the stage's W&B run (offline) holds the decision
    w = wandb_summary(ad.read_json("context.json")["wandb_dir"])
    flat = json.dumps(w)
    assert '"promoted": true' in flat and '"version": 1' in flat
