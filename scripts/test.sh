#!/usr/bin/env bash
# The test command: install if needed, then the whole pytest suite on CPU.
set -uo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh || exit 1
export HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
# One intra-op thread unless asked otherwise: see tests/conftest.py for the measurement.
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}"
# Test files spread over up to 4 worker processes (pytest-xdist; 2 on the 2-core CI machine), each keeping its
# module-scoped fixtures (--dist loadscope); 3 workers were no faster on 2 cores (the tests are CPU-bound).
# tests/conftest.py sends the longest modules first, which xdist keeps only with --no-loadscope-reorder: by default
# it reorders modules by their number of tests, so the notebooks (5 tests, 4 minutes) started last and one worker
# ran them alone at the end.
# (Not `nproc`: it reports OMP_NUM_THREADS, set to 1 above.)
workers=$(.venv/bin/python -c "import os; print(min(4, len(os.sched_getaffinity(0))))")
.venv/bin/python -m pytest -q -n "$workers" --dist loadscope --no-loadscope-reorder "$@"
code=$?
if [ "$code" -eq 5 ]; then
  echo "pytest collected no tests: that is a failure here" >&2
  exit 1
fi
exit "$code"
