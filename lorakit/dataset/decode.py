"""What needs Pillow: decoding every image as sd-scripts will (`dataset check --deep`) and writing upright
copies of EXIF-rotated photos (`dataset prepare --upright`).

Pillow is imported inside the functions, and only these two options need it (`pip install 'lorakit[images]'`);
the header checks of lorakit.dataset.images catch truncated files and oversized images without it.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lorakit.errors import UserError


def require_pillow(option: str) -> Any:
    """PIL.Image, or a UserError naming the option that needs it."""
    try:
        from PIL import Image
    except ImportError:
        raise UserError(f"{option} needs Pillow, which is not installed here.",
                        fix="pip install 'lorakit[images]' (or pip install pillow)") from None
    return Image


@dataclass(frozen=True)
class Undecodable:
    path: str
    reason: str  # PIL's exception, as sd-scripts would meet it


def undecodable(paths: Iterable[str]) -> list[Undecodable]:
    """The images PIL cannot load the way sd-scripts loads them (Image.open, then every pixel)."""
    image_module = require_pillow("--deep")
    problems = []
    with warnings.catch_warnings():
        # Over MAX_IMAGE_PIXELS PIL only warns; twice that it raises, which is reported below.
        warnings.simplefilter("ignore", image_module.DecompressionBombWarning)
        for path in paths:
            try:
                with image_module.open(path) as image:
                    image.load()
            except Exception as exc:  # PIL raises OSError, SyntaxError, ValueError, DecompressionBombError, ...
                problems.append(Undecodable(path, f"{type(exc).__name__}: {exc}"))
    return problems


def write_upright(source: Path, target: Path) -> None:
    """Save `source` with its EXIF orientation applied to the pixels (and the tag dropped) as `target`."""
    image_module = require_pillow("--upright")
    from PIL import ImageOps

    with image_module.open(source) as image:
        kind = image.format
        upright = ImageOps.exif_transpose(image)  # also removes the orientation from its EXIF
        options: dict[str, Any] = {"exif": upright.getexif()}
        if kind in ("JPEG", "WEBP"):
            options["quality"] = 95  # a re-encode; high enough that training cannot tell
        upright.save(target, format=kind, **options)
