"""The GPU catalog in presets/hardware/gpus.toml: plan for a card you do not have."""

from __future__ import annotations

import difflib
from functools import cache

from pydantic import BaseModel, ConfigDict, computed_field

from lorakit.errors import UserError
from lorakit.util import tomlio
from lorakit.util.resources import presets_dir

GIB = 1024**3
MIB = 1024**2


class GpuSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: str
    name: str
    vram_mib: int
    compute_capability: str
    bf16_tflops: float
    bandwidth_gbs: float
    match: list[str]
    source: str

    @property
    def vram_gib(self) -> float:
        return self.vram_mib * MIB / GIB

    @property
    def cc(self) -> tuple[int, int]:
        major, minor = self.compute_capability.split(".")
        return int(major), int(minor)

    @property
    def bf16(self) -> bool:
        return self.cc >= (8, 0)


class CatalogEntry(GpuSpec):
    """`lorakit probe --catalog --json`: a catalog GPU with its VRAM in GiB and whether it has bf16."""

    @computed_field  # type: ignore[prop-decorator]  # pydantic's documented form
    @property
    def vram_gib(self) -> float:
        return round(self.vram_mib * MIB / GIB, 2)

    @computed_field  # type: ignore[prop-decorator]  # pydantic's documented form
    @property
    def bf16(self) -> bool:
        return self.cc >= (8, 0)

    @classmethod
    def of(cls, spec: GpuSpec) -> CatalogEntry:
        return cls(**spec.model_dump())


@cache
def catalog() -> dict[str, GpuSpec]:
    data = tomlio.load_file(presets_dir() / "hardware" / "gpus.toml")
    return {gpu_id: GpuSpec(id=gpu_id, **fields) for gpu_id, fields in data.items()}


def lookup(gpu_id: str) -> GpuSpec:
    gpus = catalog()
    key = gpu_id.strip().lower()
    if key in gpus:
        return gpus[key]
    close = difflib.get_close_matches(key, list(gpus), n=3, cutoff=0.5)
    hint = f" Did you mean {' or '.join(close)}?" if close else ""
    raise UserError(
        f"unknown GPU '{gpu_id}'.{hint} Known GPUs: {', '.join(sorted(gpus))}.",
        fix="pick one of the catalog names (`lorakit probe --catalog` lists them with their memory), "
        "or `cpu` for a short smoke run on this machine's CPU",
    )


def match_name(nvml_name: str) -> GpuSpec | None:
    """The catalog entry for a name reported by the driver, longest pattern first ("RTX 4060 Ti" before "RTX 4060")."""
    candidates = [(len(p), spec) for spec in catalog().values() for p in spec.match if p.lower() in nvml_name.lower()]
    if not candidates:
        return None
    return max(candidates, key=lambda c: c[0])[1]
