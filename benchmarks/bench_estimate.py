"""How fast the VRAM/time estimator and the fit search are.

    python benchmarks/bench_estimate.py [--calls 20000] [--runs 50]

Target (issue 3): the estimator is pure Python at microseconds per call, and a fit search (every batch
size × checkpointing × memory lever the card allows) takes well under 50 ms, for every family (issue 15:
FLUX adds the block-swap search). The fit is timed on fresh
resolved values for each run (resolving the presets is not part of it); the worst case is a plan that
cannot fit, which tries every combination of levers and then searches Gate 3's advice.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from lorakit.config.presets import PresetRegistry  # noqa: E402
from lorakit.config.resolve import resolve  # noqa: E402
from lorakit.machine.probe import choose_target  # noqa: E402
from lorakit.plan.assumptions import Assumptions  # noqa: E402
from lorakit.plan.estimate import TrainingSetup, estimate_vram, setup_from_values, vram_gib  # noqa: E402
from lorakit.plan.fit import fit_to_gpu  # noqa: E402
from lorakit.plan.hardware import smallest_change  # noqa: E402
from lorakit.plan.timing import step_time  # noqa: E402

ASSUMED = Assumptions.uncalibrated()
CASES = [  # (presets, overrides, GPU): typical plans, low-VRAM searches, and one that cannot fit
    (["character"], [], "rtx4090"),
    (["style"], [], "rtx3060-12gb"),
    (["kohya-example"], [], "a100-80gb"),
    (["style"], [], "rtx3080-10gb"),
    (["style"], [], "rtx3070-8gb"),
    (["character"], ["train_batch_size=16", "gradient_checkpointing=false"], "rtx3070-8gb"),
    # the other families (issue 15): FLUX's ladder with the block-swap search, Chroma, SD 1.5's speed search
    (["flux1-dev", "character"], [], "rtx4090"),
    (["flux1-dev", "character"], [], "rtx3060-12gb"),
    (["flux1-dev", "style"], [], "rtx3070-8gb"),
    (["chroma", "character"], [], "rtx4060ti-16gb"),
    (["sd15", "character"], [], "rtx4090"),
    (["sd15", "style"], [], "rtx3070-8gb"),
]


def per_call_us(fn, calls: int) -> float:
    start = time.perf_counter()
    for _ in range(calls):
        fn()
    return (time.perf_counter() - start) / calls * 1e6


def fit_ms(registry: PresetRegistry, presets: list[str], overrides: list[str], gpu: str, runs: int) -> tuple[float, float]:
    target = choose_target(gpu)
    times = []
    for _ in range(runs):
        values = resolve(registry, presets, overrides).values
        start = time.perf_counter()
        fit_to_gpu(values, target, ASSUMED, images=40)
        times.append((time.perf_counter() - start) * 1e3)
    return statistics.median(times), max(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--calls", type=int, default=20000)
    parser.add_argument("--runs", type=int, default=50)
    args = parser.parse_args()

    print(f"machine: {platform.machine()} {platform.processor() or ''}, {os.cpu_count()} CPUs, "
          f"Python {platform.python_version()}, {platform.system()} {platform.release()}")
    setup = TrainingSetup(network_dim=32, train_text_encoders=True, batch_size=4, conv_dim=8)
    registry = PresetRegistry(include_user_dir=False)
    values = resolve(registry, ["character"], []).values
    print("estimator, per call:")
    print(f"  vram_gib (total)            {per_call_us(lambda: vram_gib(setup, 1.0), args.calls):8.2f} µs")
    print(f"  estimate_vram (breakdown)   {per_call_us(lambda: estimate_vram(setup, 1.0), args.calls):8.2f} µs")
    print(f"  step_time                   {per_call_us(lambda: step_time(setup, 165.2), args.calls):8.2f} µs")
    print(f"  setup_from_values           {per_call_us(lambda: setup_from_values(values), args.calls // 10):8.2f} µs")
    print(f"fit search, median and worst of {args.runs} runs:")
    for presets, overrides, gpu in CASES:
        median, worst = fit_ms(registry, presets, overrides, gpu, args.runs)
        label = "+".join(presets) + (" " + " ".join(overrides) if overrides else "")
        print(f"  {label:58} {gpu:13} {median:6.2f} ms  (max {worst:6.2f})")
    stuck = resolve(registry, ["character"], ["train_batch_size=16", "gradient_checkpointing=false"]).values
    stuck_setup = setup_from_values(stuck)
    budget = choose_target("rtx3070-8gb").budget_gib
    advice = per_call_us(lambda: smallest_change(stuck, stuck_setup, budget, 1.0), 50) / 1e3
    print(f"Gate 3 advice (smallest change that fits), cannot-fit case: {advice:6.2f} ms")
    flux = resolve(registry, ["flux1-dev", "style"], ["train_batch_size=4"]).values
    flux_setup = setup_from_values(flux)
    advice = per_call_us(lambda: smallest_change(flux, flux_setup, budget, 1.0), 20) / 1e3
    print(f"Gate 3 advice, FLUX style batch 4 on an 8 GB card:         {advice:6.2f} ms")


if __name__ == "__main__":
    main()
