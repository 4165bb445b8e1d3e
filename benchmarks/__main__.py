"""Run the benchmarks: `python -m benchmarks [NAME ...] [--repeat N] [--quick] [--out DIR]`.

Prints a table per benchmark and writes `reports/benchmarks/<name>.json` (`<name>_quick.json` with `--quick`) with the
result, the machine and the date. `--quick` asks the benchmarks that have a quick variant (a `quick` parameter) for it.
"""
from __future__ import annotations

import argparse
import datetime as dt
import importlib
import inspect
import json
import os
import platform
import time
from pathlib import Path

from benchmarks import BENCHMARKS

REPO = Path(__file__).resolve().parent.parent


def machine() -> dict:
    """The machine and software the numbers were measured on."""
    info = {"platform": platform.platform(), "machine": platform.machine(), "processor": platform.processor(),
            "python": platform.python_version(), "cpus": os.cpu_count()}
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                info["cpu"] = line.split(":", 1)[1].strip()
                break
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal"):
                info["memory_gb"] = round(int(line.split()[1]) / 2**20, 1)
                break
    except OSError:
        pass
    try:
        info["load_avg"] = [round(x, 2) for x in os.getloadavg()]
    except OSError:
        pass
    try:
        from mlops_nb.core import package_versions
        info["packages"] = package_versions()
    except Exception:
        pass
    from mlops_nb.core import git_commit
    info["git"] = git_commit(REPO)                          # commit and whether the tree had uncommitted changes
    return info


def _cell(v, col: str = "") -> str:
    # metrics below 1 differ in the 4th decimal (log loss 0.2729 vs 0.2745): show five; times and ratios one or two
    if isinstance(v, float):
        if "ratio" in col or col.startswith("vs_"): return f"{v:.2f}"
        return f"{v:.5f}" if abs(v) < 1 else f"{v:.2f}" if abs(v) < 10 else f"{v:.1f}"
    return str(v)


def table(rows: list[dict]) -> str:
    """`rows` as a plain-text table (columns: the union of the keys, in first-seen order)."""
    cols = list(dict.fromkeys(k for r in rows for k in r))
    cells = [[_cell(r.get(c, ""), c) for c in cols] for r in rows]
    widths = [max(len(c), *(len(row[i]) for row in cells)) for i, c in enumerate(cols)]
    fmt = lambda vals: "  ".join(v.ljust(w) if i == 0 else v.rjust(w) for i, (v, w) in enumerate(zip(vals, widths)))
    return "\n".join([fmt(cols), fmt(["-" * w for w in widths]), *map(fmt, cells)])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks", description="Run the mlops_nb benchmarks.")
    ap.add_argument("names", nargs="*", metavar="NAME",
                    help=f"benchmarks to run (default: all of {', '.join(BENCHMARKS)})")
    ap.add_argument("--repeat", type=int, default=3, help="repetitions of each case (default 3); medians are reported")
    ap.add_argument("--quick", action="store_true", help="the quick variant of benchmarks that have one (fewer seeds, small data)")
    ap.add_argument("--out", default=str(REPO/"reports"/"benchmarks"), help="folder for the JSON results")
    args = ap.parse_args(argv)
    if args.repeat < 1: ap.error("--repeat must be at least 1")
    unknown = [n for n in args.names if n not in BENCHMARKS]
    if unknown: ap.error(f"unknown benchmark {', '.join(unknown)}; known: {', '.join(BENCHMARKS)}")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    failed = 0
    for name in args.names or BENCHMARKS:
        mod = importlib.import_module(f"benchmarks.{name}")
        quick = args.quick and "quick" in inspect.signature(mod.run).parameters
        print(f"== {name}: {mod.DESCRIPTION} ({'quick' if quick else f'repeat {args.repeat}'})", flush=True)
        t0 = time.perf_counter()
        try:
            res = mod.run(repeat=args.repeat, **({"quick": True} if quick else {}))
        except Exception as e:  # one broken benchmark does not hide the others
            print(f"   failed: {type(e).__name__}: {e}", flush=True)
            failed += 1
            continue
        print(table(res["rows"]))
        for k, v in res.items():
            if k != "rows" and not isinstance(v, (dict, list)): print(f"{k}: {_cell(v, k)}")
        doc = {"name": name, "description": mod.DESCRIPTION, "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
               "repeat": args.repeat, "seconds": round(time.perf_counter() - t0, 1), "machine": machine(), "result": res}
        f = out/f"{name}{'_quick' if res.get('quick') else ''}.json"
        f.write_text(json.dumps(doc, indent=2) + "\n")
        print(f"-> {f}\n", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
