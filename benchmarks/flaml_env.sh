#!/usr/bin/env bash
# Create (or check) the separate virtualenv for FLAML used by `benchmarks/generalisation.py`.
#
# FLAML's `automl` extra pins xgboost<3 and is untested with pandas 3, while the project needs XGBoost 3 and
# pandas 3, so FLAML lives in its own environment: `.venv-flaml` at the repository root (or $FLAML_VENV).
# The pins are flaml[automl]'s requirements (lightgbm, xgboost<3, scipy, pandas, scikit-learn) plus pyarrow to
# read the benchmark's Parquet files; xgboost-cpu is the same library as xgboost without the NVIDIA NCCL wheel.
# The environment counts as ready only when the marker file written at the end holds these exact pins, so an
# interrupted install is redone. Exit status 0: ready; otherwise the install failed (the benchmark skips FLAML).
set -euo pipefail

PINS="flaml==2.8.0 lightgbm==4.6.0 xgboost-cpu==2.1.4 scipy==1.15.3 pandas==2.3.3 numpy==2.2.6 scikit-learn==1.7.2 pyarrow==21.0.0"
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
VENV=${FLAML_VENV:-$ROOT/.venv-flaml}
PY=${FLAML_PYTHON:-$(command -v python3.11 || command -v python3)}
MARKER=$VENV/.mlops_nb_pins

if [ -f "$MARKER" ] && [ "$(cat "$MARKER")" = "$PINS" ] && "$VENV/bin/python" -c "import flaml.automl, lightgbm, xgboost, pyarrow" 2>/dev/null; then
    echo "FLAML environment ready: $VENV"
    exit 0
fi
echo "creating the FLAML environment $VENV with $PY ($PINS)" >&2
rm -rf "$VENV"
"$PY" -m venv "$VENV"
# shellcheck disable=SC2086
"$VENV/bin/python" -m pip install --quiet --disable-pip-version-check $PINS
"$VENV/bin/python" -c "import flaml.automl, lightgbm, xgboost, pyarrow; print('flaml', flaml.__version__)"
echo "$PINS" > "$MARKER"
echo "FLAML environment ready: $VENV"
