"""The generalisation benchmark's pieces that run in seconds: its tables, its summary and its FLAML skip path."""
import numpy as np
import pytest

from benchmarks import generalisation as g
from benchmarks.tables import GENERATED, SKLEARN, load_table


@pytest.mark.parametrize("name", [*SKLEARN, *GENERATED])
def test_tables_have_their_documented_shape(name):
    df, target, task = load_table(name)
    assert target in df and task in ("binary", "multiclass", "regression")
    assert all(c == c.lower() and " " not in c for c in df.columns)
    if task == "regression": assert df[target].dtype.kind == "f"
    else: assert df[target].map(type).eq(str).all() and df[target].nunique() >= 2
    if name in ("linear", "interactions"): assert len(df) >= 20000 and df.isna().any().any()
    if name == "credit_like": assert len(df) == 1000 and 0.25 < (df["class"] == "bad").mean() < 0.35


def test_generated_tables_are_fixed_and_interactions_defeat_a_linear_model():
    a, b = load_table("interactions")[0], load_table("interactions")[0]
    assert a.equals(b)                                   # the same table in every repetition
    from sklearn.linear_model import LogisticRegression
    from sklearn.tree import DecisionTreeClassifier
    X, y = a[["x1", "x2"]].to_numpy(), a["target"].eq("yes").to_numpy()
    lin = LogisticRegression().fit(X[:10000], y[:10000]).score(X[10000:], y[10000:])
    tree = DecisionTreeClassifier(max_depth=4, random_state=0).fit(X[:10000], y[:10000]).score(X[10000:], y[10000:])
    assert tree > lin + 0.2                             # the XOR is there (greedy trees need depth > 2)


def test_encode_names_unknown_labels():
    assert g._encode(["b", "a", "b"], ["a", "b"]).tolist() == [1, 0, 1]
    with pytest.raises(ValueError, match="'c'"): g._encode(["a", "c"], ["a", "b"])


def test_summary_medians_and_verdicts():
    base = {"table": "t", "rows_train": 80, "rows_test": 20, "task": "binary", "metric": "log_loss", "baseline": "linear",
            "ours_roc_auc": 0.9, "ours_accuracy": 0.8, "flaml_roc_auc": 0.9, "flaml_accuracy": 0.8, "ours_s": 1.0}
    rows = [{**base, "ours": o, "best_baseline": 0.30, "flaml": 0.25, "diff": o - 0.25, "ci_low": lo, "ci_high": lo + 0.1}
            for o, lo in ((0.20, -0.1), (0.40, 0.05), (0.28, 0.01))]
    (s,) = g.summarise(rows)
    assert s["ours"] == 0.28 and s["rows"] == 100 and s["seeds"] == 3
    assert s["ours>=baseline"] == "yes" and s["CI ok"] == "NO"            # median ci_low 0.01 > 0: FLAML is better
    (s,) = g.summarise([{**r, "flaml": None, "diff": None, "ci_low": None, "ci_high": None} for r in rows])
    assert s["CI ok"] == "" and s["diff [CI]"] == ""                      # FLAML skipped: no verdict


def test_flaml_is_skipped_with_a_reason_when_its_environment_cannot_be_made(tmp_path, monkeypatch):
    monkeypatch.setenv("FLAML_VENV", str(tmp_path/"venv"))
    monkeypatch.setenv("FLAML_PYTHON", str(tmp_path/"no_such_python"))
    py, note = g.flaml_python()
    assert py is None and note.startswith("FLAML skipped: flaml_env.sh failed")


def test_our_side_on_iris_and_both_baseline_sources_agree(project, monkeypatch):
    from types import SimpleNamespace
    pre, ev, tune, secs = g.ours_run("iris", 42, project, quick=True)
    compute, _, objective = g._metric_fns()
    classes = g._classes(ev)
    y, pred, thr = g._ours(ev, "multiclass", "target", classes)
    assert sorted(classes) == ["setosa", "versicolor", "virginica"] and pred.shape == (len(y), 3) and secs > 0
    assert np.array_equal(y, g._encode(pre.out.read_parquet("test.parquet")["target"], classes))
    from_table = g._best_baseline(ev, "log_loss", "multiclass", y, compute)
    recomputed = g._best_baseline(SimpleNamespace(tables={}, run_dir=ev.run_dir), "log_loss", "multiclass", y, compute)
    assert from_table[0] == recomputed[0] and from_table[1] == pytest.approx(recomputed[1], rel=1e-9)
    monkeypatch.setattr(g, "ours_run", lambda *a, **k: (pre, ev, tune, secs))   # the run above, not a second one
    row = g.case("iris", 42, project, None, quick=True)                  # FLAML skipped: our side and baselines only
    assert row["ours"] == pytest.approx(compute("multiclass", y, pred)["log_loss"]) and "flaml" not in row
