"""Which images sd-scripts holds out of training for validation_split (docs/sd-scripts.md §5).

Per training subset (regularisation subsets are never split), sd-scripts shuffles the sorted image
paths and trains on the first ceil(n × (1 − validation_split)). With validation_seed set, each subset's
shuffle starts from random.seed(validation_seed); without it, the shuffles draw one after another from
Python's global random state, which `set_seed(seed)` seeded just before the dataset is built. So the
held-out images are known exactly whenever validation_seed or seed is set; lorakit's default preset sets seed.
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from dataclasses import dataclass

from lorakit.dataset.reading import Subset
from lorakit.findings import Finding, finding


@dataclass(frozen=True)
class ValidationSplit:
    split: float  # validation_split: 0 holds nothing out
    validation_seed: int | None
    seed: int | None  # the training seed: what the shuffles draw from when validation_seed is unset

    @property
    def active(self) -> bool:
        return self.split > 0.0


def held_out(subsets: Sequence[Subset], split: ValidationSplit) -> list[list[int]]:
    """Per subset, the indices into its (sorted, as sd-scripts globs them) images that do not train."""
    shared = random.Random(split.seed)
    result: list[list[int]] = []
    for subset in subsets:
        if not split.active or subset.is_reg:
            result.append([])
            continue
        rng = random.Random(split.validation_seed) if split.validation_seed is not None else shared
        order = list(range(subset.image_count))
        rng.shuffle(order)  # the permutation depends only on the length and the state, as in sd-scripts
        kept = math.ceil(len(order) * (1 - split.split))
        result.append(sorted(order[kept:]))
    return result


def split_findings(subsets: Sequence[Subset], split: ValidationSplit) -> list[Finding]:
    """What sd-scripts' split does that the user would not expect."""
    if not split.active:
        return []
    found = []
    empty = [s for s in subsets if not s.is_reg and s.image_count == 0]
    if empty:
        found.append(finding(
            "dataset/empty-folder-with-validation-split", "error", 1,
            f"{len(empty)} training folder(s) have no images; with validation_split set, sd-scripts stops on an empty "
            "folder with `ValueError: not enough values to unpack` while splitting it.",
            "remove the empty folders, or put images in them", key="validation_split",
            paths=[str(s.image_dir) for s in empty]))
    if split.validation_seed is None and split.seed is None:
        found.append(finding(
            "dataset/validation-split-random", "warning", 1,
            "neither validation_seed nor seed is set, so sd-scripts holds out different images at each launch; the "
            "plan counted one draw, and the buckets (so the steps) may come out a little different.",
            "--set validation_seed=42 (or any number)", key="validation_seed"))
    elif split.validation_seed is None:
        found.append(finding(
            "dataset/validation-overlaps-training", "warning", 1,
            "validation_seed is unset: sd-scripts draws the training images and the validation images with two different "
            "shuffles, so some validation images are training images too and the validation loss reads too low.",
            "--set validation_seed=42 (or any number): both shuffles then start from it and the sets do not overlap",
            key="validation_seed"))
    return found
