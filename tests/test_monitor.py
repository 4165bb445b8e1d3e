"""The monitor stage on the Adult sample: OK on the test split, ALERTs naming shifted columns, performance, the CLI's
exit codes, the webhook, bad inputs (the registry byte-identical after), the prediction log, the retraining plan."""
import hashlib
import http.server
import json
import threading
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from sample_data import REPO, evaluated_run, write_adult_sample

RUN = "mon"


@pytest.fixture(scope="module")
def proj(tmp_path_factory):
    """One project with one evaluated Adult run for the whole module (W&B disabled unless a test asks)."""
    mp = pytest.MonkeyPatch()
    root = tmp_path_factory.mktemp("monitor")/"proj"
    root.mkdir()
    write_adult_sample(root)
    for k, v in dict(MLOPS_NB_ROOT=str(root), MLOPS_NB_NBS=str(REPO/"nbs"), WANDB_MODE="disabled", WANDB_SILENT="true",
                     WANDB_DIR=str(root), MLOPS_NB_REGISTRY=str(root/"models")).items():
        mp.setenv(k, v)
    mp.delenv("WANDB_API_KEY", raising=False)
    mp.chdir(root)
    evaluated_run(RUN)
    yield root
    mp.undo()


@pytest.fixture(scope="module")
def test_rows(proj):
    return pd.read_parquet(proj/"reports"/"runs"/RUN/"preprocess"/"test.parquet")


def monitor(**kw):
    from mlops_nb.monitor import run_monitor
    return run_monitor(run_id=RUN, wandb_mode="disabled", **kw)


def cli(*args):
    from mlops_nb.cli import main
    return main(["monitor", *map(str, args), "--run-id", RUN, "--wandb-mode", "disabled"])


def test_test_split_ok(proj):
    res = monitor()
    doc = res.data["report"]
    assert doc["verdict"] == "OK", doc["reasons"]
    assert doc["current"]["kind"] == "test split" and doc["windows"][next(iter(doc["windows"]))]["labelled"]
    assert doc["model"]["source"] == f"run {RUN} evaluate/model"          # nothing registered: the run's bundle
    for f in ("monitor.json", "report.html", "windows.png", "context.json"): assert (res.out.path/f).is_file(), f
    assert json.loads((res.out.path/"monitor.json").read_text())["verdict"] == "OK"
    assert "<img" in (res.out.path/"report.html").read_text()


def test_age_shift_alert_cli_exit_3(proj, test_rows, tmp_path, capsys):
    p = tmp_path/"age5.csv"
    test_rows.assign(age=test_rows["age"] + 5).to_csv(p, index=False)
    assert cli(p) == 3
    out = capsys.readouterr().out
    assert out.startswith("ALERT") and "ALERT age: PSI" in out
    doc = json.loads((proj/"reports"/"runs"/RUN/"monitor"/"monitor.json").read_text())
    assert "age" in doc["alerted"] and doc["exit_code"] == 3
    assert (proj/"reports"/"runs"/RUN/"monitor"/"drift_age.png").is_file()


def test_missing_share_alert(proj, test_rows, tmp_path):
    b = test_rows.copy()
    b["hours-per-week"] = b["hours-per-week"].astype(float)
    b.loc[np.random.default_rng(0).random(len(b)) < 0.2, "hours-per-week"] = np.nan
    b.to_parquet(tmp_path/"miss.parquet")
    doc = monitor(current=str(tmp_path/"miss.parquet")).data["report"]
    assert doc["verdict"] == "ALERT" and "hours-per-week" in doc["alerted"]
    assert any("missing rate" in r and "hours-per-week" in r for r in doc["reasons"])


def test_flipped_labels_on_a_segment_alert_on_performance(proj, test_rows, tmp_path):
    b = test_rows.copy()
    seg = b["sex"] == "Female"
    b.loc[seg, "income"] = np.where(b.loc[seg, "income"] == ">50K", "<=50K", ">50K")
    b.to_csv(tmp_path/"flip.csv", index=False)
    doc = monitor(current=str(tmp_path/"flip.csv")).data["report"]
    assert doc["verdict"] == "ALERT" and not doc["alerted"]       # no feature drifted: the labels did
    assert any(r.startswith("ALERT performance: accuracy on sex=Female fell") for r in doc["reasons"]), doc["reasons"]
    assert any(r.startswith("ALERT performance: accuracy overall fell") for r in doc["reasons"]), doc["reasons"]
    w = next(iter(doc["windows"].values()))
    assert w["estimate"]["available"] and w["performance"]["comparison"]["alert"]
    assert not monitor(current=str(tmp_path/"flip.csv"), labels=False).data["report"]["reasons"]   # without labels: OK


class _Receiver(http.server.BaseHTTPRequestHandler):
    got = []

    def do_POST(self):
        self.got.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
        self.send_response(200)
        self.end_headers()

    def log_message(self, *a):
        pass


def test_webhook_receives_the_verdict(proj, test_rows, tmp_path, capsys):
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Receiver)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    try:
        p = tmp_path/"age5.parquet"
        test_rows.assign(age=test_rows["age"] + 5).to_parquet(p)
        assert cli(p, "--webhook", f"http://127.0.0.1:{srv.server_address[1]}/hook") == 3
    finally:
        srv.shutdown()
        srv.server_close()
    assert len(_Receiver.got) == 1 and _Receiver.got[0]["verdict"] == "ALERT" and "age" in _Receiver.got[0]["alerted"]
    assert "webhook: delivered" in capsys.readouterr().out
    # nobody listening any more: logged, the exit code stands
    assert cli(p, "--webhook", f"http://127.0.0.1:{srv.server_address[1]}/hook") == 3
    assert "NOT delivered" in capsys.readouterr().out


def _tree(d: Path) -> dict:
    return {str(p.relative_to(d)): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(d.rglob("*")) if p.is_file()}


def test_bad_inputs_and_the_registry_unchanged(proj, test_rows, tmp_path, capsys):
    from mlops_nb import registry
    if not registry.list_models(): registry.register(proj/"reports"/"runs"/RUN, wandb_mode="disabled")
    before = _tree(proj/"models")
    reg = ("--registry", proj/"models", "--ref", "staging")
    # missing and extra columns: a WARN naming them
    test_rows.drop(columns=["fnlwgt"]).assign(shoe_size=42).to_csv(tmp_path/"cols.csv", index=False)
    assert cli(tmp_path/"cols.csv", *reg) == 0
    out = capsys.readouterr().out
    assert out.startswith("WARN") and "missing column: fnlwgt" in out and "shoe_size" in out
    # a wrong dtype, an empty batch, no overlap with the reference, a file that is not there: exit 2 naming it
    test_rows.assign(age="old").to_csv(tmp_path/"dtype.csv", index=False)
    test_rows.iloc[:0].to_csv(tmp_path/"empty.csv", index=False)
    pd.DataFrame({"a": [1, 2], "b": ["x", "y"]}).to_csv(tmp_path/"other.csv", index=False)
    for f, msg in (("dtype.csv", "age"), ("empty.csv", "no rows"), ("other.csv", "none of the model's columns"),
                   ("absent.csv", "not found")):
        assert cli(tmp_path/f, *reg) == 2, f
        err = capsys.readouterr().err
        assert "mlops-nb monitor: error:" in err and msg in err, (f, err)
    assert cli(tmp_path/"cols.csv", "--threshold", "psi=1") == 2 and "unknown threshold" in capsys.readouterr().err
    assert cli(tmp_path/"cols.csv", "--name", "nosuch") == 2 and "no model 'nosuch'" in capsys.readouterr().err
    assert _tree(proj/"models") == before


def test_prediction_log_windows_while_written(proj, test_rows, tmp_path):
    from mlops_nb.model import load_run_bundle
    from mlops_nb.predlog import PredictionLog
    b = load_run_bundle(proj/"reports"/"runs"/RUN)
    d = tmp_path/"log"
    X = pd.concat([test_rows] * 3, ignore_index=True).drop(columns=["income"])
    pred = b.predict(X)
    t0 = pd.Timestamp("2026-12-01T00:00:00Z").timestamp()
    with PredictionLog(d, b.spec, model="adult", flush_rows=100) as lg:
        for i in range(0, len(X), 100):
            lg.append(X.iloc[i:i + 100], pred[i:i + 100], b.decide(pred[i:i + 100]), version=None, ts=t0 + i)
    open_log = PredictionLog(d, b.spec, model="adult", flush_rows=10**6, flush_seconds=3600)   # a log being written
    open_log.append(X.iloc[:50].assign(age=X["age"].iloc[:50] + 40), pred[:50], b.decide(pred[:50]), ts=t0 + 10**5)
    try:
        doc = monitor(log_dir=str(d), batch_size=1000).data["report"]
        assert doc["current"]["kind"] == "log" and doc["current"]["n_rows"] == 3000 and doc["current"]["n_windows"] == 3
        assert doc["verdict"] == "OK", doc["reasons"]
        assert all(r["predictions"] == "logged" for r in doc["windows"].values())
        doc = monitor(log_dir=str(d), since="2026-12-01T00:16:40Z", batch_size=1000).data["report"]   # t0 + 1000 s
        assert doc["current"]["n_rows"] == 2000
        from mlops_nb.artifacts import DataError
        with pytest.raises(DataError, match="no logged predictions"):
            monitor(log_dir=str(d), since="2027-01-01")
    finally:
        open_log.close()


def test_retrain_dry_run_plan(proj, test_rows, tmp_path):
    p = tmp_path/"age5.parquet"
    test_rows.assign(age=test_rows["age"] + 5).to_parquet(p)
    res = monitor(current=str(p), retrain=True, retrain_dry_run=True)
    plan = res.data["retrain"]
    assert plan["started"] is False and plan["summary"].startswith("dry run: would run")
    assert plan["command"][1:6] == ["-m", "mlops_nb", "run", "--config", plan["config"]]
    assert plan["params"]["data"].startswith("data/retrain/adult-") and plan["params"]["test_data"] == "data/raw/adult.test"
    assert plan["params"]["n_trials"] == 2 and plan["added_rows"] == len(test_rows)   # the run's recorded tune parameters
    assert plan["params"]["name"] == "adult"                      # the new model joins the monitored one in the registry
    assert not (proj/"data"/"retrain").exists()                   # a dry run writes nothing
    from mlops_nb.alert import write_retrain_data
    out = write_retrain_data(plan, test_rows)
    comb = pd.read_parquet(out)
    assert len(comb) == 2000 + len(test_rows) and list(comb.columns)[-1] == "income"
    card = json.loads((out.parent/"datacard.json").read_text())["files"][out.name]
    assert card["role"] == "train" and card["added_rows"] == len(test_rows) and card["defaults"]["sensitive"] == ["sex", "race"]
    from mlops_nb.artifacts import data_defaults, read_table
    assert len(read_table(out)) == len(comb) and data_defaults(plan["params"]["data"])["engineered"]
    assert json.loads(Path(plan["config"]).read_text())["data"] == plan["params"]["data"]
    assert monitor(retrain=True).data["retrain"]["summary"] == "not needed: verdict OK"


def test_logged_to_wandb(proj):
    from mlops_nb.monitor import run_monitor
    from sample_data import wandb_summary
    res = run_monitor(run_id=RUN, wandb_mode="offline")
    ctx = json.loads((res.out.path/"context.json").read_text())
    s = wandb_summary(ctx["wandb_dir"])
    summ = s.get("summary", s)
    assert summ["verdict"] == "OK" and summ["exit_code"] == 0, s


def test_values_with_no_overlap_alert_not_crash(proj, test_rows, tmp_path):
    b = test_rows.assign(age=test_rows["age"] + 500, workclass="Martian", income=None)   # disjoint range, unseen category
    b.to_parquet(tmp_path/"disjoint.parquet")
    doc = monitor(current=str(tmp_path/"disjoint.parquet")).data["report"]
    assert doc["verdict"] == "ALERT" and {"age", "workclass"} <= set(doc["alerted"])
    assert any("unseen categories (Martian)" in r for r in doc["reasons"])
    assert not next(iter(doc["windows"].values()))["labelled"]           # an empty target column: no labels
