"""Gate 1: read a dataset folder the way sd-scripts will, and say what it will trip over.

Two layouts: a Kohya folder of `N_token class` subfolders (N repeats, the rest the class tokens),
or a flat folder of images (class tokens from --token, repeats chosen by the plan). Image sizes come
from file headers; no image is decoded.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from lorakit.errors import UserError
from lorakit.findings import Finding, finding

# sd-scripts globs exactly these, case-sensitively, without recursion (train_util.IMAGE_EXTENSIONS).
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".PNG", ".JPG", ".JPEG", ".WEBP", ".BMP")
# Image-looking files sd-scripts skips: other cases, or formats it needs plugins for.
OTHER_IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".webp", ".bmp", ".gif", ".tif", ".tiff", ".avif", ".jxl", ".heic"}


@dataclass(slots=True)
class ImageFile:
    path: str
    width: int
    height: int
    caption: str | None  # first line, as sd-scripts reads it; None when there is no caption file


@dataclass
class Subset:
    image_dir: Path
    folder_name: str
    num_repeats: int | None  # None: a flat folder whose repeats the plan chooses
    class_tokens: str | None
    is_reg: bool
    images: list[ImageFile] = field(default_factory=list)
    repeats_source: str = "folder name"

    @property
    def image_count(self) -> int:
        return len(self.images)


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
    scan = _Scan(root, _list_root(root, is_reg), _Gate1(caption_extension, enable_wildcard), token, is_reg)
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
    gate: _Gate1
    token: str | None
    is_reg: bool


def _what(is_reg: bool) -> str:
    return "regularisation folder" if is_reg else "dataset"


def _usable_folder(root: Path, is_reg: bool) -> Path:
    option = "--reg" if is_reg else "DATASET"
    if not root.exists():
        raise UserError(f"{_what(is_reg)} '{root}' does not exist.", fix=f"give {option} as an existing folder of images")
    if not root.is_dir():
        raise UserError(
            f"{_what(is_reg)} '{root}' is a file, not a folder.",
            fix=f"give {option} as the folder that holds the images (or the `N_token class` subfolders)",
        )
    return root.resolve()


def _list_root(root: Path, is_reg: bool) -> _Listing:
    try:
        entries = _list_dir(root)
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
        if repeats < 1:
            scan.gate.add(finding(
                "dataset/zero-repeats", "warning", 1,
                f"'{entry.name}' has {repeats} repeats; sd-scripts skips it without a word.",
                "give it at least 1 repeat (e.g. rename it `1_" + (tokens or "name") + "`), or remove it",
                paths=[entry.path],
            ))
            continue
        subset = Subset(Path(entry.path), entry.name, repeats, tokens or None, scan.is_reg)
        scan.gate.read_subset(subset)
        subsets.append(subset)
    return subsets


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
    with_images = [e for e in scan.listing.subdirs if _has_images(e.path)]
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
    nested = [e for e in scan.listing.subdirs if _has_images(e.path)]
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


def _check_any_images(scan: _Scan, subsets: list[Subset]) -> None:
    if any(s.images for s in subsets):
        return
    if not scan.gate.has_code("dataset/no-repeat-prefix") or not subsets:
        scan.gate.add(finding(
            "dataset/no-images", "error", 1,
            f"no training images in {scan.root} (sd-scripts reads {', '.join(IMAGE_EXTENSIONS[:5])} files, case as written).",
            "put images in the folder (or its `N_token class` subfolders)",
        ))


def _list_dir(path: Path) -> list[os.DirEntry]:
    with os.scandir(path) as it:
        return sorted(it, key=lambda e: e.name)


def _has_images(path: str) -> bool:
    try:
        with os.scandir(path) as it:
            return any(e.is_file() and e.name.endswith(IMAGE_EXTENSIONS) for e in it)
    except OSError:
        return False


@dataclass
class _Found:
    """What reading one subset folder ran into, by kind (paths of the images, or of the folders)."""

    unreadable: list[str] = field(default_factory=list)
    empty: list[str] = field(default_factory=list)
    not_utf8: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    blank: list[str] = field(default_factory=list)
    multiline: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)  # image-like files sd-scripts does not read
    nested: list[str] = field(default_factory=list)  # folders with images inside the subset
    other_captions: int = 0  # caption-like files with another extension


class _Gate1:
    """Collects the findings while reading subsets; one finding per kind of problem and subset."""

    def __init__(self, caption_extension: str, enable_wildcard: bool):
        self.caption_extension = caption_extension
        self.enable_wildcard = enable_wildcard
        self.findings: list[Finding] = []

    def add(self, item: Finding) -> None:
        self.findings.append(item)

    def has_code(self, code: str) -> bool:
        return any(f.code == code for f in self.findings)

    def read_subset(self, subset: Subset) -> None:
        import imagesize

        try:
            entries = _list_dir(subset.image_dir)
        except OSError as exc:
            self.add(finding("dataset/unreadable-folder", "error", 1,
                             f"cannot read {subset.image_dir}: {exc.strerror}.", paths=[str(subset.image_dir)]))
            return
        names = {e.name for e in entries}
        found = _Found()
        for entry in entries:
            if entry.is_dir():
                if not entry.name.startswith(".") and _has_images(entry.path):
                    found.nested.append(entry.path)
            elif entry.name.startswith("."):
                continue
            elif entry.name.endswith(IMAGE_EXTENSIONS):
                image = self._read_image(entry.path, names, found, imagesize)
                if image is not None:
                    subset.images.append(image)
            else:
                self._note_other_file(entry, found)
        self._report_subset(subset, found)

    def _note_other_file(self, entry: os.DirEntry, found: _Found) -> None:
        suffix = os.path.splitext(entry.name)[1]
        if suffix.lower() in OTHER_IMAGE_SUFFIXES:
            found.skipped.append(entry.path)
        elif suffix in (".caption", ".txt", ".cap") and suffix != self.caption_extension:
            found.other_captions += 1

    def _read_image(self, path: str, names: set[str], found: _Found, imagesize) -> ImageFile | None:
        """One image as sd-scripts sees it: its size from the header, and its caption; None when unreadable."""
        width, height = _image_size(path, imagesize)
        if width <= 0 or height <= 0:
            found.unreadable.append(path)
            return None
        caption, problem = self._caption(path, names)
        if problem is not None:
            getattr(found, problem.replace("-", "_")).append(path)
        return ImageFile(path, width, height, caption)

    def _caption(self, image_path: str, names: set[str]) -> tuple[str | None, str | None]:
        """The caption's first line and its problem: empty, not-utf8, blank, multiline, missing, or None."""
        for candidate in _caption_candidates(image_path, self.caption_extension):
            if os.path.basename(candidate) not in names:
                continue
            try:
                with open(candidate, "rb") as f:
                    data = f.read()
            except OSError:
                continue
            return self._first_line(data)
        return None, "missing"

    def _first_line(self, data: bytes) -> tuple[str | None, str | None]:
        if not data:
            return None, "empty"
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            return None, "not-utf8"
        lines = text.splitlines()
        first = lines[0].strip() if lines else ""
        if not first:
            return first, "blank"
        if not self.enable_wildcard and sum(1 for line in lines if line.strip()) > 1:
            return first, "multiline"
        return first, None

    def _report_subset(self, subset: Subset, found: _Found) -> None:
        where = subset.folder_name
        if found.unreadable:
            self.add(finding(
                "dataset/unreadable-image", "error", 1,
                f"{len(found.unreadable)} image(s) in '{where}' have no readable size (corrupt or not really images); "
                "sd-scripts fails on them.",
                "re-save or remove them", paths=found.unreadable))
        self._report_captions(subset, found)
        if found.skipped:
            self.add(finding(
                "dataset/unsupported-files", "info", 1,
                f"{len(found.skipped)} image-like file(s) in '{where}' are skipped by sd-scripts "
                "(it reads .png .jpg .jpeg .webp .bmp in lower or upper case only).",
                "convert them, or rename the extension to lower case", paths=found.skipped))
        if found.nested:
            self.add(finding(
                "dataset/nested-folders", "info", 1,
                f"{len(found.nested)} folder(s) inside '{where}' hold images that sd-scripts does not read (it does not recurse).",
                "move the images up, or make each folder a `N_token class` folder of its own", paths=found.nested))
        if subset.class_tokens and not subset.is_reg:
            self._check_trigger(subset, subset.class_tokens)

    def _report_captions(self, subset: Subset, found: _Found) -> None:
        where, ext = subset.folder_name, self.caption_extension
        if found.empty:
            self.add(finding(
                "dataset/empty-caption", "error", 1,
                f"{len(found.empty)} caption file(s) in '{where}' are empty; sd-scripts stops with `caption file is empty`.",
                "write a caption into each, or delete the empty files", paths=[_caption_path(p, ext) for p in found.empty]))
        if found.not_utf8:
            self.add(finding(
                "dataset/caption-not-utf8", "error", 1,
                f"{len(found.not_utf8)} caption file(s) in '{where}' are not UTF-8; sd-scripts stops with a UnicodeDecodeError.",
                "re-save them as UTF-8 (e.g. `iconv -f cp1252 -t utf-8`)", paths=[_caption_path(p, ext) for p in found.not_utf8]))
        if found.missing and not subset.is_reg:
            fallback = f"the class tokens '{subset.class_tokens}'" if subset.class_tokens else "an empty prompt"
            self.add(finding(
                "dataset/missing-captions", "warning", 1,
                f"{len(found.missing)} of {len(subset.images)} image(s) in '{where}' have no {ext} caption; they train on {fallback}.",
                f"add a {ext} file with the same name as each image", paths=found.missing))
        if found.other_captions and found.missing:
            self.add(finding(
                "dataset/caption-extension-mismatch", "warning", 1,
                f"'{where}' has {found.other_captions} caption-like file(s) with another extension than caption_extension '{ext}'.",
                "rename the captions, or --set caption_extension=.caption (or whatever they use)",
                key="caption_extension"))
        if found.blank:
            self.add(finding(
                "dataset/blank-caption", "warning", 1,
                f"{len(found.blank)} caption(s) in '{where}' have a blank first line; sd-scripts reads only the first line, "
                "so they train on an empty prompt.",
                "put the caption on the first line", paths=[_caption_path(p, ext) for p in found.blank]))
        if found.multiline:
            self.add(finding(
                "dataset/multi-line-captions", "info", 1,
                f"{len(found.multiline)} caption(s) in '{where}' have several lines; sd-scripts uses only the first "
                "(unless enable_wildcard).",
                "join the lines with commas", paths=[_caption_path(p, ext) for p in found.multiline]))

    def _check_trigger(self, subset: Subset, class_tokens: str) -> None:
        trigger = class_tokens.split()[0].lower() if class_tokens.split() else ""
        captioned = [(img.path, img.caption) for img in subset.images if img.caption]
        lacking = [path for path, caption in captioned if trigger not in caption.lower()]
        if trigger and lacking:
            self.add(finding(
                "dataset/token-missing-from-captions", "warning", 1,
                f"{len(lacking)} of {len(captioned)} caption(s) in '{subset.folder_name}' do not contain the trigger '{trigger}', "
                "so the LoRA will not tie what it learns to the trigger.",
                f"start each caption with '{subset.class_tokens}'", paths=lacking))


def _image_size(path: str, imagesize) -> tuple[int, int]:
    try:
        width, height = imagesize.get(path)
    except Exception:  # imagesize raises assorted errors on garbage headers
        return -1, -1
    return int(width), int(height)


def _caption_path(image_path: str, ext: str) -> str:
    return os.path.splitext(image_path)[0] + ext


def _caption_candidates(image_path: str, caption_extension: str) -> list[str]:
    # sd-scripts tries <stem><ext>, then for stems of 5+ '_' pieces the stem without its last 4.
    stem = os.path.splitext(image_path)[0]
    candidates = [stem + caption_extension]
    pieces = stem.split("_")
    if len(pieces) >= 5:
        candidates.append("_".join(pieces[:-4]) + caption_extension)
    return candidates
