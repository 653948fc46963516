#!/usr/bin/env bash
# Train plan "dogs" with sd-scripts: the exact command `lorakit launch` starts, in this plan
# folder (config.toml names the plan's own files relative to it, so the folder may be copied or moved).
# `lorakit launch` on this folder also watches the run, writes TensorBoard summaries and records
# run.json; `lorakit launch --python ... --sd-scripts ...` runs it elsewhere.
set -euo pipefail
cd -- "$(dirname -- "${BASH_SOURCE[0]}")"
exec /opt/venv/bin/python -m accelerate.commands.launch --num_processes 1 --num_machines 1 --mixed_precision bf16 --dynamo_backend no --num_cpu_threads_per_process 1 /opt/sd-scripts/sdxl_train_network.py --config_file config.toml
