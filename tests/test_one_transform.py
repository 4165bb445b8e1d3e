"""One transform, proven: the HTTP server, `mlops-nb score` and the evaluate stage give the same numbers on the same rows.

The rows: the whole test split of an evaluated run, plus generated rows with nulls (in the columns that had missing
values in training, where a record may leave a field null), unseen categories and, on a generated table that has a
datetime column, datetimes (outside the training range, with other UTC offsets, date only, null). References: the
evaluate stage's stored predictions for the test split; for the generated rows the evaluate stage's own computation
(`ModelBundle.predict`: `features.transform`, then the booster). The server is a real `mlops-nb serve --bundle`
subprocess (uvicorn) on a free port, sent JSON records over HTTP; the batch scorer is the `mlops-nb score` command.
"""
import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from sample_data import SMALL_MODEL, evaluated_run, make_table

TOL = 1e-6
BIN = Path(sys.executable).parent


# ---- the runs ---------------------------------------------------------------------------------------------------

def datetime_run(root: Path, run_id: str = "dates") -> Path:
    """An evaluated run on a generated binary table with a datetime column `when` (ISO text with times, 5% missing)."""
    from mlops_nb.evaluate import run_evaluate
    from mlops_nb.features import run_features
    from mlops_nb.preprocess import run_preprocess
    from mlops_nb.train import run_train
    from mlops_nb.tune import run_tune
    df = make_table("binary", n=800, seed=3)
    rng = np.random.default_rng(3)
    when = pd.Timestamp("2023-01-01", tz="UTC") + pd.to_timedelta(rng.integers(0, 2 * 365 * 86400, len(df)), unit="s")
    df["when"] = pd.Series(when.strftime("%Y-%m-%dT%H:%M:%S"), dtype=object)
    df.loc[rng.choice(len(df), len(df) // 20, replace=False), "when"] = None
    df["target"] = np.where((when.month.to_numpy() > 6) ^ (df["x0"].to_numpy() > 0), "yes", "no")  # the date matters
    path = root/"data"/"dates.csv"
    df.to_csv(path, index=False)
    run_preprocess(run_id=run_id, data=str(path), target="target", test_data="", wandb_mode="disabled")
    run_features(run_id=run_id, engineered={}, wandb_mode="disabled")
    run_train(run_id=run_id, wandb_mode="disabled", **SMALL_MODEL["train"])
    run_tune(run_id=run_id, wandb_mode="disabled", **SMALL_MODEL["tune"])
    return run_evaluate(run_id=run_id, wandb_mode="disabled", **dict(SMALL_MODEL["evaluate"], sensitive=[])).run_dir


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """An evaluated Adult-sample run and an evaluated run on a table with a datetime column, in one project."""
    from _pytest.monkeypatch import MonkeyPatch
    from sample_data import REPO, write_adult_sample
    root = tmp_path_factory.mktemp("one_transform")/"proj"
    (root/"data").mkdir(parents=True)
    write_adult_sample(root)
    mp = MonkeyPatch()
    for k, v in {"MLOPS_NB_ROOT": str(root), "MLOPS_NB_NBS": str(REPO/"nbs"), "WANDB_MODE": "disabled"}.items(): mp.setenv(k, v)
    mp.chdir(root)
    yield root, {"adult": evaluated_run("adult"), "dates": datetime_run(root)}
    mp.undo()


# ---- the rows ---------------------------------------------------------------------------------------------------

def nullable(run: Path, spec) -> list:
    """Source columns a record may leave null: the spec's `nullable`, else the columns with missing values in training."""
    if getattr(spec, "nullable", None) is not None: return list(spec.nullable)
    train = pd.read_parquet(run/"preprocess"/"train.parquet")
    return [c for c in spec.source_columns if train[c].isna().any()]


def client_text(df: pd.DataFrame, spec) -> pd.DataFrame:
    """`df` with categorical columns as Python objects and datetimes as ISO text, as a client sends them."""
    df = df.astype({c: object for c in [*spec.categorical, *spec.datetime] if c in df})
    for c in spec.datetime:
        df[c] = [v.isoformat() if isinstance(v, pd.Timestamp) else v for v in df[c]]
    return df


def generated_rows(test: pd.DataFrame, spec, can_be_null: list, n: int = 60, seed: int = 0) -> pd.DataFrame:
    """Copies of test rows (as client text) with nulls, unseen categories and (for datetime columns) unusual datetimes."""
    rng = np.random.default_rng(seed)
    g = test.sample(n=n, random_state=seed, replace=len(test) < n).reset_index(drop=True)
    for i in range(n):
        if i % 3 == 0 and can_be_null:                   # nulls where training had missing values
            for c in rng.choice(can_be_null, size=min(2, len(can_be_null)), replace=False): g.at[i, c] = None
        elif i % 3 == 1:                                 # categories never seen in training
            for c in spec.categorical: g.at[i, c] = f"unseen-{c}-{i}"
        for c in spec.datetime:                          # outside the range, other offsets, date only, null
            g.at[i, c] = ["2031-07-04T23:59:59+00:00", "2023-03-01T10:30:00+05:30", "2024-02-29", "1999-12-31T23:00:00-08:00",
                          None, g.at[i, c]][i % 6]
    return g


def records(df: pd.DataFrame, columns: list) -> list:
    """JSON records of `df[columns]`: NaN and None as null, datetimes as ISO text, NumPy scalars as plain numbers."""
    out = []
    for row in df[columns].itertuples(index=False):
        rec = {}
        for c, v in zip(columns, row):
            if v is None or (isinstance(v, float) and np.isnan(v)) or v is pd.NaT: rec[c] = None
            elif isinstance(v, pd.Timestamp): rec[c] = v.isoformat()
            elif isinstance(v, np.generic): rec[c] = v.item()
            else: rec[c] = v
        out.append(rec)
    return out


def numbers(task: str, classes: list, frame: pd.DataFrame) -> np.ndarray:
    """The numbers to compare: P(positive) (binary), every class's probability (multiclass), or the values."""
    if task == "regression": return frame["prediction"].to_numpy(np.float64)
    cols = [f"p_{c}" for c in classes]
    return frame[cols[-1:] if task == "binary" else cols].to_numpy(np.float64)


# ---- the three paths ---------------------------------------------------------------------------------------------

def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """`mlops-nb serve --bundle DIR` as a subprocess on a free port; stopped on exit."""
    def __init__(self, bundle: Path, tmp: Path):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = open(tmp/f"serve-{self.port}.log", "w+")
        argv = [str(BIN/"mlops-nb"), "serve", "--bundle", str(bundle), "--host", "127.0.0.1", "--port", str(self.port),
                "--log-dir", str(tmp/"predictions")]
        self.proc = subprocess.Popen(argv, stdout=self.log, stderr=subprocess.STDOUT, env=os.environ.copy())

    def __enter__(self):
        t0 = time.monotonic()
        while time.monotonic() - t0 < 90:
            if self.proc.poll() is not None: raise RuntimeError(f"server exited {self.proc.returncode}: {self.output()}")
            try:
                with urllib.request.urlopen(self.url + "/ready", timeout=2) as r:
                    if r.status == 200: return self
            except (urllib.error.URLError, ConnectionError, OSError): pass
            time.sleep(0.2)
        raise RuntimeError(f"server not ready after 90 s: {self.output()}")

    def __exit__(self, *exc):
        self.proc.terminate()
        try: self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired: self.proc.kill(); self.proc.wait()
        self.log.close()

    def output(self) -> str:
        self.log.flush(); self.log.seek(0)
        return self.log.read()[-3000:]

    def predict(self, recs: list) -> dict:
        req = urllib.request.Request(self.url + "/predict", data=json.dumps(recs).encode(),
                                     headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=60) as r: return json.loads(r.read())
        except urllib.error.HTTPError as e: raise AssertionError(f"/predict answered {e.code}: {e.read()[:500]!r}") from None


def served(server: Server, df: pd.DataFrame, columns: list, task: str, classes: list, batch: int = 250) -> tuple:
    """The server's numbers and labels for the rows of `df`, sent as JSON records in batches."""
    vals, labels = [], []
    for start in range(0, len(df), batch):
        doc = server.predict(records(df.iloc[start:start + batch], columns))
        assert len(doc["predictions"]) == len(df.iloc[start:start + batch])
        labels += doc["predictions"]
        if task == "regression": vals += [[float(v)] for v in doc["predictions"]]
        else:
            probs = doc["probabilities"]
            vals += [[p[str(c)] for c in (classes[-1:] if task == "binary" else classes)] for p in probs]
    return np.asarray(vals, np.float64).reshape(len(df), -1), labels


def scored(rows: pd.DataFrame, bundle: Path, tmp: Path) -> pd.DataFrame:
    """`mlops-nb score` of the rows (written as CSV, as a client would send them) with the bundle."""
    rows.to_csv(tmp/"rows.csv", index=False)
    r = subprocess.run([str(BIN/"mlops-nb"), "score", str(tmp/"rows.csv"), str(tmp/"scored.parquet"), "--bundle", str(bundle),
                        "--chunk-rows", "128"], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr                  # every row scored (0), none bad
    return pd.read_parquet(tmp/"scored.parquet")


# ---- the test ---------------------------------------------------------------------------------------------------

_PREPARED = {}

def prepared(run: Path, tmp: Path):
    """The rows (test split + generated), the references and `mlops-nb score`'s output for the run's evaluated model."""
    if run not in _PREPARED: _PREPARED[run] = _prepare(run, tmp)
    return _PREPARED[run]


def _prepare(run: Path, tmp: Path):
    from types import SimpleNamespace
    from mlops_nb.model import ModelBundle
    bdir = run/"evaluate"/"model"
    b = ModelBundle.load(bdir)
    spec, task, classes = b.spec, b.task, list(b.classes)
    test = client_text(pd.read_parquet(run/"preprocess"/"test.parquet"), spec)
    gen = generated_rows(test, spec, nullable(run, spec))
    rows = pd.concat([test, gen], ignore_index=True)
    stored = pd.read_parquet(run/"evaluate"/"predictions.parquet")
    ref_test = stored[["probability"] if task == "binary" else ["prediction"] if task == "regression"
                      else [f"p_{c}" for c in classes]].to_numpy(np.float64)
    ref_gen = np.asarray(b.predict(gen), np.float64).reshape(len(gen), -1)   # the evaluate stage's computation
    batch = scored(rows, bdir, tmp)
    return SimpleNamespace(bdir=bdir, bundle=b, spec=spec, task=task, classes=classes, test=test, gen=gen, rows=rows, stored=stored,
                           ref_gen=ref_gen, reference=np.vstack([ref_test, ref_gen]), batch=batch,
                           batch_numbers=numbers(task, classes, batch).reshape(len(rows), -1))


@pytest.mark.parametrize("kind", ["adult", "dates"])
def test_batch_scoring_equals_evaluate(runs, kind, tmp_path):
    r = prepared(runs[1][kind], tmp_path)
    if kind == "dates": assert r.spec.datetime, "the generated table's datetime column was not detected"
    assert sum(str(v).startswith("unseen-") for v in r.gen.to_numpy().ravel()) > 0 and r.gen.isna().any().any()
    assert len(r.batch) == len(r.rows)
    np.testing.assert_allclose(r.batch_numbers, r.reference, atol=TOL, rtol=0)
    if r.task != "regression":
        assert r.batch["prediction"].astype(str).tolist()[:len(r.test)] == r.stored["decision"].astype(str).tolist()


@pytest.mark.parametrize("kind", ["adult", "dates"])
def test_server_equals_batch_scoring_and_evaluate(runs, kind, tmp_path):
    pytest.importorskip("mlops_nb.serve", reason="the model server (h-serve) is not merged yet")
    r = prepared(runs[1][kind], tmp_path)
    cols = r.spec.source_columns
    with Server(r.bdir, tmp_path) as server:
        got, labels = served(server, r.rows, cols, r.task, r.classes)                # batches of 250 records
        one, one_labels = served(server, r.gen, cols, r.task, r.classes, batch=1)    # one record per request
    np.testing.assert_allclose(got, r.reference, atol=TOL, rtol=0)
    np.testing.assert_allclose(got, r.batch_numbers, atol=TOL, rtol=0)
    np.testing.assert_allclose(one, r.ref_gen, atol=TOL, rtol=0)
    if r.task != "regression":
        assert [str(v) for v in labels] == r.batch["prediction"].astype(str).tolist()
        assert one_labels == labels[len(r.test):]


def test_server_and_batch_read_rfc3339_lowercase_datetimes_alike(runs, tmp_path):
    """RFC 3339's lowercase 't' and 'z', which the server accepts: the batch scorer reads them the same way.
    (Training's reading of the column would count such text as unparsed and impute it: not compared here.)"""
    pytest.importorskip("mlops_nb.serve", reason="the model server (h-serve) is not merged yet")
    from mlops_nb.score import score_file
    r = prepared(runs[1]["dates"], tmp_path)
    rows = r.gen.head(12).copy()
    rows["when"] = [f"2024-{m:02d}-01t{h:02d}:30:00z" for m, h in zip(range(1, 13), range(0, 24, 2))]
    rows.to_csv(tmp_path/"lower.csv", index=False)
    rep = score_file(tmp_path/"lower.csv", tmp_path/"lower.parquet", bundle=r.bdir, progress=False)
    assert rep["bad_rows"] == 0
    batch = numbers(r.task, r.classes, pd.read_parquet(tmp_path/"lower.parquet")).reshape(len(rows), -1)
    upper = rows.assign(when=rows["when"].str.upper())
    np.testing.assert_allclose(batch, np.asarray(r.bundle.predict(upper), np.float64).reshape(len(rows), -1), atol=TOL, rtol=0)
    with Server(r.bdir, tmp_path) as server:
        got, _ = served(server, rows, r.spec.source_columns, r.task, r.classes)
    np.testing.assert_allclose(got, batch, atol=TOL, rtol=0)
