"""Aspect-ratio buckets exactly as sd-scripts builds and fills them (docs/sd-scripts.md §6).

Follows `model_util.make_bucket_resolutions`, `BucketManager.select_bucket` and
`BaseDataset.adjust_min_max_bucket_reso_by_steps` at the pinned commit, including their rounding.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from lorakit.errors import UserError


@dataclass(frozen=True)
class BucketSettings:
    resolution: tuple[int, int]
    enable_bucket: bool = True
    no_upscale: bool = False
    min_reso: int = 256
    max_reso: int = 1024
    steps: int = 64

    def adjusted_min_max(self) -> tuple[int, int]:
        """min rounded down and max rounded up to multiples of the step, as sd-scripts does."""
        low = self.min_reso - self.min_reso % self.steps
        if low <= 0:
            # sd-scripts divides by the smallest bucket width and dies with ZeroDivisionError after loading the model
            raise UserError(
                f"min_bucket_reso {self.min_reso} rounds down to {low} with bucket_reso_steps {self.steps}, and "
                "sd-scripts divides by it.", fix=f"--set bucket_reso_steps=64, or a min_bucket_reso of at least {self.steps}")
        high = self.max_reso
        if high % self.steps:
            high = high + self.steps - high % self.steps
        return low, high


@dataclass(frozen=True)
class Placement:
    bucket: tuple[int, int]
    resized: tuple[int, int]
    ar_error: float
    original: tuple[int, int]

    @property
    def usable(self) -> bool:
        return 0 not in self.bucket

    @property
    def upscale(self) -> float:
        """How much the image is enlarged to cover its bucket (1.0 or less: not enlarged)."""
        return max(self.resized[0] / self.original[0], self.resized[1] / self.original[1])


def make_bucket_resolutions(max_reso: tuple[int, int], min_size: int, max_size: int, divisible: int) -> list[tuple[int, int]]:
    max_area = max_reso[0] * max_reso[1]
    resos = set()
    side = int(math.sqrt(max_area) // divisible) * divisible
    resos.add((side, side))
    width = min_size
    while width <= max_size:
        height = min(max_size, int((max_area // width) // divisible) * divisible)
        if height >= min_size:
            resos.add((width, height))
            resos.add((height, width))
        width += divisible
    return sorted(resos)


class BucketAssigner:
    """Places images into buckets; results are cached per image size (datasets repeat sizes a lot)."""

    def __init__(self, settings: BucketSettings):
        self.settings = settings
        self.max_area = settings.resolution[0] * settings.resolution[1]
        if not settings.enable_bucket:
            self.predefined = [settings.resolution]
        elif settings.no_upscale:
            self.predefined = []
        else:
            low, high = settings.adjusted_min_max()
            self.predefined = make_bucket_resolutions(settings.resolution, low, high, settings.steps)
        self.predefined_set = set(self.predefined)
        self.predefined_ratios = [w / h for w, h in self.predefined]
        self._cache: dict[tuple[int, int], Placement] = {}

    def place(self, width: int, height: int) -> Placement:
        key = (width, height)
        placement = self._cache.get(key)
        if placement is None:
            placement = self._place(width, height)
            self._cache[key] = placement
        return placement

    def _place(self, width: int, height: int) -> Placement:
        aspect = width / height
        if not self.settings.no_upscale or not self.settings.enable_bucket:
            reso = (width, height)
            if reso not in self.predefined_set:
                errors = [abs(r - aspect) for r in self.predefined_ratios]
                reso = self.predefined[errors.index(min(errors))]  # first on ties, like np.argmin
            if aspect > reso[0] / reso[1]:
                scale = reso[1] / height
            else:
                scale = reso[0] / width
            resized = (int(width * scale + 0.5), int(height * scale + 0.5))
        else:
            resized = self._resize_no_upscale(width, height, aspect)
            step = self.settings.steps
            reso = (resized[0] - resized[0] % step, resized[1] - resized[1] % step)
            if 0 in reso:  # a side shorter than one step: sd-scripts divides by zero on it
                return Placement(reso, resized, math.inf, (width, height))
        return Placement(reso, resized, reso[0] / reso[1] - aspect, (width, height))

    def _resize_no_upscale(self, width: int, height: int, aspect: float) -> tuple[int, int]:
        if width * height <= self.max_area:
            return width, height
        step = self.settings.steps

        def round_to_steps(x: float) -> int:
            x = int(x + 0.5)
            return x - x % step

        resized_w = math.sqrt(self.max_area * aspect)
        resized_h = self.max_area / resized_w
        by_width = round_to_steps(resized_w)
        ratio_w = by_width / round_to_steps(by_width / aspect)
        by_height = round_to_steps(resized_h)
        ratio_h = round_to_steps(by_height * aspect) / by_height
        if abs(ratio_w - aspect) < abs(ratio_h - aspect):
            return by_width, int(by_width / aspect + 0.5)
        return int(by_height * aspect + 0.5), by_height
