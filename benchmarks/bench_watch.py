"""How cheaply lorakit watches a run: log parsing speed, and lorakit's CPU use beside a fast-printing trainer.

    python benchmarks/bench_watch.py [--steps 100000] [--trainer-steps 20000]

1. Parsing: a generated sd-scripts console log of 100,000 steps (the bar redrawn twice per step
   behind `\\r`, Rich records every 100 steps, epoch lines and checkpoint saves; stdout and stderr
   in one file, as a GUI keeps them) is parsed in 64 KiB chunks. Target: at least 20 MB/s.
2. Watching: the tests' fake sd-scripts (tests/fake_sdscripts, through the fake accelerate) runs
   with no pause between steps, so it prints as fast as Python can; lorakit's own CPU time
   (all its threads: pipe readers, parser, run.json, TensorBoard) is compared with the wall time
   and with the trainer's CPU time. The base model is a stand-in checkpoint and the Hugging Face
   cache (with sd-scripts' tokenizers) and lorakit's cache are fresh folders, so nothing is downloaded.
"""

from __future__ import annotations

import argparse
import io
import logging
import os
import platform
import resource
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))


def rich_record(level: int, message: str) -> str:
    from rich.console import Console
    from rich.logging import RichHandler

    buffer = io.StringIO()
    handler = RichHandler(console=Console(file=buffer, width=80))
    handler.setFormatter(logging.Formatter(fmt="%(message)s", datefmt="%Y-%m-%d %H:%M:%S"))
    handler.emit(logging.LogRecord("sd", level, "train_network.py", 1234, message, None, None))
    return buffer.getvalue()


def generate_log(steps: int, steps_per_epoch: int = 1000) -> str:
    """A log like a real run's, with two bar redraws per step (what sd-scripts prints when steps are slow)."""
    epochs = -(-steps // steps_per_epoch)
    parts = ["running training / 学習開始\n", f"  total optimization steps / 学習ステップ数: {steps}\n"]
    record = rich_record(logging.INFO, "generating sample images at step / サンプル画像生成 ステップ: 100")
    warning = rich_record(logging.WARNING, "Failed to get git commit hash, using fallback; a long enough message to wrap "
                                           "over two lines at eighty columns")
    for step in range(1, steps + 1):
        if step % steps_per_epoch == 1:
            parts.append(f"\nepoch {step // steps_per_epoch + 1}/{epochs}\n\n")
        elapsed = step * 1.2
        rate = f"{1 / 1.2:5.2f}it/s"
        head = f"\rsteps: {100 * step // steps:3d}%|{'█' * (10 * step // steps):10s}| {step}/{steps} "
        timing = f"[{int(elapsed) // 60:02d}:{int(elapsed) % 60:02d}<{int(1.2 * (steps - step)) // 60:02d}:00, {rate}"
        parts.append(head + timing + f", avr_loss={0.1 + 0.05 / step ** 0.5:.3g}]")
        parts.append(head + timing + f", avr_loss={0.1 + 0.05 / (step + 1) ** 0.5:.3g}]")
        if step % 100 == 0:
            parts.append(record if step % 200 else warning)
        if step % 5000 == 0:
            parts.append(f"\nsaving checkpoint: /plans/dog/output/dog-step{step:08d}.safetensors\n")
    parts.append("\n")
    return "".join(parts)


def bench_parse(steps: int, runs: int) -> None:
    from lorakit.watch.events import Step
    from lorakit.watch.parse import StreamParser

    text = generate_log(steps)
    size_mb = len(text.encode("utf-8")) / 1e6
    chunks = [text[i:i + 65536] for i in range(0, len(text), 65536)]
    best = float("inf")
    for _ in range(runs):
        parser = StreamParser()
        start = time.perf_counter()
        events = [e for chunk in chunks for e in parser.feed(chunk)] + parser.close()
        best = min(best, time.perf_counter() - start)
    done = sum(1 for e in events if isinstance(e, Step))
    print(f"parse: {steps:,}-step log, {size_mb:.1f} MB, {len(events):,} events ({done:,} steps): best of {runs} "
          f"{best:.2f} s = {size_mb / best:.1f} MB/s (target 20 MB/s), {1e6 * best / steps:.1f} µs per step")


def bench_watch(steps: int, tensorboard: bool) -> None:
    from conftest import FAKE_SD_SCRIPTS, FAKE_TRAINER_ENV, make_folder
    from hubgen import cache_sdxl, fake_checkpoint

    from lorakit.plan.build import PlanRequest, make_plan, write_plan
    from lorakit.run.launch import LaunchOptions, run_plan

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        make_folder(root / "data" / "1_zk robot", [(1024, 1024)] * 4)
        (root / "model.safetensors").write_bytes(fake_checkpoint())
        cache_sdxl(root / "hf" / "hub")  # sd-scripts' tokenizers, which launch otherwise downloads
        os.environ.update({"LORAKIT_SD_SCRIPTS": str(FAKE_SD_SCRIPTS), "LORAKIT_FAKE_GPU": "none",
                           "PYTHONPATH": str(FAKE_TRAINER_ENV), "FAKE_SDSCRIPTS_STEP_SECONDS": "0",
                           "HF_HOME": str(root / "hf"), "LORAKIT_CACHE_DIR": str(root / "lorakit-cache"),
                           "HF_HUB_OFFLINE": "1"})
        os.environ.pop("HF_HUB_CACHE", None)  # it would win over HF_HOME
        write_plan(make_plan(PlanRequest(dataset=root / "data", target_gpu="rtx4090", out=root / "plan", overrides=[
            f"pretrained_model_name_or_path={root / 'model.safetensors'}", f"max_train_steps={steps}",
            "train_batch_size=1", "mixed_precision=bf16", "sample_every_n_steps=none", "save_every_n_epochs=none"])))
        own_before = resource.getrusage(resource.RUSAGE_SELF)
        children_before = resource.getrusage(resource.RUSAGE_CHILDREN)
        start = time.perf_counter()
        record = run_plan(root / "plan", LaunchOptions(tensorboard=tensorboard))
        wall = time.perf_counter() - start
        own_after = resource.getrusage(resource.RUSAGE_SELF)
        children_after = resource.getrusage(resource.RUSAGE_CHILDREN)
        own = (own_after.ru_utime + own_after.ru_stime) - (own_before.ru_utime + own_before.ru_stime)
        trainer = (children_after.ru_utime + children_after.ru_stime) - (children_before.ru_utime + children_before.ru_stime)
        log_mb = (root / "plan" / "logs" / "train.log").stat().st_size / 1e6
    assert record.state == "succeeded" and record.steps_done == steps, record
    print(f"watch ({'with' if tensorboard else 'without'} TensorBoard): {steps:,} steps, {log_mb:.1f} MB of output in "
          f"{wall:.1f} s ({log_mb / wall:.1f} MB/s, {steps / wall:,.0f} steps/s); lorakit CPU {own:.2f} s = "
          f"{100 * own / wall:.0f}% of one core, trainer+accelerate CPU {trainer:.2f} s; "
          f"lorakit per step {1e6 * own / steps:.0f} µs")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--trainer-steps", type=int, default=20_000)
    args = parser.parse_args()
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor()) if Path("/proc/cpuinfo").exists() else platform.processor()
    print(f"machine: {cpu}, {os.cpu_count()} cores, Python {platform.python_version()}")
    bench_parse(args.steps, args.runs)
    bench_watch(args.trainer_steps, tensorboard=False)
    bench_watch(args.trainer_steps, tensorboard=True)


if __name__ == "__main__":
    main()
