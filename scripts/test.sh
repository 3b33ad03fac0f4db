#!/usr/bin/env bash
# The test command: install if needed, then the whole pytest suite on CPU.
set -uo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh || exit 1
export HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
# One intra-op thread unless asked otherwise: see tests/conftest.py for the measurement.
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}"
.venv/bin/python -m pytest -q "$@"
code=$?
if [ "$code" -eq 5 ]; then
  echo "pytest collected no tests: that is a failure here" >&2
  exit 1
fi
exit "$code"
