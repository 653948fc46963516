"""Gate 1: read a dataset folder the way sd-scripts will, and say what it will trip over.

Two layouts: a Kohya folder of `N_token class` subfolders (N repeats, the rest the class tokens),
or a flat folder of images (class tokens from --token, repeats chosen by the plan). Each image folder
is read by lorakit.dataset.reading; image sizes come from file headers and no image is decoded.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from lorakit.config.limits import MAX_REPEATS
from lorakit.dataset.reading import IMAGE_EXTENSIONS, Gate1, ImageFile, Subset, has_images, list_dir
from lorakit.errors import UserError
from lorakit.findings import Finding, finding

__all__ = ["IMAGE_EXTENSIONS", "DatasetScan", "ImageFile", "Subset", "parse_repeat_folder", "scan_dataset"]

# sd-scripts takes any repeat count; lorakit refuses more than this before counting steps (docs/sd-scripts.md §4):
# real folders use 1 to a few hundred, and a count like 10^9 only makes the step math run out of memory.



@dataclass
class DatasetScan:
    root: Path
    layout: str  # "kohya", "flat" or "repeat-folder"
    is_reg: bool
    subsets: list[Subset]
    findings: list[Finding]

    @property
    def image_count(self) -> int:
        return sum(s.image_count for s in self.subsets)


def parse_repeat_folder(name: str) -> tuple[int, str] | None:
    """sd-scripts' rule: `10_sks dog` -> (10, "sks dog"); a first piece that is not an int -> None."""
    first, _, rest = name.partition("_")
    try:
        return int(first), rest
    except ValueError:
        return None


def scan_dataset(
    root: Path,
    *,
    caption_extension: str = ".txt",
    token: str | None = None,
    is_reg: bool = False,
    enable_wildcard: bool = False,
) -> DatasetScan:
    """Scan DATASET (or a --reg folder); raise UserError for a path that is not a usable folder."""
    root = _usable_folder(root, is_reg)
    if caption_extension and not caption_extension.startswith("."):
        caption_extension = "." + caption_extension  # sd-scripts adds the dot too
    scan = _Scan(root, _list_root(root, is_reg), Gate1(caption_extension, enable_wildcard), token, is_reg)
    layout = choose_layout(root, scan.listing, token)
    subsets = LAYOUTS[layout](scan)
    _check_any_images(scan, subsets)
    return DatasetScan(root, layout, is_reg, subsets, scan.gate.findings)


@dataclass
class _Listing:
    """The dataset folder's own entries, sorted by name."""

    subdirs: list[os.DirEntry]  # not hidden
    images: list[os.DirEntry]  # images lying directly in it, as sd-scripts globs them

    @property
    def repeat_folders(self) -> list[tuple[os.DirEntry, tuple[int, str]]]:
        parsed = ((e, parse_repeat_folder(e.name)) for e in self.subdirs)
        return [(e, p) for e, p in parsed if p is not None]

    @property
    def unnumbered(self) -> list[os.DirEntry]:
        return [e for e in self.subdirs if parse_repeat_folder(e.name) is None]


@dataclass
class _Scan:
    root: Path
    listing: _Listing
    gate: Gate1
    token: str | None
    is_reg: bool


def _what(is_reg: bool) -> str:
    return "regularisation folder" if is_reg else "dataset"


def _usable_folder(root: Path, is_reg: bool) -> Path:
    option = "--reg" if is_reg else "DATASET"
    real = resolve_path(root, what=_what(is_reg), option=option)
    if not real.exists():
        raise UserError(f"{_what(is_reg)} '{root}' does not exist.", fix=f"give {option} as an existing folder of images")
    if not real.is_dir():
        raise UserError(
            f"{_what(is_reg)} '{root}' is a file, not a folder.",
            fix=f"give {option} as the folder that holds the images (or the `N_token class` subfolders)",
        )
    return real


def resolve_path(path: Path, *, what: str, option: str) -> Path:
    """`path` made absolute with its links followed; a symlink loop is the user's to fix, not a traceback
    (Path.resolve raises RuntimeError on one before Python 3.13, and os.stat ELOOP)."""
    loop = UserError(f"{what} '{path}' leads through a symbolic link that loops back on itself.",
                     fix=f"point the link at a real folder, or give {option} as that folder")
    try:
        os.stat(path)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise loop from None
    try:
        return path.resolve()
    except RuntimeError:  # a loop made while we looked
        raise loop from None


def _list_root(root: Path, is_reg: bool) -> _Listing:
    try:
        entries = list_dir(root)
    except OSError as exc:
        raise UserError(f"cannot read {_what(is_reg)} '{root}': {exc.strerror}.") from None
    return _Listing(
        subdirs=[e for e in entries if e.is_dir() and not e.name.startswith(".")],
        images=[e for e in entries if e.is_file() and e.name.endswith(IMAGE_EXTENSIONS) and not e.name.startswith(".")],
    )


def choose_layout(root: Path, listing: _Listing, token: str | None) -> str:
    """How sd-scripts will read the folder.

    "kohya": `N_token class` subfolders; also a folder with neither those nor images, where they are missing.
    "repeat-folder": images in a folder itself named `N_token class` (and no --token to override it).
    "flat": a folder of images; the class tokens come from --token and the plan chooses the repeats.
    """
    if listing.repeat_folders or not listing.images:
        return "kohya"
    own = parse_repeat_folder(root.name)
    if own is not None and own[0] >= 1 and not token:
        return "repeat-folder"
    return "flat"


def _kohya_subsets(scan: _Scan) -> list[Subset]:
    folders = scan.listing.repeat_folders
    if not folders:
        _no_repeat_folders(scan)
        return []
    if scan.token:
        raise UserError(
            f"--token is for flat folders, but '{scan.root}' holds Kohya `N_token class` folders whose names give the tokens.",
            fix="drop --token, or rename the subfolders (e.g. `10_sks dog`)",
        )
    _ignored_beside_repeat_folders(scan)
    subsets = []
    for entry, (repeats, tokens) in folders:
        problem = _repeats_problem(entry.name, entry.path, repeats, tokens)
        if problem is not None:
            scan.gate.add(problem)
            continue
        subset = Subset(Path(entry.path), entry.name, repeats, tokens or None, scan.is_reg)
        scan.gate.read_subset(subset)
        subsets.append(subset)
    return subsets


def _repeats_problem(name: str, path: str, repeats: int, tokens: str) -> Finding | None:
    """A repeat count sd-scripts skips (below 1), or one too large to plan (lorakit's MAX_REPEATS)."""
    if repeats < 1:
        return finding(
            "dataset/zero-repeats", "warning", 1,
            f"'{name}' has {repeats} repeats; sd-scripts skips folders with fewer than 1 repeat without a word.",
            "give it at least 1 repeat (e.g. rename it `1_" + (tokens or "name") + "`), or remove it",
            paths=[path],
        )
    if repeats > MAX_REPEATS:
        shown = f"{repeats:,}" if repeats < 10**30 else f"a {len(str(repeats))}-digit number of"
        return finding(
            "dataset/too-many-repeats", "error", 1,
            f"'{name}' asks for {shown} repeats; lorakit plans at most {MAX_REPEATS:,} repeats per folder "
            "(each image is seen repeats × epochs times), so the folder is left out of the plan.",
            f"rename it with the repeats you mean (e.g. `10_{tokens or 'name'}`)",
            paths=[path],
        )
    return None


def _ignored_beside_repeat_folders(scan: _Scan) -> None:
    images, unnumbered = scan.listing.images, scan.listing.unnumbered
    if images:
        scan.gate.add(finding(
            "dataset/root-images-ignored", "warning", 1,
            f"{len(images)} image(s) lie directly in {scan.root} next to the repeat folders; sd-scripts only reads the subfolders.",
            "move them into a `N_token class` subfolder",
            paths=[e.path for e in images],
        ))
    if unnumbered:
        scan.gate.add(finding(
            "dataset/no-repeat-prefix", "warning", 1,
            f"{len(unnumbered)} subfolder(s) have no repeat count at the start of their name, so sd-scripts skips them: "
            + ", ".join(e.name for e in unnumbered[:5]),
            "name them `N_token class` (e.g. `10_sks dog`) to train on them",
            paths=[e.path for e in unnumbered],
        ))


def _no_repeat_folders(scan: _Scan) -> None:
    with_images = [e for e in scan.listing.subdirs if has_images(e.path)]
    if with_images:
        scan.gate.add(finding(
            "dataset/no-repeat-prefix", "error", 1,
            f"{scan.root} has image folders but none is named `N_token class`, so sd-scripts finds no data: "
            + ", ".join(e.name for e in with_images[:5]),
            "rename them (e.g. `10_sks dog`), or lay a flat folder out with "
            "`lorakit dataset prepare SRC DEST --token 'sks dog'`",
            paths=[e.path for e in with_images],
        ))


def _repeat_folder_subsets(scan: _Scan) -> list[Subset]:
    root = scan.root
    repeats, tokens = parse_repeat_folder(root.name) or (0, "")  # choose_layout saw that the name parses
    problem = _repeats_problem(root.name, str(root), repeats, tokens)
    if problem is not None:
        scan.gate.add(problem)
        return []
    scan.gate.add(finding(
        "dataset/repeat-folder-as-dataset", "info", 1,
        f"'{root.name}' is itself a repeat folder: {repeats} repeats, class tokens '{tokens}'. "
        "lorakit writes it into dataset.toml directly (sd-scripts' train_data_dir would find no data here).",
    ))
    return _one_image_folder(scan, Subset(root, root.name, repeats, tokens or None, scan.is_reg))


def _flat_subsets(scan: _Scan) -> list[Subset]:
    is_reg = scan.is_reg
    subset = Subset(scan.root, scan.root.name, None if not is_reg else 1, scan.token, is_reg,
                    repeats_source="auto" if not is_reg else "regularisation default")
    if not scan.token and not is_reg:
        scan.gate.add(finding(
            "dataset/no-token", "warning", 1,
            "a flat folder without --token: the LoRA gets no trigger word, and images without a caption train on an empty prompt.",
            "pass --token 'sks person' (a rare word plus the class), and put it in the captions",
        ))
    return _one_image_folder(scan, subset)


def _one_image_folder(scan: _Scan, subset: Subset) -> list[Subset]:
    scan.gate.read_subset(subset)
    nested = [e for e in scan.listing.subdirs if has_images(e.path)]
    if nested:
        scan.gate.add(finding(
            "dataset/nested-folders", "info", 1,
            f"{len(nested)} subfolder(s) of {scan.root} hold images that are not used: "
            + ", ".join(e.name for e in nested[:5]),
            "sd-scripts does not look into subfolders of an image folder",
            paths=[e.path for e in nested],
        ))
    return [subset]


LAYOUTS: dict[str, Callable[[_Scan], list[Subset]]] = {
    "kohya": _kohya_subsets, "repeat-folder": _repeat_folder_subsets, "flat": _flat_subsets,
}


# Findings that say why a folder's images are not used: the no-images error repeats them, so that
# `lorakit plan`, which shows only the errors when it refuses, shows the cause too.
SKIPPED_IMAGES = ("dataset/zero-repeats", "dataset/too-many-repeats", "dataset/unreadable-image",
                  "dataset/unsupported-files", "dataset/nested-folders", "dataset/root-images-ignored")


def _check_any_images(scan: _Scan, subsets: list[Subset]) -> None:
    if any(s.images for s in subsets):
        return
    if scan.gate.has_code("dataset/no-repeat-prefix") and subsets:
        return
    causes = [f for f in scan.gate.findings if f.code in SKIPPED_IMAGES]
    message = f"no training images in {scan.root} (sd-scripts reads {', '.join(IMAGE_EXTENSIONS[:5])} files, case as written)."
    if causes:
        message += " Skipped: " + " ".join(f.message for f in causes[:3])
    scan.gate.add(finding(
        "dataset/no-images", "error", 1, message,
        next((f.fix for f in causes if f.fix), "put images in the folder (or its `N_token class` subfolders)"),
        paths=[p for f in causes for p in f.paths],
    ))


def check_reg_overlap(train: DatasetScan, reg: DatasetScan) -> list[Finding]:
    """--reg folders that are training folders too (the same folder, or one path linked to it).

    sd-scripts skips a subset whose image_dir it already has, so a --reg equal to the dataset silently
    trains without regularisation; reached by another path, the same images train as both. Neither is
    what the user meant, and lorakit's step math would count reg samples that are not there.
    """
    train_dirs = {os.path.realpath(s.image_dir): s.folder_name for s in train.subsets}
    both = [s for s in reg.subsets if os.path.realpath(s.image_dir) in train_dirs]
    if not both:
        return []
    names = ", ".join(f"'{s.folder_name}'" for s in both[:5])
    return [finding(
        "dataset/reg-is-dataset", "error", 1,
        f"--reg '{reg.root}' holds the training images themselves ({names} in both). sd-scripts skips a folder it already "
        "has, so there would be no regularisation at all (or, through a linked path, the same images would train as both).",
        "drop --reg, or give --reg a folder of other images of the class (e.g. generated 'photo of a dog' images)",
        paths=[str(s.image_dir) for s in both],
    )]
