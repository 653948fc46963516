#!/usr/bin/env bash
# Train plan "dogs" with sd-scripts, exactly as `lorakit launch` starts it
# (lorakit launch also watches the run, writes TensorBoard summaries and records run.json):
#   lorakit launch <PLAN>
# Set LORAKIT_PYTHON or LORAKIT_SD_SCRIPTS to use another trainer Python or sd-scripts checkout.
set -euo pipefail
PYTHON=/opt/venv/bin/python
SD_SCRIPTS=/opt/sd-scripts
PYTHON="${LORAKIT_PYTHON:-$PYTHON}"
SD_SCRIPTS="${LORAKIT_SD_SCRIPTS:-$SD_SCRIPTS}"
exec "$PYTHON" -m accelerate.commands.launch --num_processes 1 --num_machines 1 --mixed_precision bf16 --dynamo_backend no --num_cpu_threads_per_process 1 \
  "$SD_SCRIPTS/sdxl_train_network.py" --config_file <PLAN>/config.toml
