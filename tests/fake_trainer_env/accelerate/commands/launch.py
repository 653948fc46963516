"""A fake `accelerate launch` that starts in milliseconds instead of importing torch (2.5 s on CI).

It takes lorakit's accelerate flags and behaves like accelerate's simple launcher (docs/sd-scripts.md
§10): it runs `python SCRIPT ARGS` as a child with accelerate's environment variables, and when the
child fails it raises `subprocess.CalledProcessError` ("returned non-zero exit status N" or "died
with <Signals.SIGKILL: 9>"), so it exits 1 whatever the script's code. One test in test_launch.py
uses the real accelerate instead.
"""

import argparse
import os
import subprocess
import sys


def main() -> None:
    parser = argparse.ArgumentParser(prog="accelerate launch")
    parser.add_argument("--cpu", action="store_true")
    parser.add_argument("--multi_gpu", action="store_true")
    for flag in ("--num_processes", "--num_machines", "--num_cpu_threads_per_process", "--machine_rank",
                 "--main_process_port"):
        parser.add_argument(flag, type=int)
    for flag in ("--mixed_precision", "--dynamo_backend", "--gpu_ids", "--main_process_ip"):
        parser.add_argument(flag)
    parser.add_argument("training_script")
    parser.add_argument("training_script_args", nargs=argparse.REMAINDER)
    args = parser.parse_args()
    env = dict(os.environ)
    if args.cpu:
        env["ACCELERATE_USE_CPU"] = "True"
    if args.gpu_ids and args.gpu_ids != "all":
        env["CUDA_VISIBLE_DEVICES"] = args.gpu_ids
    env["ACCELERATE_MIXED_PRECISION"] = str(args.mixed_precision)
    env["OMP_NUM_THREADS"] = str(args.num_cpu_threads_per_process or 1)
    command = [sys.executable, args.training_script, *args.training_script_args]
    process = subprocess.Popen(command, env=env)
    process.wait()
    if process.returncode != 0:
        raise subprocess.CalledProcessError(returncode=process.returncode, cmd=command)


if __name__ == "__main__":
    main()
