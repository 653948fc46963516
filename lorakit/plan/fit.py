"""Fit a plan to its GPU with the VRAM/time estimator, and choose repeats for flat folders.

The fit changes only values you did not `--set`, each with source `auto:<reason>` and a note:

1. precision the card has: before compute capability 8.0 (T4, V100) a preset's bf16 becomes fp16 with
   the fp32 VAE (`no_half_vae`), and a preset's full_bf16 is turned off;
2. free speed-ups: an attention backend (SDPA) when none is set, cached latents (to disk for datasets of
   1000 images or more), cached text-encoder outputs when the text encoders are not trained;
3. batch size and gradient checkpointing: `--fit speed` takes the fastest per image that fits the
   budget, `--fit memory` the smallest estimate; `--fit off` changes nothing;
4. only when nothing fits, memory savers in order of what they cost in quality: train the U-Net only
   (any card), then, on 8–10 GB cards, the seeds' low-VRAM steps (rank 16 with alpha 1, fp8 base
   weights, 768², 512²) with a quality warning. FLUX.1 and Chroma take sd-scripts' own steps first, in
   its guide's order (lorakit.plan.levers): fp8 base weights, 8-bit AdamW, then the fewest `blocks_to_swap`
   that fit (same quality, slower steps, system RAM), with the fp8 T5-XXL file where T5 is what is over.

Batch rule: an epoch stays one pass over images × repeats whatever the batch, so a larger batch means
proportionally fewer steps and every image is still seen repeats × epochs times. When the fit changes
the batch from B0 to B it multiplies the learning rates lorakit chose by √(B/B0) (square-root scaling
for Adam-type optimizers), so a step over B images moves the LoRA as far as the preset meant; adaptive
optimizers (Prodigy, DAdapt*, Adafactor with relative steps) find their own step size and keep theirs,
and if you set any learning rate none is scaled. A warmup given in steps is divided by B/B0 so it
covers the same share of the run. The seeds' step targets are read at batch 1 (lorakit.plan.advice).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

from lorakit.config.derived import image_augmentations, is_adaptive
from lorakit.config.values import Values
from lorakit.dataset.steps import Placed, StepMath, batch1_steps, compute_steps
from lorakit.findings import Finding, finding
from lorakit.machine.probe import TargetGpu
from lorakit.plan.assumptions import Assumptions
from lorakit.plan.estimate import (
    TrainingSetup,
    activation_gib_per_sample,
    largest_batch,
    ram_gib,
    setup_from_values,
    swapped_gib,
    vram_gib,
)
from lorakit.plan.levers import SWAP, Lever, apply_levers, combinations, memory_levers, size_swap, speedup_levers
from lorakit.plan.timing import seconds_per_sample, step_time, tflop_per_sample

FitMode = Literal["speed", "memory", "off"]
FIT_MODES = ("speed", "memory", "off")
MAX_BATCH = 16
LOW_VRAM_MAX_GIB = 10.5  # "8–10 GB cards": a 10 GB card reports 10.0 GiB
LARGE_DATASET_IMAGES = 1000
NOMINAL_TFLOPS = 100.0  # ranks settings by speed for a card whose peak the catalog does not know
LR_KEYS = ("learning_rate", "unet_lr", "text_encoder_lr")


@dataclass
class FitChange:
    key: str
    value: object
    reason: str


@dataclass
class FitResult:
    mode: str
    changes: list[FitChange] = field(default_factory=list)
    findings: list[Finding] = field(default_factory=list)
    fits: bool = True


# --- the fit --------------------------------------------------------------------------------------

@dataclass
class Choice:
    levers: tuple[Lever, ...]
    setup: TrainingSetup
    vram_gib: float
    seconds_per_sample: float


def fit_to_gpu(values: Values, target: TargetGpu, assumptions: Assumptions, *, mode: str = "speed",
               images: int = 0) -> FitResult:
    """Change what the user left open to suit the card; returns the changes and the findings they call for."""
    result = FitResult(mode=mode)
    if mode == "off":
        return result
    source = f"auto:fit-{mode}"

    def change(key: str, value: object, source: str, note: str) -> None:
        if values.user_set(key) or values.get(key) == value:
            return
        values.set(key, value, source, note)
        result.changes.append(FitChange(key, value, note))

    result.findings += _precision_for_card(values, target, change)
    if image_augmentations(values):  # colour or crop augmentation set: latents cannot be cached (sd-scripts asserts)
        for key in ("cache_latents", "cache_latents_to_disk"):
            change(key, False, "auto:augmentation", f"{' and '.join(image_augmentations(values))} changes each image "
                   "every epoch, so its latents cannot be cached")
    for lever in speedup_levers(values, setup_from_values(values)):
        for key, value, why in lever.settings:
            change(key, value, source, why)
    if images >= LARGE_DATASET_IMAGES and values["cache_latents"] and not values["cache_latents_to_disk"]:
        change("cache_latents_to_disk", True, "auto:large-dataset",
               f"{images} images: latents are cached to disk (sd-scripts writes .npz files beside the images), "
               "so later runs skip encoding them and RAM stays free")

    base = setup_from_values(values)
    choice = _search(values, base, target, assumptions, mode)
    if choice is None:
        result.fits = False
        # nothing fits: keep the least memory the open settings allow, so Gate 3's advice starts from there
        choice = _least_memory(values, base, assumptions)
    old_batch = values["train_batch_size"] or 1
    lever_source = "auto:low-vram" if _on_low_vram_card(target) else "auto:vram-saver"
    for lever in choice.levers:
        for key, value, why in lever.settings:
            change(key, value, lever_source, why)
    budget = target.budget_gib
    how = "fastest per image" if mode == "speed" else "least memory"
    fits = f"est. {choice.vram_gib:.1f} of {budget:.1f} GiB" if result.fits else \
        f"est. {choice.vram_gib:.1f} GiB, over the {budget:.1f} GiB budget"
    gc = choice.setup.gradient_checkpointing
    gc_text = "with" if gc else "without"
    change("train_batch_size", choice.setup.batch_size, source,
           f"{how} on {target.name}: batch {choice.setup.batch_size} {gc_text} gradient checkpointing, {fits}")
    change("gradient_checkpointing", gc, source,
           f"{how}: " + _checkpointing_note(choice.setup) + f" ({fits})")
    _scale_for_batch(values, old_batch, choice.setup.batch_size, change)
    result.findings += _quality_findings(target, choice)
    return result


def _search(values: Values, base: TrainingSetup, target: TargetGpu, assumptions: Assumptions, mode: str) -> Choice | None:
    """The cheapest set of memory levers with which something fits, and in it the best batch and checkpointing."""
    allowed = ("any", "low-vram") if _on_low_vram_card(target) else ("any",)
    levers = [lever for lever in memory_levers(values, base, respect_user=True) if lever.fit_uses in allowed]
    budget = target.budget_gib
    peak = target.bf16_tflops or NOMINAL_TFLOPS
    gc_options = [base.gradient_checkpointing] if values.user_set("gradient_checkpointing") else [True, False]
    # A step count you fixed keeps its meaning only at the batch you planned it for: the batch stays.
    steps_fixed = values.user_set("max_train_steps") and not values.user_set("max_train_epochs")
    free_batch = not values.user_set("train_batch_size") and not steps_fixed
    for combo in combinations(levers):
        setup = apply_levers(base, combo)
        best: Choice | None = None
        for gc in gc_options:
            trial = setup.with_(gradient_checkpointing=gc)
            if free_batch:
                batches = range(1, largest_batch(trial, assumptions.overhead_gib, budget, MAX_BATCH) + 1)
            else:
                batches = range(trial.batch_size, trial.batch_size + 1)
            for batch in batches:
                sized = size_swap(combo, trial.with_(batch_size=batch), assumptions.overhead_gib, budget)
                if sized is None:
                    continue
                chosen, candidate = sized
                gib = vram_gib(candidate, assumptions.overhead_gib)
                if gib > budget:
                    continue
                option = Choice(chosen, candidate, gib, seconds_per_sample(candidate, peak, assumptions.efficiency))
                if best is None or _better(option, best, mode):
                    best = option
        if best is not None:
            return best
    return None


def _checkpointing_note(setup: TrainingSetup) -> str:
    """What checkpointing costs and saves for this model and size (docs/estimator.md §2.2, §5.1, §9.4, §9.6)."""
    on, off = setup.with_(gradient_checkpointing=True), setup.with_(gradient_checkpointing=False)
    work = tflop_per_sample(on) / tflop_per_sample(off) - 1
    memory = activation_gib_per_sample(off) / activation_gib_per_sample(on)
    if setup.gradient_checkpointing:
        return f"checkpointing trades ~{work:.0%} more work per step for ~{memory:.0f}× less activation memory"
    return f"without checkpointing a step is ~{work / (1 + work):.0%} less work, and it fits"


def _better(a: Choice, b: Choice, mode: str) -> bool:
    # Block swap is the last resort and its time is an assumption (docs/estimator.md §9.3): the fewest
    # blocks win before speed. Seconds per image are equal beyond the batch where the efficiency stops
    # growing: ties go to less memory.
    if a.setup.blocks_to_swap != b.setup.blocks_to_swap:
        return a.setup.blocks_to_swap < b.setup.blocks_to_swap
    speed = (round(a.seconds_per_sample, 6), a.vram_gib) < (round(b.seconds_per_sample, 6), b.vram_gib)
    memory = (round(a.vram_gib, 6), a.seconds_per_sample) < (round(b.vram_gib, 6), b.seconds_per_sample)
    return speed if mode == "speed" else memory


def _least_memory(values: Values, base: TrainingSetup, assumptions: Assumptions) -> Choice:
    setup = base
    if not values.user_set("gradient_checkpointing"):
        setup = setup.with_(gradient_checkpointing=True)
    if not values.user_set("train_batch_size"):
        setup = setup.with_(batch_size=1)
    return Choice((), setup, vram_gib(setup, assumptions.overhead_gib), 0.0)


def _on_low_vram_card(target: TargetGpu) -> bool:
    return target.vram_total_gib <= LOW_VRAM_MAX_GIB


def _precision_for_card(values: Values, target: TargetGpu, change: Callable[..., None]) -> list[Finding]:
    """Cards before compute capability 8.0 have no bf16: a preset's bf16 becomes fp16 with the fp32 VAE."""
    if target.bf16:
        return []
    why = f"{target.name} (compute capability {target.compute_capability}) has no bf16 (docs/estimator.md §4)"
    switched = []
    if values["mixed_precision"] == "bf16" and not values.user_set("mixed_precision"):
        change("mixed_precision", "fp16", "auto:no-bf16", f"{why}: fp16 instead")
        change("no_half_vae", True, "auto:no-bf16", "fp16 needs the fp32 VAE: the SDXL VAE overflows in fp16 (NaN)")
        switched.append("mixed_precision bf16 → fp16 with no_half_vae")
    if values["full_bf16"] and not values.user_set("full_bf16"):
        change("full_bf16", False, "auto:no-bf16", f"{why}: LoRA weights stay fp32")
        switched.append("full_bf16 off")
    if not switched:
        return []
    return [finding("hardware/fp16-instead-of-bf16", "info", 3,
                    f"{why}, so lorakit changed the preset's {' and '.join(switched)}.",
                    key="mixed_precision")]


def _quality_findings(target: TargetGpu, choice: Choice) -> list[Finding]:
    levers = choice.levers
    if not levers:
        return []
    names = ", ".join(_lever_name(lever) for lever in levers)
    costs = "; ".join(lever.quality for lever in levers)
    swap = _swap_text(choice.setup, target) if any(lever.name == SWAP for lever in levers) else ""
    if _on_low_vram_card(target):
        return [finding(
            "hardware/low-vram-recipe", "warning", 3,
            f"{target.name} has {target.vram_total_gib:.0f} GiB: to fit the {target.budget_gib:.1f} GiB budget lorakit "
            f"applied the low-VRAM steps ({names}). Low-VRAM training trades quality for memory: {costs}.{swap}",
            "train on a card with 12 GB or more for full quality (or plan for one with --target-gpu)")]
    if choice.setup.arch.transformer and not any(lever.name.startswith("train the") for lever in levers):
        return [finding(
            "hardware/flux-memory-steps", "warning", 3,
            f"the {choice.setup.arch.denoiser} does not fit {target.name}'s {target.budget_gib:.1f} GiB budget as the "
            f"preset has it, so lorakit took sd-scripts' FLUX memory steps in the guide's order (docs/families.md §5): "
            f"{names}. What they cost: {costs}.{swap}",
            "plan for a card with more VRAM (--target-gpu), or --set any of these yourself (--fit off keeps the preset)")]
    return [finding(
        "hardware/text-encoders-not-trained", "warning", 3,
        f"the plan does not fit {target.name}'s {target.budget_gib:.1f} GiB budget with the text encoders trained, so "
        f"lorakit applied: {names}. Quality: {costs}.{swap}",
        "--set network_train_unet_only=false together with a change that frees the memory (see `lorakit plan --explain-vram`), "
        "or a card with more VRAM", key="network_train_unet_only")]


def _lever_name(lever: Lever) -> str:
    return f"blocks_to_swap {lever.settings[0][1]}" if lever.name == SWAP else lever.name


def _swap_text(setup: TrainingSetup, target: TargetGpu) -> str:
    """What block swap costs: time per step and system RAM (docs/estimator.md §9.3, §9.5)."""
    peak = target.bf16_tflops or NOMINAL_TFLOPS
    step = step_time(setup, peak)
    unswapped = step_time(setup.with_(blocks_to_swap=0), peak)
    return (f" blocks_to_swap {setup.blocks_to_swap} keeps {swapped_gib(setup):.1f} GiB of the transformer in system RAM "
            f"and moves it over PCIe twice a step (≈{step.swap_seconds:.1f} s, partly hidden behind the compute: est. "
            f"{step.seconds_per_step:.1f} s/step against {unswapped.seconds_per_step:.1f}); the run needs about "
            f"{ram_gib(setup):.0f} GiB of system RAM.")


def _scale_for_batch(values: Values, old: int, new: int, change: Callable[..., None]) -> None:
    """The square-root rule in the module docstring."""
    if new == old or is_adaptive(values) or any(values.user_set(key) for key in LR_KEYS):
        return
    factor = math.sqrt(new / old)
    why = f"batch {old} → {new}: × √({new}/{old}) = {factor:.3g}, so a step over {new} images moves the LoRA as the preset meant"
    for key in LR_KEYS:
        value = values[key]
        if value is None:
            continue
        scaled = [_lr(v * factor) for v in value] if isinstance(value, list) else _lr(value * factor)
        change(key, scaled, "auto:batch-scaling", why)
    warmup = values["lr_warmup_steps"]
    if isinstance(warmup, int) and not isinstance(warmup, bool) and warmup > 0 and not values.user_set("lr_warmup_steps"):
        change("lr_warmup_steps", max(1, round(warmup * old / new)), "auto:batch-scaling",
               f"batch {old} → {new}: the warmup covers the same share of the run in fewer steps")


def _lr(value: float) -> float:
    return float(f"{value:.4g}")


# --- repeats for flat folders ---------------------------------------------------------------------

def steps_for_repeats(placed: Placed, repeats: list[int], values: Values) -> StepMath:
    return compute_steps(
        placed,
        repeats,
        batch_size=values["train_batch_size"],
        gradient_accumulation_steps=values["gradient_accumulation_steps"],
        num_processes=values["num_processes"],
        max_train_epochs=values["max_train_epochs"],
        max_train_steps=values["max_train_steps"],
    )


def choose_repeats(placed: Placed, repeats: list[int], index: int, values: Values) -> tuple[int, str]:
    """Repeats for the flat folder at `index` so total steps and steps per image land in the seeds' ranges.

    The step range is read at batch 1 (steps × effective batch). Prefers a count that meets both ranges
    with the total nearest the middle of the step range; otherwise the count that misses them by the
    least (relative to each range).
    """
    low, high = values["target_steps_min"], values["target_steps_max"]
    low_img, high_img = values["steps_per_image_min"], values["steps_per_image_max"]
    middle = (low + high) / 2
    best: tuple[float, float, int] | None = None
    best_math: StepMath | None = None
    epochs_hint = values["max_train_epochs"] or 1
    for r in range(1, max(2, high_img // epochs_hint + 2)):
        trial = list(repeats)
        trial[index] = r
        result = steps_for_repeats(placed, trial, values)
        seen = r * result.epochs
        total = batch1_steps(result)
        miss = _distance(total, low, high) / low + _distance(seen, low_img, high_img) / low_img
        score = (miss, abs(total - middle), r)
        if best is None or score < best:
            best, best_math = score, result
    assert best is not None and best_math is not None
    r = best[2]
    fits = "meets" if best[0] == 0 else "comes closest to"
    reason = (f"{r} repeats × {best_math.epochs} epochs = {best_math.total_steps} steps, {r * best_math.epochs} per image: "
              f"{fits} the seeds' {low}–{high} steps and {low_img}–{high_img} per image")
    return r, reason


def _distance(x: float, low: float, high: float) -> float:
    return low - x if x < low else (x - high if x > high else 0.0)
