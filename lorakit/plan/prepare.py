"""`lorakit dataset prepare`: lay a flat folder of images out as a Kohya `N_token class` folder.

The user's files are never moved or overwritten: images and captions are hard-linked (or
symlinked, or copied) into a new folder. With `upright`, photos whose EXIF orientation says they are
stored turned or mirrored are written as upright copies instead, since sd-scripts trains the pixels as
stored (lorakit.dataset.images).
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from lorakit.dataset.scan import IMAGE_EXTENSIONS, resolve_path, scan_dataset
from lorakit.errors import UserError
from lorakit.findings import Finding
from lorakit.util.files import check_output_folder

CAPTION_EXTENSIONS = (".txt", ".caption", ".cap")
MODES = ("link", "symlink", "copy")


@dataclass
class Prepared:
    folder: Path
    repeats: int
    repeats_reason: str
    files: int
    copied_instead_of_linked: int
    findings: list[Finding]
    upright_copies: int = 0  # EXIF-rotated photos written upright (`upright`)
    rotated_left: int = 0  # EXIF-rotated photos linked as they are (without `upright`)


def prepare_dataset(src: Path, dest: Path, *, token: str, repeats: int | None, mode: str = "link",
                    presets: list[str] | None = None, overrides: list[str] | None = None, upright: bool = False) -> Prepared:
    """`repeats=None` chooses them like `lorakit plan` does for a flat folder (the seeds' step ranges)."""
    token = " ".join(token.split())
    if not token or "/" in token or "\\" in token:
        raise UserError(f"--token {token!r} cannot be part of a folder name.", fix="use words such as 'sks dog'")
    if mode not in MODES:
        raise UserError(f"--mode {mode!r} is not one of {', '.join(MODES)}.")
    if repeats is not None and repeats < 1:
        raise UserError(f"--repeats {repeats}: sd-scripts skips folders with fewer than 1 repeat.", fix="use --repeats 1 or more, or auto")
    if upright:
        from lorakit.dataset.decode import require_pillow

        require_pillow("--upright")  # before anything is written
    scan = scan_dataset(src, token=token)
    if scan.layout != "flat":
        raise UserError(f"'{src}' is already laid out as Kohya repeat folders.", fix="plan it directly with `lorakit plan`")
    if not scan.subsets[0].images:
        raise UserError(f"'{src}' has no images sd-scripts can read ({', '.join(IMAGE_EXTENSIONS[:5])}).")
    check_output_folder(dest, option="DEST")
    if resolve_path(dest, what="DEST", option="DEST").is_relative_to(scan.root):
        raise UserError(f"DEST '{dest}' lies inside SRC '{src}'.", fix="give DEST outside the source folder")

    reason = "--repeats"
    if repeats is None:
        from lorakit.plan.datacheck import check_dataset

        report = check_dataset(src, token=token, presets=presets, overrides=overrides)
        repeats = report.analysis.repeats[0]
        reason = report.analysis.subsets[0].repeats_source
    folder = dest / f"{repeats}_{token}"
    folder.mkdir(parents=True)
    images = scan.subsets[0].images
    rotated = {img.path for img in images if img.orientation != 1}
    sources = [Path(img.path) for img in images if not (upright and img.path in rotated)]
    for image in [Path(img.path) for img in images]:
        sources += [image.with_suffix(ext) for ext in CAPTION_EXTENSIONS if image.with_suffix(ext).is_file()]
    fallbacks = sum(_place(path, folder / path.name, mode) for path in sources)
    if upright:
        from lorakit.dataset.decode import write_upright

        for path in sorted(rotated):
            write_upright(Path(path), folder / Path(path).name)
    return Prepared(folder, repeats, reason, len(sources) + (len(rotated) if upright else 0), fallbacks, scan.findings,
                    upright_copies=len(rotated) if upright else 0, rotated_left=0 if upright else len(rotated))


def _place(source: Path, target: Path, mode: str) -> bool:
    """Link or copy one file; True when a hard link was impossible and it was copied instead."""
    if mode == "symlink":
        target.symlink_to(source.resolve())
        return False
    if mode == "link":
        try:
            os.link(source, target)
            return False
        except OSError:
            pass
    shutil.copy2(source, target)
    return mode == "link"
