"""One subset folder read the way sd-scripts reads it: its images (sizes from their headers) and captions.

Gate 1's findings per folder come from here, one finding per kind of problem and folder; the layouts
(which folders are subsets at all) are lorakit.dataset.scan's.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from lorakit.dataset.images import ORIENTATION_NAMES, PIXEL_LIMIT, ROTATING, read_header
from lorakit.findings import Finding, finding

# sd-scripts globs exactly these, case-sensitively, without recursion (train_util.IMAGE_EXTENSIONS).
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".PNG", ".JPG", ".JPEG", ".WEBP", ".BMP")
# Image-looking files sd-scripts skips: other cases, or formats it needs plugins for.
OTHER_IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".webp", ".bmp", ".gif", ".tif", ".tiff", ".avif", ".jxl", ".heic"}
# sd-scripts reads a whole caption file to use its first line; lorakit reads at most this much of one.
MAX_CAPTION_BYTES = 1 << 20


@dataclass(slots=True)
class ImageFile:
    path: str
    width: int  # as stored, which is what sd-scripts buckets (the EXIF orientation is not applied)
    height: int
    caption: str | None  # first line, as sd-scripts reads it; None when there is no caption file
    orientation: int = 1  # EXIF orientation: 2-8 train mirrored or turned, as stored


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


def list_dir(path: Path) -> list[os.DirEntry]:
    with os.scandir(path) as it:
        return sorted(it, key=lambda e: e.name)


def has_images(path: str) -> bool:
    try:
        with os.scandir(path) as it:
            return any(e.is_file() and e.name.endswith(IMAGE_EXTENSIONS) for e in it)
    except OSError:
        return False


@dataclass
class _Found:
    """What reading one subset folder ran into, by kind (paths of the images, or of the folders)."""

    unreadable: list[str] = field(default_factory=list)
    truncated: list[str] = field(default_factory=list)
    too_large: list[str] = field(default_factory=list)
    rotated: list[ImageFile] = field(default_factory=list)
    empty: list[str] = field(default_factory=list)
    not_utf8: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    blank: list[str] = field(default_factory=list)
    multiline: list[str] = field(default_factory=list)
    not_a_file: list[str] = field(default_factory=list)  # caption paths that are devices, pipes or folders
    too_long: list[str] = field(default_factory=list)  # caption paths over MAX_CAPTION_BYTES
    skipped: list[str] = field(default_factory=list)  # image-like files sd-scripts does not read
    nested: list[str] = field(default_factory=list)  # folders with images inside the subset
    other_captions: int = 0  # caption-like files with another extension


class Gate1:
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
        try:
            entries = list_dir(subset.image_dir)
        except OSError as exc:
            self.add(finding("dataset/unreadable-folder", "error", 1,
                             f"cannot read {subset.image_dir}: {exc.strerror}.", paths=[str(subset.image_dir)]))
            return
        names = {e.name: e for e in entries}
        found = _Found()
        for entry in entries:
            if entry.is_dir():
                if not entry.name.startswith(".") and has_images(entry.path):
                    found.nested.append(entry.path)
            elif entry.name.startswith("."):
                continue
            elif entry.name.endswith(IMAGE_EXTENSIONS):
                image = self._read_image(entry.path, names, found)
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

    def _read_image(self, path: str, names: dict[str, os.DirEntry], found: _Found) -> ImageFile | None:
        """One image as sd-scripts sees it: its stored size and its caption; None when it has no readable size."""
        header = read_header(path)
        if header is None or header.width <= 0 or header.height <= 0:
            found.unreadable.append(path)
            return None
        if header.truncated:
            found.truncated.append(path)
        if header.too_large:
            found.too_large.append(path)
        caption, problem = self._caption(path, names, found)
        if problem is not None:
            getattr(found, problem.replace("-", "_")).append(path)
        image = ImageFile(path, header.width, header.height, caption, header.orientation)
        if header.orientation != 1:
            found.rotated.append(image)
        return image

    def _caption(self, image_path: str, names: dict[str, os.DirEntry], found: _Found) -> tuple[str | None, str | None]:
        """The caption's first line and its problem: empty, not-utf8, blank, multiline, missing, or None."""
        for candidate in _caption_candidates(image_path, self.caption_extension):
            entry = names.get(os.path.basename(candidate))
            if entry is None:
                continue
            if not entry.is_file():  # sd-scripts' os.path.isfile: a link to /dev/zero is no caption
                found.not_a_file.append(candidate)
                continue
            try:
                with open(candidate, "rb") as f:
                    size = os.fstat(f.fileno()).st_size
                    # Asking for the size (not the limit) keeps the buffer small; +1 sees a file that grew past it.
                    data = f.read(min(size, MAX_CAPTION_BYTES) + 1)
            except OSError:
                continue
            if len(data) > MAX_CAPTION_BYTES:
                found.too_long.append(candidate)
                return None, None
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
        self._report_image_files(where, found)
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

    def _report_image_files(self, where: str, found: _Found) -> None:
        """Files PIL refuses only once sd-scripts has loaded the model, and photos it trains as stored."""
        if found.truncated:
            self.add(finding(
                "dataset/truncated-image", "error", 1,
                f"{len(found.truncated)} image(s) in '{where}' end before their image data does (an interrupted download "
                "or copy); PIL stops sd-scripts with `image file is truncated` when it reaches them, after the model has loaded.",
                "copy or export them again from the original, or remove them", paths=found.truncated))
        if found.too_large:
            self.add(finding(
                "dataset/image-too-large", "error", 1,
                f"{len(found.too_large)} image(s) in '{where}' have more than {PIXEL_LIMIT:,} pixels; PIL refuses them as "
                "decompression bombs (DecompressionBombError) inside sd-scripts, after the model has loaded.",
                "scale them down (e.g. to 4096 pixels on the long side); training resizes them to the buckets anyway",
                paths=found.too_large))
        if found.rotated:
            self._report_rotated(where, found.rotated)

    def _report_rotated(self, where: str, rotated: list[ImageFile]) -> None:
        turned = sum(1 for img in rotated if img.orientation in ROTATING)
        example = rotated[0]
        how = ORIENTATION_NAMES.get(example.orientation, "turned")
        self.add(finding(
            "dataset/exif-rotated", "warning", 1,
            f"{len(rotated)} image(s) in '{where}' are stored turned or mirrored with an EXIF orientation tag that viewers "
            f"apply and sd-scripts does not: they train as stored ({turned} on their side, in buckets of the stored shape; "
            f"e.g. {os.path.basename(example.path)} is stored {example.width}×{example.height}, {how}).",
            "write upright copies: `lorakit dataset prepare SRC DEST --token '...' --upright` (flat folders), "
            "or `exiftran -ai` / `mogrify -auto-orient` on copies of the files",
            paths=[img.path for img in rotated]))

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
        if found.too_long:
            self.add(finding(
                "dataset/caption-too-large", "error", 1,
                f"{len(found.too_long)} caption file(s) in '{where}' are over {MAX_CAPTION_BYTES // (1 << 20)} MiB, which no "
                "caption is (sd-scripts would read each whole, and keep only its first line).",
                "replace them with the caption text, or remove them", paths=found.too_long))
        if found.not_a_file:
            self.add(finding(
                "dataset/caption-not-a-file", "warning", 1,
                f"{len(found.not_a_file)} caption path(s) in '{where}' are not regular files (a link to a device, a pipe or "
                "a folder); sd-scripts ignores them, so their images train as if they had no caption.",
                f"make each a plain {ext} text file", paths=found.not_a_file))
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
