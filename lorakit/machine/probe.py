"""What this machine has: NVIDIA GPUs through pynvml, RAM/CPU/disk through psutil.

`LORAKIT_FAKE_GPU` replaces the driver for tests and dry planning: a comma-separated list of
catalog names (`rtx4090,rtx4090`), or `none` for a machine without a GPU. With it, `LORAKIT_FAKE_RAM_GIB`
(default 64) is the machine's RAM, total and available, so a plan does not depend on where it is made.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, computed_field

from lorakit.errors import UserError
from lorakit.machine import gpus as gpu_catalog
from lorakit.machine.gpus import GIB, MIB

VRAM_MARGIN = 0.20  # docs/recommendations.md §8: "We always calculate with a 20% VRAM safety margin"
FAKE_ENV = "LORAKIT_FAKE_GPU"
FAKE_RAM_ENV = "LORAKIT_FAKE_RAM_GIB"
FAKE_RAM_GIB = 64.0


class GpuInfo(BaseModel):
    model_config = ConfigDict(extra="forbid")

    index: int
    name: str
    vram_total_mib: int
    vram_free_mib: int | None
    compute_capability: str
    bf16: bool
    catalog_id: str | None
    bf16_tflops: float | None

    @property
    def vram_total_gib(self) -> float:
        return self.vram_total_mib * MIB / GIB

    @computed_field  # type: ignore[prop-decorator]  # pydantic's documented form; `probe --json` shows it
    @property
    def budget_gib(self) -> float:
        return round(self.vram_total_gib * (1 - VRAM_MARGIN), 2)


class HostInfo(BaseModel):
    model_config = ConfigDict(extra="forbid")

    gpus: list[GpuInfo]
    driver: str | None
    no_gpu_reason: str | None
    fake: bool
    ram_total_gib: float
    ram_available_gib: float
    cpu_count: int
    disk_free_gib: float
    disk_path: str


def probe(disk_path: Path | None = None) -> HostInfo:
    import psutil

    fake = os.environ.get(FAKE_ENV)
    driver: str | None
    reason: str | None
    if fake is not None:
        gpus, driver, reason = _fake_gpus(fake), "fake", None
        if not gpus:
            reason = f"{FAKE_ENV}=none: no GPU (fake probe)"
    else:
        gpus, driver, reason = _nvml_gpus()
    memory = psutil.virtual_memory()
    total, available = memory.total / GIB, memory.available / GIB
    if fake is not None:
        total = available = _fake_ram_gib()
    where = _existing_parent(disk_path or Path.cwd())
    return HostInfo(
        gpus=gpus,
        driver=driver,
        no_gpu_reason=reason,
        fake=fake is not None,
        ram_total_gib=total,
        ram_available_gib=available,
        cpu_count=psutil.cpu_count() or 1,
        disk_free_gib=free_disk_gib(where),
        disk_path=str(where),
    )


def free_disk_gib(path: Path) -> float:
    """Free space on the disk that holds `path` (or would, once its missing folders are made)."""
    return shutil.disk_usage(_existing_parent(path)).free / GIB


def _existing_parent(path: Path) -> Path:
    path = path.resolve()
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def _fake_ram_gib() -> float:
    text = os.environ.get(FAKE_RAM_ENV)
    if text is None:
        return FAKE_RAM_GIB
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if value <= 0:
        raise UserError(f"{FAKE_RAM_ENV}={text!r} is not a number of GiB.", fix=f"{FAKE_RAM_ENV}=32, or unset it")
    return value


def _fake_gpus(spec: str) -> list[GpuInfo]:
    names = [n.strip() for n in spec.split(",") if n.strip()]
    if names == ["none"] or not names:
        return []
    gpus = []
    for index, name in enumerate(names):
        try:
            entry = gpu_catalog.lookup(name)
        except UserError as exc:
            raise UserError(f"{FAKE_ENV}: {exc.message}", fix=exc.fix) from None
        gpus.append(
            GpuInfo(
                index=index,
                name=entry.name,
                vram_total_mib=entry.vram_mib,
                vram_free_mib=entry.vram_mib,
                compute_capability=entry.compute_capability,
                bf16=entry.bf16,
                catalog_id=entry.id,
                bf16_tflops=entry.bf16_tflops,
            )
        )
    return gpus


def _nvml_gpus() -> tuple[list[GpuInfo], str | None, str | None]:
    try:
        import pynvml
    except ImportError:
        return [], None, "the nvidia-ml-py package is not installed (pip install nvidia-ml-py)"
    try:
        pynvml.nvmlInit()
    except pynvml.NVMLError as exc:
        return [], None, f"no NVIDIA driver found ({exc})"
    try:
        driver = _text(pynvml.nvmlSystemGetDriverVersion())
        gpus = []
        for index in range(pynvml.nvmlDeviceGetCount()):
            handle = pynvml.nvmlDeviceGetHandleByIndex(index)
            name = _text(pynvml.nvmlDeviceGetName(handle))
            memory = pynvml.nvmlDeviceGetMemoryInfo(handle)
            major, minor = pynvml.nvmlDeviceGetCudaComputeCapability(handle)
            entry = gpu_catalog.match_name(name)
            gpus.append(
                GpuInfo(
                    index=index,
                    name=name,
                    vram_total_mib=memory.total // MIB,
                    vram_free_mib=memory.free // MIB,
                    compute_capability=f"{major}.{minor}",
                    bf16=(major, minor) >= (8, 0),
                    catalog_id=entry.id if entry else None,
                    bf16_tflops=entry.bf16_tflops if entry else None,
                )
            )
        reason = None if gpus else "the NVIDIA driver reports no GPU"
        return gpus, driver, reason
    except pynvml.NVMLError as exc:
        return [], None, f"the NVIDIA driver failed to answer ({exc})"
    finally:
        try:
            pynvml.nvmlShutdown()
        except pynvml.NVMLError:
            pass


def _text(value: str | bytes) -> str:
    return value.decode() if isinstance(value, bytes) else value


class TargetGpu(BaseModel):
    """The GPU a plan is made for: a catalog card (`--target-gpu`) or the probed one."""

    model_config = ConfigDict(extra="forbid")

    name: str
    catalog_id: str | None
    source: str  # "catalog", "probe" or "fake"
    count: int
    vram_total_gib: float
    vram_free_gib: float | None
    compute_capability: str
    bf16: bool
    bf16_tflops: float | None
    # "cpu": `--target-gpu cpu`, training on this machine's CPU; vram_* then hold its RAM, and cpu_count its cores
    device: Literal["cuda", "cpu"] = "cuda"
    cpu_count: int | None = None
    # the probed machine's system RAM (a catalog card's machine is unknown: None); Gate 3 holds the run's RAM to it
    ram_total_gib: float | None = None
    ram_available_gib: float | None = None

    @property
    def budget_gib(self) -> float:
        """80% of the card (the margin of docs/recommendations.md §8), or what is free right now if that is less.

        On the CPU target: 80% of the machine's RAM, which the run's weights and activations share with the system.
        """
        budget = self.vram_total_gib * (1 - VRAM_MARGIN)
        if self.vram_free_gib is not None and self.source == "probe":
            budget = min(budget, self.vram_free_gib)
        return budget


CPU_TARGET = "cpu"


def cpu_target(host: HostInfo) -> TargetGpu:
    """This machine's CPU as the plan's device: its RAM in place of VRAM, bf16 (torch runs it on any x86 CPU)."""
    return TargetGpu(
        name=f"CPU ({host.cpu_count} cores, {host.ram_total_gib:.0f} GiB RAM)",
        catalog_id=CPU_TARGET,
        source="cpu",
        count=1,
        vram_total_gib=host.ram_total_gib,
        vram_free_gib=None,
        compute_capability="cpu",
        bf16=True,
        bf16_tflops=None,
        device="cpu",
        cpu_count=host.cpu_count,
    )


def choose_target(target_gpu: str | None, host: HostInfo | None = None) -> TargetGpu:
    """`--target-gpu` wins (`cpu`: this machine's CPU); otherwise the first probed GPU; no GPU at all is an
    error naming the option."""
    if target_gpu and target_gpu.strip().lower() == CPU_TARGET:
        return cpu_target(host or probe())
    if target_gpu:
        entry = gpu_catalog.lookup(target_gpu)
        return TargetGpu(
            name=entry.name,
            catalog_id=entry.id,
            source="catalog",
            count=1,
            vram_total_gib=entry.vram_gib,
            vram_free_gib=None,
            compute_capability=entry.compute_capability,
            bf16=entry.bf16,
            bf16_tflops=entry.bf16_tflops,
        )
    host = host or probe()
    if not host.gpus:
        raise UserError(
            f"no GPU to plan for: {host.no_gpu_reason}.",
            fix="name the card the run is for with --target-gpu (for example --target-gpu rtx4090;"
            " `lorakit probe --catalog` lists them), or plan a short smoke run on this machine's CPU with --target-gpu cpu",
        )
    gpu = host.gpus[0]
    return TargetGpu(
        name=gpu.name,
        catalog_id=gpu.catalog_id,
        source="fake" if host.fake else "probe",
        count=len(host.gpus),
        vram_total_gib=gpu.vram_total_gib,
        vram_free_gib=gpu.vram_free_mib * MIB / GIB if gpu.vram_free_mib is not None else None,
        compute_capability=gpu.compute_capability,
        bf16=gpu.bf16,
        bf16_tflops=gpu.bf16_tflops,
        ram_total_gib=round(host.ram_total_gib, 2),
        ram_available_gib=round(host.ram_available_gib, 2),
    )
