"""Image files read the way sd-scripts will read them, from their headers (docs/sd-scripts.md §6).

sd-scripts sizes images with imagesize 1.4.1 (falling back to PIL), which give the stored width and
height and ignore the EXIF orientation, and PIL loads the pixels as stored too: a phone photo tagged
"rotate 90°" trains sideways, in a bucket of the stored shape. So the size here is the stored one, and
the orientation is reported beside it. Only the formats sd-scripts globs are read (PNG, JPEG, WebP,
BMP), each by its magic bytes, as imagesize does.

Two cheap checks catch files PIL refuses only once training has started: a missing end (a truncated
download or copy; PIL raises "image file is truncated") and a pixel count over PIL's decompression-bomb
limit. Each costs a read of the header and one of the last bytes; nothing is decoded.
"""

from __future__ import annotations

import os
import stat
import struct
from dataclasses import dataclass

# PIL raises DecompressionBombError above twice Image.MAX_IMAGE_PIXELS (89,478,485), which sd-scripts leaves as is.
PIXEL_LIMIT = 2 * 89_478_485
HEAD = 4096  # bytes read from the start: every header below fits, except a JPEG's large APP segments
TAIL = 64  # bytes read from the end: a file's end marker, with room for a little padding after it
SCAN_CHUNK = 1 << 20
ROTATING = range(5, 9)  # EXIF orientations that swap width and height (a quarter turn, maybe mirrored)
ORIENTATION_NAMES = {2: "mirrored", 3: "upside down", 4: "upside down, mirrored", 5: "on its side, mirrored",
                     6: "on its side (rotate 90° clockwise to view)", 7: "on its side, mirrored",
                     8: "on its side (rotate 90° counter-clockwise to view)"}


@dataclass(frozen=True, slots=True)
class ImageHeader:
    format: str  # "png", "jpeg", "webp" or "bmp"
    width: int  # as stored: what sd-scripts buckets and trains
    height: int
    orientation: int = 1  # EXIF orientation; 1 (or none) means upright
    truncated: bool = False  # the file ends before the image data does

    @property
    def pixels(self) -> int:
        return self.width * self.height

    @property
    def too_large(self) -> bool:
        return self.pixels > PIXEL_LIMIT


class _File:
    """Random reads from one open file, served from its first HEAD bytes where they suffice."""

    def __init__(self, fd: int, size: int):
        self.fd = fd
        self.size = size
        self.head = os.pread(fd, HEAD, 0)

    def read(self, offset: int, n: int) -> bytes:
        if offset < 0 or n <= 0:
            return b""
        if offset + n <= len(self.head):
            return self.head[offset:offset + n]
        return os.pread(self.fd, n, offset)

    def tail(self) -> bytes:
        return self.read(max(0, self.size - TAIL), TAIL)

    def find(self, needle: bytes, start: int) -> bool:
        """Whether `needle` occurs at or after `start`, reading the file a chunk at a time."""
        offset, carry = start, b""
        while offset < self.size:
            chunk = os.pread(self.fd, SCAN_CHUNK, offset)
            if not chunk:
                return False
            if needle in carry + chunk:
                return True
            carry = chunk[-(len(needle) - 1):]
            offset += len(chunk)
        return False


def read_header(path: str) -> ImageHeader | None:
    """The image's stored size, orientation and completeness; None when it is no image sd-scripts can size."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    except OSError:
        return None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):  # a device or pipe behind a link: never read it
            return None
        return _parse(_File(fd, info.st_size))
    except (OSError, struct.error, ValueError, IndexError):
        return None
    finally:
        os.close(fd)


def _parse(f: _File) -> ImageHeader | None:
    head = f.head
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return _png(f)
    if head.startswith(b"\xff\xd8"):
        return _jpeg(f)
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return _webp(f)
    if head.startswith(b"BM"):
        return _bmp(f)
    return None


# --- PNG: IHDR first; the file ends with the IEND chunk ------------------------------------------

PNG_END = b"IEND\xaeB`\x82"


def _png(f: _File) -> ImageHeader | None:
    if f.read(12, 4) != b"IHDR":
        return None
    width, height = struct.unpack(">II", f.read(16, 8))
    orientation = 1
    offset = 8
    # Walk the chunks before the image data for an eXIf chunk (PIL reads its orientation too).
    while offset + 8 <= f.size:
        length, kind = struct.unpack(">I4s", f.read(offset, 8))
        if kind == b"eXIf":
            orientation = _tiff_orientation(f.read(offset + 8, min(length, 1 << 16)))
        if kind in (b"IDAT", b"IEND"):
            break
        offset += 12 + length
    complete = PNG_END in f.tail() or _png_walk_to_end(f, offset)
    return ImageHeader("png", width, height, orientation, not complete)


def _png_walk_to_end(f: _File, offset: int) -> bool:
    """Follow the chunk lengths to IEND (for files with bytes after it); False when a chunk runs past the end."""
    while offset + 12 <= f.size:
        length, kind = struct.unpack(">I4s", f.read(offset, 8))
        if kind == b"IEND":
            return True
        offset += 12 + length
    return False


# --- JPEG: segments up to the frame header (SOFn); the data ends with the EOI marker FFD9 ---------

SOF_MARKERS = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}
STANDALONE = frozenset(range(0xD0, 0xD8)) | {0x01}


def _jpeg(f: _File) -> ImageHeader | None:
    offset, orientation = 2, 1
    while offset + 4 <= f.size:
        if f.read(offset, 1) != b"\xff":
            return None
        marker = f.read(offset + 1, 1)[0]
        if marker == 0xFF:  # fill byte
            offset += 1
            continue
        if marker in STANDALONE:
            offset += 2
            continue
        if marker in (0xD9, 0xDA):  # end of image or scan data before any frame header
            return None
        (length,) = struct.unpack(">H", f.read(offset + 2, 2))
        if marker == 0xE1 and orientation == 1 and f.read(offset + 4, 6) == b"Exif\x00\x00":
            orientation = _tiff_orientation(f.read(offset + 10, min(length - 8, 1 << 16)))
        if marker in SOF_MARKERS:
            height, width = struct.unpack(">HH", f.read(offset + 5, 4))
            end = offset + 2 + length
            # Anything after EOI (a phone's motion-photo video, a trailer) is ignored by PIL; scan for EOI
            # from the frame header on, past any thumbnail in the EXIF segment, which has an EOI of its own.
            complete = b"\xff\xd9" in f.tail() or f.find(b"\xff\xd9", end)
            return ImageHeader("jpeg", width, height, orientation, not complete)
        offset += 2 + length
    return None


# --- WebP: a RIFF file; the RIFF size says how long it must be ---------------------------------------

def _webp(f: _File) -> ImageHeader | None:
    (riff_size,) = struct.unpack("<I", f.read(4, 4))
    kind = f.read(12, 4)
    if kind == b"VP8 ":
        width, height = (v & 0x3FFF for v in struct.unpack("<HH", f.read(26, 4)))
    elif kind == b"VP8L":
        (bits,) = struct.unpack("<I", f.read(21, 4))
        width, height = (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1
    elif kind == b"VP8X":
        dims = f.read(24, 6)
        width = int.from_bytes(dims[:3], "little") + 1
        height = int.from_bytes(dims[3:], "little") + 1
    else:
        return None
    orientation = _webp_orientation(f, riff_size) if kind == b"VP8X" and f.read(20, 1)[0] & 0x08 else 1
    return ImageHeader("webp", width, height, orientation, f.size < 8 + riff_size)


def _webp_orientation(f: _File, riff_size: int) -> int:
    offset, end = 12, min(f.size, 8 + riff_size)
    while offset + 8 <= end:
        kind, length = struct.unpack("<4sI", f.read(offset, 8))
        if kind == b"EXIF":
            payload = f.read(offset + 8, min(length, 1 << 16))
            return _tiff_orientation(payload[6:] if payload.startswith(b"Exif\x00\x00") else payload)
        offset += 8 + length + (length & 1)
    return 1


# --- BMP: the pixel array's size follows from the header (uncompressed files) --------------------

def _bmp(f: _File) -> ImageHeader | None:
    (data_offset,) = struct.unpack("<I", f.read(10, 4))
    (dib_size,) = struct.unpack("<I", f.read(14, 4))
    if dib_size == 12:
        width, height = struct.unpack("<HH", f.read(18, 4))
        bits, compression = struct.unpack("<H", f.read(24, 2))[0], 0
    elif dib_size >= 40:
        width, height = struct.unpack("<ii", f.read(18, 8))
        bits, compression = struct.unpack("<HI", f.read(28, 6))
    else:
        return None
    height = abs(height)  # negative: rows stored top-down
    needed = data_offset
    if compression in (0, 3):  # BI_RGB, BI_BITFIELDS: rows padded to 4 bytes
        needed += (width * bits + 31) // 32 * 4 * height
    return ImageHeader("bmp", width, height, 1, f.size < needed)


# --- EXIF ---------------------------------------------------------------------------------------------

def _tiff_orientation(tiff: bytes) -> int:
    """Tag 0x0112 of IFD0 in a TIFF-structured EXIF block; 1 when absent or unreadable."""
    if tiff[:4] not in (b"II*\x00", b"MM\x00*"):
        return 1
    endian = "<" if tiff[:2] == b"II" else ">"
    try:
        (ifd,) = struct.unpack(endian + "I", tiff[4:8])
        (count,) = struct.unpack(endian + "H", tiff[ifd:ifd + 2])
        for entry in range(ifd + 2, ifd + 2 + 12 * count, 12):
            tag, kind = struct.unpack(endian + "HH", tiff[entry:entry + 4])
            if tag == 0x0112 and kind == 3:
                (value,) = struct.unpack(endian + "H", tiff[entry + 8:entry + 10])
                return value if 1 <= value <= 8 else 1
    except struct.error:
        return 1
    return 1
