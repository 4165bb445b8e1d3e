"""Check that the notebooks, the exported package and README.md are in sync (the first step of `make test`).

Runs the generators (`nbdev-export`, `nbdev-clean`, `tools/readme.py`) and compares the content of every file
under nbs/, mlops_nb/ and README.md before and after. Any difference means a notebook was edited without
`make export` (or a generated file was edited by hand): the files are listed and the exit code is 1. The tree does
not have to be clean in git; only what the generators change counts. They leave their output in the working tree,
so `git diff` shows what was out of date.
"""
from __future__ import annotations

import hashlib
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
WATCH = ["nbs", "mlops_nb", "README.md"]
SKIP_PARTS = {"__pycache__", ".ipynb_checkpoints", "wandb", "reports", "models", ".pytest_cache"}


def _tool(name: str) -> str:
    """The venv's console script `name`, else the one on the PATH."""
    cand = Path(sys.executable).parent/name
    return str(cand) if cand.exists() else (shutil.which(name) or name)


def watched_files() -> list[str]:
    """Files under WATCH that git tracks or would track (tracked and untracked, not ignored)."""
    try:
        r = subprocess.run(["git", "ls-files", "-co", "--exclude-standard", "-z", "--", *WATCH],
                           cwd=ROOT, capture_output=True, text=True, check=True)
        files = [f for f in r.stdout.split("\0") if f]
    except (OSError, subprocess.CalledProcessError):
        files = [str(p.relative_to(ROOT)) for w in WATCH for p in ([ROOT/w] if (ROOT/w).is_file() else (ROOT/w).rglob("*"))
                 if p.is_file()]
    return sorted(f for f in files if not SKIP_PARTS & set(Path(f).parts))


def snapshot() -> dict[str, str]:
    """sha256 of each watched file."""
    out = {}
    for f in watched_files():
        p = ROOT/f
        if p.is_file(): out[f] = hashlib.sha256(p.read_bytes()).hexdigest()
    return out


def main() -> int:
    before = snapshot()
    steps = [[_tool("nbdev-export")], [_tool("nbdev-clean")], [sys.executable, str(ROOT/"tools"/"readme.py")]]
    for cmd in steps:
        r = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
        if r.returncode:
            print(f"check_sync: `{' '.join(Path(c).name for c in cmd)}` failed (exit {r.returncode}):\n{r.stdout}{r.stderr}",
                  file=sys.stderr)
            return 2
    after = snapshot()
    changed = sorted(f for f in before.keys() | after.keys() if before.get(f) != after.get(f))
    if changed:
        print("check_sync: notebooks, package and README.md are out of sync; these files changed when regenerated:",
              file=sys.stderr)
        for f in changed:
            what = "added" if f not in before else "removed" if f not in after else "modified"
            print(f"  {what:8} {f}", file=sys.stderr)
        print("The regenerated files are now in the working tree: review them (git diff) and commit them with the "
              "notebooks (`make export` does this step).", file=sys.stderr)
        return 1
    print(f"check_sync: {len(after)} files under {', '.join(WATCH)} in sync")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
