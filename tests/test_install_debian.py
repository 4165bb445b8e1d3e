"""tools/install-debian.sh: installs only what is missing, and says clearly when it cannot (nothing is installed here)."""
import os
import shutil
import subprocess
from pathlib import Path

SCRIPT = Path(__file__).resolve().parent.parent/"tools"/"install-debian.sh"


def run(*args, path=None):
    env = {**os.environ, **({"PATH": path} if path is not None else {})}
    return subprocess.run(["/bin/bash", str(SCRIPT), *args], capture_output=True, text=True, env=env, timeout=60)


def test_present_commands_are_left_alone():
    r = run("sh", "bash")
    assert r.returncode == 0, r.stderr
    assert "sh already installed" in r.stdout and "bash already installed" in r.stdout and "installing" not in r.stdout


def test_without_apt_get_it_fails_with_a_clear_message(tmp_path):
    for tool in ("id", "bash"):                                  # a PATH with the script's helpers and no apt-get
        (tmp_path/tool).symlink_to(shutil.which(tool))
    r = run("no-such-command-xyz", path=str(tmp_path))
    assert r.returncode == 1
    assert "cannot install no-such-command-xyz" in r.stderr and "apt-get not found" in r.stderr
