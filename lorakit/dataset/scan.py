"""Gate 1: read a dataset folder the way sd-scripts will, and say what it will trip over.

Two layouts: a Kohya folder of `N_token class` subfolders (N repeats, the rest the class tokens),
or a flat folder of images (class tokens from --token, repeats chosen by the plan). Image sizes come
from file headers; no image is decoded.
"""

from __future__ import annotations

import os
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
    what = "regularisation folder" if is_reg else "dataset"
    option = "--reg" if is_reg else "DATASET"
    if not root.exists():
        raise UserError(f"{what} '{root}' does not exist.", fix=f"give {option} as an existing folder of images")
    if not root.is_dir():
        raise UserError(
            f"{what} '{root}' is a file, not a folder.",
            fix=f"give {option} as the folder that holds the images (or the `N_token class` subfolders)",
        )
    root = root.resolve()
    if caption_extension and not caption_extension.startswith("."):
        caption_extension = "." + caption_extension  # sd-scripts adds the dot too
    gate = _Gate1(caption_extension, enable_wildcard)
    try:
        entries = _list_dir(root)
    except OSError as exc:
        raise UserError(f"cannot read {what} '{root}': {exc.strerror}.") from None

    subdirs = [e for e in entries if e.is_dir() and not e.name.startswith(".")]
    numbered = [(e, parse_repeat_folder(e.name)) for e in subdirs]
    kohya = [(e, parsed) for e, parsed in numbered if parsed is not None]
    root_images = [e for e in entries if e.is_file() and e.name.endswith(IMAGE_EXTENSIONS) and not e.name.startswith(".")]

    subsets: list[Subset] = []
    if kohya:
        layout = "kohya"
        if token:
            raise UserError(
                f"--token is for flat folders, but '{root}' holds Kohya `N_token class` folders whose names give the tokens.",
                fix="drop --token, or rename the subfolders (e.g. `10_sks dog`)",
            )
        if root_images:
            gate.add(finding(
                "dataset/root-images-ignored", "warning", 1,
                f"{len(root_images)} image(s) lie directly in {root} next to the repeat folders; sd-scripts only reads the subfolders.",
                "move them into a `N_token class` subfolder",
                paths=[e.path for e in root_images],
            ))
        unnumbered = [e for e, parsed in numbered if parsed is None]
        if unnumbered:
            gate.add(finding(
                "dataset/no-repeat-prefix", "warning", 1,
                f"{len(unnumbered)} subfolder(s) have no repeat count at the start of their name, so sd-scripts skips them: "
                + ", ".join(e.name for e in unnumbered[:5]),
                "name them `N_token class` (e.g. `10_sks dog`) to train on them",
                paths=[e.path for e in unnumbered],
            ))
        for entry, (repeats, tokens) in kohya:
            if repeats < 1:
                gate.add(finding(
                    "dataset/zero-repeats", "warning", 1,
                    f"'{entry.name}' has {repeats} repeats; sd-scripts skips it without a word.",
                    "give it at least 1 repeat (e.g. rename it `1_" + (tokens or "name") + "`), or remove it",
                    paths=[entry.path],
                ))
                continue
            subset = Subset(Path(entry.path), entry.name, repeats, tokens or None, is_reg)
            gate.read_subset(subset)
            subsets.append(subset)
    elif root_images:
        own = parse_repeat_folder(root.name)
        if own is not None and own[0] >= 1 and not token:
            layout = "repeat-folder"
            subset = Subset(root, root.name, own[0], own[1] or None, is_reg)
            gate.add(finding(
                "dataset/repeat-folder-as-dataset", "info", 1,
                f"'{root.name}' is itself a repeat folder: {own[0]} repeats, class tokens '{own[1]}'. "
                "lorakit writes it into dataset.toml directly (sd-scripts' train_data_dir would find no data here).",
            ))
        else:
            layout = "flat"
            subset = Subset(root, root.name, None if not is_reg else 1, token, is_reg,
                            repeats_source="auto" if not is_reg else "regularisation default")
            if not token and not is_reg:
                gate.add(finding(
                    "dataset/no-token", "warning", 1,
                    "a flat folder without --token: the LoRA gets no trigger word, and images without a caption train on an empty prompt.",
                    "pass --token 'sks person' (a rare word plus the class), and put it in the captions",
                ))
        gate.read_subset(subset)
        subsets.append(subset)
        unnumbered_with_images = [e for e in subdirs if _has_images(e.path)]
        if unnumbered_with_images:
            gate.add(finding(
                "dataset/nested-folders", "info", 1,
                f"{len(unnumbered_with_images)} subfolder(s) of {root} hold images that are not used: "
                + ", ".join(e.name for e in unnumbered_with_images[:5]),
                "sd-scripts does not look into subfolders of an image folder",
                paths=[e.path for e in unnumbered_with_images],
            ))
    else:
        layout = "kohya"
        with_images = [e for e in subdirs if _has_images(e.path)]
        if with_images:
            gate.add(finding(
                "dataset/no-repeat-prefix", "error", 1,
                f"{root} has image folders but none is named `N_token class`, so sd-scripts finds no data: "
                + ", ".join(e.name for e in with_images[:5]),
                "rename them (e.g. `10_sks dog`), or lay a flat folder out with "
                "`lorakit dataset prepare SRC DEST --token 'sks dog'`",
                paths=[e.path for e in with_images],
            ))

    if not any(s.images for s in subsets):
        if not gate.has_code("dataset/no-repeat-prefix") or not subsets:
            gate.add(finding(
                "dataset/no-images", "error", 1,
                f"no training images in {root} (sd-scripts reads {', '.join(IMAGE_EXTENSIONS[:5])} files, case as written).",
                "put images in the folder (or its `N_token class` subfolders)",
            ))
    return DatasetScan(root, layout, is_reg, subsets, gate.findings)


def _list_dir(path: Path) -> list[os.DirEntry]:
    with os.scandir(path) as it:
        return sorted(it, key=lambda e: e.name)


def _has_images(path: str) -> bool:
    try:
        with os.scandir(path) as it:
            return any(e.is_file() and e.name.endswith(IMAGE_EXTENSIONS) for e in it)
    except OSError:
        return False


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

        unreadable, empty, not_utf8, missing, blank, multiline = [], [], [], [], [], []
        skipped, nested = [], []
        other_captions = 0
        try:
            entries = _list_dir(subset.image_dir)
        except OSError as exc:
            self.add(finding("dataset/unreadable-folder", "error", 1,
                             f"cannot read {subset.image_dir}: {exc.strerror}.", paths=[str(subset.image_dir)]))
            return
        names = {e.name for e in entries}
        for entry in entries:
            name = entry.name
            if entry.is_dir():
                if not name.startswith(".") and _has_images(entry.path):
                    nested.append(entry.path)
                continue
            if name.startswith("."):
                continue
            if not name.endswith(IMAGE_EXTENSIONS):
                suffix = os.path.splitext(name)[1]
                if suffix.lower() in OTHER_IMAGE_SUFFIXES:
                    skipped.append(entry.path)
                elif suffix in (".caption", ".txt", ".cap") and suffix != self.caption_extension:
                    other_captions += 1
                continue
            width, height = _image_size(entry.path, imagesize)
            if width <= 0 or height <= 0:
                unreadable.append(entry.path)
                continue
            caption, problem = self._caption(entry.path, names)
            if problem == "empty":
                empty.append(entry.path)
            elif problem == "not-utf8":
                not_utf8.append(entry.path)
            elif problem == "missing":
                missing.append(entry.path)
            elif problem == "blank":
                blank.append(entry.path)
            elif problem == "multiline":
                multiline.append(entry.path)
            subset.images.append(ImageFile(entry.path, width, height, caption))
        self._report_subset(subset, unreadable, empty, not_utf8, missing, blank, multiline, skipped, nested, other_captions)

    def _caption(self, image_path: str, names: set[str]) -> tuple[str | None, str | None]:
        # sd-scripts tries <stem><ext>, then for stems of 5+ '_' pieces the stem without its last 4.
        stem = os.path.splitext(image_path)[0]
        candidates = [stem + self.caption_extension]
        pieces = stem.split("_")
        if len(pieces) >= 5:
            candidates.append("_".join(pieces[:-4]) + self.caption_extension)
        for candidate in candidates:
            if os.path.basename(candidate) not in names:
                continue
            try:
                with open(candidate, "rb") as f:
                    data = f.read()
            except OSError:
                continue
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
        return None, "missing"

    def _report_subset(self, subset: Subset, unreadable, empty, not_utf8, missing, blank, multiline,
                       skipped, nested, other_captions) -> None:
        where = subset.folder_name
        ext = self.caption_extension
        if unreadable:
            self.add(finding(
                "dataset/unreadable-image", "error", 1,
                f"{len(unreadable)} image(s) in '{where}' have no readable size (corrupt or not really images); sd-scripts fails on them.",
                "re-save or remove them", paths=unreadable))
        if empty:
            self.add(finding(
                "dataset/empty-caption", "error", 1,
                f"{len(empty)} caption file(s) in '{where}' are empty; sd-scripts stops with `caption file is empty`.",
                "write a caption into each, or delete the empty files", paths=[_caption_path(p, ext) for p in empty]))
        if not_utf8:
            self.add(finding(
                "dataset/caption-not-utf8", "error", 1,
                f"{len(not_utf8)} caption file(s) in '{where}' are not UTF-8; sd-scripts stops with a UnicodeDecodeError.",
                "re-save them as UTF-8 (e.g. `iconv -f cp1252 -t utf-8`)", paths=[_caption_path(p, ext) for p in not_utf8]))
        if missing and not subset.is_reg:
            fallback = f"the class tokens '{subset.class_tokens}'" if subset.class_tokens else "an empty prompt"
            self.add(finding(
                "dataset/missing-captions", "warning", 1,
                f"{len(missing)} of {len(subset.images)} image(s) in '{where}' have no {ext} caption; they train on {fallback}.",
                f"add a {ext} file with the same name as each image", paths=missing))
        if other_captions and missing:
            self.add(finding(
                "dataset/caption-extension-mismatch", "warning", 1,
                f"'{where}' has {other_captions} caption-like file(s) with another extension than caption_extension '{ext}'.",
                "rename the captions, or --set caption_extension=.caption (or whatever they use)",
                key="caption_extension"))
        if blank:
            self.add(finding(
                "dataset/blank-caption", "warning", 1,
                f"{len(blank)} caption(s) in '{where}' have a blank first line; sd-scripts reads only the first line, so they train on an empty prompt.",
                "put the caption on the first line", paths=[_caption_path(p, ext) for p in blank]))
        if multiline:
            self.add(finding(
                "dataset/multi-line-captions", "info", 1,
                f"{len(multiline)} caption(s) in '{where}' have several lines; sd-scripts uses only the first (unless enable_wildcard).",
                "join the lines with commas", paths=[_caption_path(p, ext) for p in multiline]))
        if skipped:
            self.add(finding(
                "dataset/unsupported-files", "info", 1,
                f"{len(skipped)} image-like file(s) in '{where}' are skipped by sd-scripts (it reads .png .jpg .jpeg .webp .bmp in lower or upper case only).",
                "convert them, or rename the extension to lower case", paths=skipped))
        if nested:
            self.add(finding(
                "dataset/nested-folders", "info", 1,
                f"{len(nested)} folder(s) inside '{where}' hold images that sd-scripts does not read (it does not recurse).",
                "move the images up, or make each folder a `N_token class` folder of its own", paths=nested))
        if subset.class_tokens and not subset.is_reg:
            self._check_trigger(subset)

    def _check_trigger(self, subset: Subset) -> None:
        trigger = subset.class_tokens.split()[0].lower() if subset.class_tokens.split() else ""
        captioned = [img for img in subset.images if img.caption]
        lacking = [img.path for img in captioned if trigger not in img.caption.lower()]
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
