"""Tiny real image files for tests and benchmarks (PNGs without Pillow; JPEG and WebP with it)."""

from __future__ import annotations

import struct
import zlib
from functools import lru_cache
from pathlib import Path


def write_png(path: Path, width: int, height: int, *, pixels: bool = True) -> Path:
    """A valid 1-bit greyscale PNG of the given size (a few hundred bytes, written in microseconds).

    `pixels=False` writes the header and an empty image-data chunk only: a well-formed file of any declared
    size (a 20000×20000 header without 50 MB of rows), for checks that read headers.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(_png_bytes(width, height) if pixels else png_bytes_without_pixels(width, height))
    return path


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def _ihdr(width: int, height: int) -> bytes:
    return _chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0))


@lru_cache(maxsize=64)
def _png_bytes(width: int, height: int) -> bytes:
    row = b"\x00" + b"\x00" * ((width + 7) // 8)
    pixels = zlib.compress(row * height, 9)
    return b"\x89PNG\r\n\x1a\n" + _ihdr(width, height) + _chunk(b"IDAT", pixels) + _chunk(b"IEND", b"")


def png_bytes_without_pixels(width: int, height: int) -> bytes:
    return b"\x89PNG\r\n\x1a\n" + _ihdr(width, height) + _chunk(b"IDAT", zlib.compress(b"")) + _chunk(b"IEND", b"")


def png_with_garbage_pixels(width: int, height: int) -> bytes:
    """Well-formed chunks (so the header and the end look right) whose image data does not inflate."""
    return b"\x89PNG\r\n\x1a\n" + _ihdr(width, height) + _chunk(b"IDAT", b"\x00" * 64) + _chunk(b"IEND", b"")


def write_photo(path: Path, width: int, height: int, *, orientation: int = 1, noise: bool = False) -> Path:
    """A JPEG or WebP (by suffix) stored at width × height, with an EXIF orientation tag unless it is 1.

    `noise` fills it with random pixels, so that the compressed data is most of the file (for cutting it short).
    """
    import os

    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    if noise:
        image = Image.frombytes("RGB", (width, height), os.urandom(width * height * 3))
    else:
        image = Image.new("RGB", (width, height), (120, 90, 60))
    exif = Image.Exif()
    if orientation != 1:
        exif[0x0112] = orientation
    image.save(path, exif=exif.tobytes(), quality=90)
    return path
