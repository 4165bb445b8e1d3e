#!/usr/bin/env bash
# Create (or check) a separate virtualenv for a benchmark's comparison tool that cannot live in the project's .venv.
#
# usage: side_env.sh LABEL VENV CHECK PINS...
#   LABEL  what the environment is for (messages); VENV its folder; CHECK Python code that must run in it;
#   PINS   the exact requirements. The environment counts as ready only when the marker file written at the end holds
#   these exact pins and CHECK runs, so an interrupted install is redone. Exit status 0: ready; otherwise the install
#   failed (the benchmark skips the tool with a message). $SIDE_ENV_PYTHON picks the Python that creates it.
set -euo pipefail

LABEL=$1; VENV=$2; CHECK=$3; shift 3
PINS="$*"
PY=${SIDE_ENV_PYTHON:-$(command -v python3.11 || command -v python3)}
MARKER=$VENV/.mlops_nb_pins

if [ -f "$MARKER" ] && [ "$(cat "$MARKER")" = "$PINS" ] && "$VENV/bin/python" -c "$CHECK" >/dev/null 2>&1; then
    echo "$LABEL environment ready: $VENV"
    exit 0
fi
echo "creating the $LABEL environment $VENV with $PY ($PINS)" >&2
rm -rf "$VENV"
"$PY" -m venv "$VENV"
# shellcheck disable=SC2086
"$VENV/bin/python" -m pip install --quiet --disable-pip-version-check $PINS
"$VENV/bin/python" -c "$CHECK"
echo "$PINS" > "$MARKER"
echo "$LABEL environment ready: $VENV"
