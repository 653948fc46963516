"""Tiny real image files for tests and benchmarks (no Pillow needed)."""

from __future__ import annotations

import struct
import zlib
from functools import lru_cache
from pathlib import Path


def write_png(path: Path, width: int, height: int) -> Path:
    """A valid 1-bit greyscale PNG of the given size (a few hundred bytes, written in microseconds)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(_png_bytes(width, height))
    return path


@lru_cache(maxsize=64)
def _png_bytes(width: int, height: int) -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    row = b"\x00" + b"\x00" * ((width + 7) // 8)
    pixels = zlib.compress(row * height, 9)
    header = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", pixels) + chunk(b"IEND", b"")
