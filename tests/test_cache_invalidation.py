"""The stage cache's invalidation rules, proved on three tiny stage notebooks made here (the runner's `--nbs`):
a changed line of code, parameter or data file reruns its stage and the stages whose inputs changed, and nothing else."""
import json

import nbformat

from mlops_nb.cli import main
from mlops_nb.core import read_summary, runs_dir, stage_dir

# stage -> (parameters cell, code cell); each reads what the stage before it wrote, so a change flows downstream
STAGES = {
    "preprocess": ('run_id = ""\ndata = "data/raw/t.csv"\nscale = 1',
                   'from mlops_nb.core import resolve_path, resolve_run, stage\n'
                   'with stage("preprocess", {"data": data, "scale": scale}, run_dir=resolve_run(run_id), wandb_mode="disabled") as st:\n'
                   '    p = resolve_path(data); st.input_file(p)\n'
                   '    st.out.write_json("rows.json", {"n": len(p.read_text().splitlines()) * scale})'),
    "features": ('run_id = ""\nk = 1',
                 'from mlops_nb.core import resolve_run, stage, stage_dir\n'
                 'run_dir = resolve_run(run_id); n = stage_dir(run_dir, "preprocess").read_json("rows.json")["n"]\n'
                 'with stage("features", {"k": k}, run_dir=run_dir, wandb_mode="disabled") as st:\n'
                 '    st.out.write_json("feat.json", {"v": n + k})'),
    "train": ('run_id = ""\nm = 1',
              'from mlops_nb.core import resolve_run, stage, stage_dir\n'
              'run_dir = resolve_run(run_id); v = stage_dir(run_dir, "features").read_json("feat.json")["v"]\n'
              'with stage("train", {"m": m}, run_dir=run_dir, wandb_mode="disabled") as st:\n'
              '    st.out.write_json("model.json", {"w": v * m})'),
}


def _write(nbs, stage, params, code):
    nb = nbformat.v4.new_notebook()
    cell = nbformat.v4.new_code_cell(params)
    cell.metadata["tags"] = ["parameters"]
    nb.cells = [cell, nbformat.v4.new_code_cell(code)]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, nbs/f"0{list(STAGES).index(stage) + 2}_{stage}.ipynb")


def _run(nbs, rid, *args):
    assert main(["run", "--nbs", str(nbs), "--no-html", "--run-id", rid, *args]) == 0
    s = read_summary(runs_dir()/rid)
    return [s["stages"][st]["status"] for st in STAGES]


def _out(rid, stage, name):
    return json.loads((stage_dir(runs_dir()/rid, stage).path/name).read_text())


def test_each_change_reruns_exactly_its_stage_and_those_it_changes(project, capsys):
    nbs = project/"stage_nbs"
    nbs.mkdir()
    for st, (params, code) in STAGES.items(): _write(nbs, st, params, code)
    (project/"data"/"raw"/"t.csv").write_text("a\n1\n2\n")
    assert _run(nbs, "A") == ["ok", "ok", "ok"]
    assert _run(nbs, "B") == ["cached", "cached", "cached"]
    assert read_summary(runs_dir()/"B")["stages"]["train"]["cached_from"] == "A"
    assert "[3/3] train ... cached (run A)" in capsys.readouterr().out

    _write(nbs, "features", STAGES["features"][0], STAGES["features"][1].replace("n + k", "n + k + 1"))  # a line of code
    assert _run(nbs, "C") == ["cached", "ok", "ok"] and _out("C", "train", "model.json") == {"w": 5}

    _write(nbs, "preprocess", *STAGES["preprocess"])     # back to the first code: the run A outputs again
    _write(nbs, "features", *STAGES["features"])
    assert _run(nbs, "D", "-p", "m", "2") == ["cached", "cached", "ok"]    # a parameter of the last stage
    assert _out("D", "train", "model.json") == {"w": 8}

    _write(nbs, "preprocess", STAGES["preprocess"][0], STAGES["preprocess"][1] + "  # same rows.json")
    assert _run(nbs, "E") == ["ok", "cached", "cached"]   # its code changed, its outputs did not: nothing after it reruns

    (project/"data"/"raw"/"t.csv").write_text("a\n1\n2\n3\n4\n")                  # a data file
    assert _run(nbs, "F") == ["ok", "ok", "ok"] and _out("F", "train", "model.json") == {"w": 6}
    assert _run(nbs, "G", "--no-cache") == ["ok", "ok", "ok"]
    assert [_out(r, "train", "model.json") for r in ("F", "G")] == [{"w": 6}, {"w": 6}]
