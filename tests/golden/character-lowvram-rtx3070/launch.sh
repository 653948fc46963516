#!/usr/bin/env bash
# Train plan "dogs" with sd-scripts: the exact command `lorakit launch` starts, in this plan
# folder (config.toml names the plan's own files relative to it, so the folder may be copied or moved).
# `lorakit launch` on this folder also watches the run, writes TensorBoard summaries and records
# run.json; `lorakit launch --python ... --sd-scripts ...` runs it elsewhere.
# As `lorakit launch` does, it trains on the CPU (accelerate's --cpu, a thread per core) when the
# trainer's torch sees no CUDA device, or when run as `launch.sh --cpu`.
set -euo pipefail
cd -- "$(dirname -- "${BASH_SOURCE[0]}")"
python=/opt/venv/bin/python
cuda_devices=$("$python" -c 'import torch; print(torch.cuda.device_count())' 2>/dev/null || true)
if [ "${1:-}" = "--cpu" ] || [ "$cuda_devices" = 0 ]; then
  threads=$("$python" -c 'import os; print(os.cpu_count() or 1)')
  exec /opt/venv/bin/python -m accelerate.commands.launch --cpu --num_processes 1 --num_machines 1 --mixed_precision bf16 --dynamo_backend no --num_cpu_threads_per_process "$threads" /opt/sd-scripts/sdxl_train_network.py --config_file config.toml
fi
exec /opt/venv/bin/python -m accelerate.commands.launch --num_processes 1 --num_machines 1 --mixed_precision bf16 --dynamo_backend no --num_cpu_threads_per_process 1 /opt/sd-scripts/sdxl_train_network.py --config_file config.toml
