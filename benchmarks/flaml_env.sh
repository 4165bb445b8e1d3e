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
SIDE_ENV_PYTHON=${FLAML_PYTHON:-${SIDE_ENV_PYTHON:-}} exec bash "$ROOT/benchmarks/side_env.sh" FLAML "${FLAML_VENV:-$ROOT/.venv-flaml}" \
    "import flaml.automl, lightgbm, xgboost, pyarrow; print('flaml', flaml.__version__)" $PINS
