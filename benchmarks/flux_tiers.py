"""lorakit's fit for FLUX.1 against the memory tiers sd-scripts' FLUX guide publishes (docs/estimator.md §9.7).

    python benchmarks/flux_tiers.py [--presets flux1-dev character]

For each card: what `lorakit plan --preset flux1-dev --preset character` chooses (within lorakit's 80% budget),
and lorakit's estimate of the guide's own setting for that tier against the whole card.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from lorakit.config.presets import PresetRegistry  # noqa: E402
from lorakit.config.resolve import resolve  # noqa: E402
from lorakit.machine.probe import VRAM_MARGIN, choose_target  # noqa: E402
from lorakit.plan.assumptions import Assumptions  # noqa: E402
from lorakit.plan.estimate import estimate_vram, fp8_file, ram_gib, setup_from_values  # noqa: E402
from lorakit.plan.fit import fit_to_gpu  # noqa: E402
from lorakit.plan.timing import step_time  # noqa: E402

ASSUMED = Assumptions.uncalibrated()
# (card, the guide's tier: batch, blocks_to_swap, 8-bit AdamW, fp8 T5); every tier with fp8_base
TIERS = [
    ("rtx4090", "24 GB: batch 2", 2, 0, False, False),
    ("rtx4060ti-16gb", "16 GB: batch 1 with block swap", 1, None, False, False),
    ("rtx3060-12gb", "12 GB: blocks_to_swap 16, 8-bit AdamW", 1, 16, True, False),
    ("rtx3080-10gb", "10 GB: blocks_to_swap 22, fp8 T5", 1, 22, True, True),
    ("rtx3070-8gb", "8 GB: blocks_to_swap 28, fp8 T5", 1, 28, True, True),
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--presets", nargs="+", default=["flux1-dev", "character"])
    args = parser.parse_args()
    registry = PresetRegistry(include_user_dir=False)
    print("| card (VRAM, budget) | the guide | the guide's setting, est. | lorakit's fit | est. VRAM | system RAM | s/step "
          "| the fit against the whole card |")
    print("|---|---|---:|---|---:|---:|---:|---|")
    for gpu, tier, batch, swap, adam8, t5 in TIERS:
        target = choose_target(gpu)
        values = resolve(registry, args.presets, []).values
        base = setup_from_values(values).with_(fp8_unet=True, fp8_text_encoders=True, batch_size=batch)
        guide = base.with_(blocks_to_swap=swap or 0, optimizer="AdamW8bit" if adam8 else base.optimizer, t5_fp8_file=t5)
        guide_gib = estimate_vram(guide, ASSUMED.overhead_gib).total
        fit_to_gpu(values, target, ASSUMED, images=20)
        chosen = setup_from_values(values)
        whole = resolve(registry, args.presets, []).values  # no 20% margin: the card as the guide counts it
        fit_to_gpu(whole, target.model_copy(update={"vram_total_gib": target.vram_total_gib / (1 - VRAM_MARGIN)}),
                   ASSUMED, images=20)
        seconds = step_time(chosen, target.bf16_tflops or 100.0).seconds_per_step
        print(f"| {target.name} ({target.vram_total_gib:.0f}, {target.budget_gib:.1f} GiB) | {tier} | "
              f"{guide_gib:.1f} GiB{' (swap N/A)' if swap is None else ''} | {describe(values)} | "
              f"{estimate_vram(chosen, ASSUMED.overhead_gib).total:.1f} GiB | {ram_gib(chosen):.0f} GiB | {seconds:.1f} | "
              f"{describe(whole)} |")


def describe(values) -> str:
    chosen = setup_from_values(values)
    parts = [f"batch {chosen.batch_size}"]
    parts += ["fp8_base"] if values["fp8_base"] else ["bf16 base"]
    parts += [str(values["optimizer_type"])]
    parts += [f"blocks_to_swap {chosen.blocks_to_swap}"] if chosen.blocks_to_swap else []
    parts += ["fp8 T5"] if fp8_file(values["t5xxl"]) else []
    parts += [f"{chosen.width}²"] if chosen.width != 1024 else []
    parts += [f"rank {chosen.network_dim}"] if chosen.network_dim != 16 else []
    return ", ".join(parts)


if __name__ == "__main__":
    main()
