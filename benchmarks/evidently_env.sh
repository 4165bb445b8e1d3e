#!/usr/bin/env bash
# Create (or check) the separate virtualenv for Evidently used by `benchmarks/drift_speed.py`.
#
# Evidently 0.7 does not import under pandas 3, which the project needs, so it lives in its own environment:
# `.venv-evidently` at the repository root (or $EVIDENTLY_VENV), with pandas 2 and pyarrow to read the benchmark's
# Parquet files. The environment counts as ready only when the marker file written at the end holds these exact
# pins, so an interrupted install is redone. Exit status 0: ready; otherwise the install failed (the benchmark
# skips Evidently with a message).
set -euo pipefail

PINS="evidently==0.7.23 pandas==2.3.3 pyarrow==21.0.0"
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
SIDE_ENV_PYTHON=${EVIDENTLY_PYTHON:-${SIDE_ENV_PYTHON:-}} exec bash "$ROOT/benchmarks/side_env.sh" Evidently "${EVIDENTLY_VENV:-$ROOT/.venv-evidently}" \
    "import evidently, pyarrow; from evidently.presets import DataDriftPreset; print('evidently', evidently.__version__)" $PINS
