"""The header of a `.safetensors` file, read without the safetensors package or torch.

The format: an 8-byte little-endian header length, a JSON header (tensor name → dtype, shape,
data_offsets, plus an optional `__metadata__` of strings), then the tensor bytes. Reading the
header is enough to tell a truncated download, a LoRA and a base checkpoint apart, and to get the
`ss_*` training metadata sd-scripts writes into a LoRA.
"""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass
from pathlib import Path

MAX_HEADER_BYTES = 100_000_000  # the safetensors library refuses larger headers too


@dataclass(frozen=True)
class SafetensorsHeader:
    metadata: dict[str, str]
    tensors: dict[str, dict]
    data_bytes: int  # what the header says follows it

    @property
    def is_lora(self) -> bool:
        return bool(self.tensors) and all(name.startswith(("lora_", "lycoris_")) for name in self.tensors)


def read_header(path: Path) -> SafetensorsHeader:
    """The parsed header; ValueError says what is wrong with a file that is not a complete safetensors file."""
    size = path.stat().st_size
    with open(path, "rb") as f:
        head = f.read(8)
        if len(head) < 8:
            raise ValueError("shorter than a safetensors header")
        (length,) = struct.unpack("<Q", head)
        if length > MAX_HEADER_BYTES or 8 + length > size:
            raise ValueError(f"its header claims {length} bytes, but the file has {size}")
        raw = f.read(length)
    try:
        header = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        raise ValueError("its header is not JSON") from None
    if not isinstance(header, dict):
        raise ValueError("its header is not a JSON object")
    metadata = header.pop("__metadata__", None) or {}
    if not isinstance(metadata, dict):
        raise ValueError("its __metadata__ is not a JSON object")
    try:
        data_bytes = max((int(t["data_offsets"][1]) for t in header.values()), default=0)
    except (TypeError, KeyError, IndexError, ValueError):
        raise ValueError("a tensor entry has no valid data_offsets") from None
    if 8 + length + data_bytes > size:
        raise ValueError(f"it is truncated: the tensors need {8 + length + data_bytes} bytes, the file has {size}")
    return SafetensorsHeader({str(k): str(v) for k, v in metadata.items()}, header, data_bytes)
