"""Fit a plan to its GPU with the seeds' VRAM tables, and choose repeats for flat folders.

Batch size by card memory (seed 004's table; seed 000's "2–3 for 12GB"), and seed 000's low-VRAM
recipe below 10 GB. Values the user set with --set are never touched. Changing the batch keeps
epochs and learning rate as they are: an epoch stays one pass over the data, so a larger batch
means fewer, larger steps.
"""

from __future__ import annotations

from dataclasses import dataclass

from lorakit.findings import Finding, finding
from lorakit.presets import PresetRegistry
from lorakit.probe import TargetGpu
from lorakit.steps import Placed, StepMath, compute_steps
from lorakit.values import Values

LOW_VRAM_PRESET = "lowvram-8gb"

# (smallest card in GiB, batch size, seed row)
BATCH_TABLE = [
    (40.0, 8, "seed 004 · Batch Size · 48 GB (A100): 4-8"),
    (22.0, 4, "seed 004 · Batch Size · 24 GB: 2-4"),
    (14.0, 2, "seed 004 · Batch Size · 16 GB: 1-2"),
    (11.0, 2, "seed 000 · Batch Size · 2–3 for 12GB"),
    (9.5, 1, "seed 004 · Batch Size · 10 GB: 1"),
]


@dataclass
class FitChange:
    key: str
    value: object
    reason: str


def fit_to_gpu(values: Values, target: TargetGpu, registry: PresetRegistry) -> tuple[list[FitChange], list[Finding]]:
    """Change what the user left open to suit the card; returns the changes and the findings they call for."""
    changes: list[FitChange] = []

    def change(key: str, value: object, source: str, note: str) -> None:
        if values.user_set(key) or values.get(key) == value:
            return
        values.set(key, value, source, note)
        changes.append(FitChange(key, value, note))

    if target.vram_total_gib < BATCH_TABLE[-1][0]:
        recipe = registry.get(LOW_VRAM_PRESET)
        for key, entry in recipe.values.items():
            change(key, entry.value, "auto:low-vram", f"{target.vram_total_gib:.0f} GiB card: {entry.from_}")
        return changes, [finding(
            "hardware/low-vram-recipe", "warning", 3,
            f"{target.name} has {target.vram_total_gib:.0f} GiB: lorakit applied seed 000's low-VRAM recipe "
            f"({', '.join(c.key for c in changes)}). " + " ".join(recipe.header.notes),
            "train on a card with 12 GB or more for full 1024² quality (or plan for one with --target-gpu)",
        )] if changes else []
    for min_gib, batch, row in BATCH_TABLE:
        if target.vram_total_gib >= min_gib:
            change("train_batch_size", batch, "auto:vram-table", f"{target.vram_total_gib:.0f} GiB card: {row}")
            break
    return changes, []


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

    Prefers a count that meets both ranges with the total nearest the middle of the step range;
    otherwise the count that misses them by the least (relative to each range).
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
        miss = _distance(result.total_steps, low, high) / low + _distance(seen, low_img, high_img) / low_img
        score = (miss, abs(result.total_steps - middle), r)
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
