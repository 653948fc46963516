"""GPU memory and utilisation sampled with pynvml while a run trains (peak VRAM, TensorBoard series).

The GPUs watched are the ones the trainer uses: `--gpus`/`gpu_ids`, else CUDA_VISIBLE_DEVICES in its
environment (the batch runner pins each run that way), else all. Without a driver (or with the fake
probe) there is nothing to sample and `sample()` returns None.
"""

from __future__ import annotations

import os
from typing import Protocol

from lorakit.machine.probe import FAKE_ENV
from lorakit.watch.events import GpuSample

GIB = 1024**3


class Monitor(Protocol):
    def sample(self) -> GpuSample | None: ...

    def close(self) -> None: ...


class NoMonitor:
    def sample(self) -> GpuSample | None:
        return None

    def close(self) -> None:
        pass


class NvmlMonitor:
    """The fullest watched GPU's memory (a plan's budget is per card) and their mean utilisation."""

    def __init__(self, indices: list[int] | None):
        import pynvml

        self._nvml = pynvml
        pynvml.nvmlInit()
        count = pynvml.nvmlDeviceGetCount()
        chosen = [i for i in indices if 0 <= i < count] if indices else list(range(count))
        self._handles = [pynvml.nvmlDeviceGetHandleByIndex(i) for i in chosen]

    def sample(self) -> GpuSample | None:
        if not self._handles:
            return None
        try:
            used = max(self._nvml.nvmlDeviceGetMemoryInfo(h).used for h in self._handles)
            rates = [self._nvml.nvmlDeviceGetUtilizationRates(h).gpu for h in self._handles]
        except self._nvml.NVMLError:
            return None
        return GpuSample(used / GIB, sum(rates) / len(rates))

    def close(self) -> None:
        try:
            self._nvml.nvmlShutdown()
        except self._nvml.NVMLError:
            pass


def watched_gpus(gpu_ids: str | None, env: dict[str, str]) -> list[int] | None:
    """Indices to watch, or None for all; UUIDs or names in CUDA_VISIBLE_DEVICES also mean all."""
    text = gpu_ids or env.get("CUDA_VISIBLE_DEVICES")
    if not text or text == "all":
        return None
    parts = [p.strip() for p in text.split(",") if p.strip()]
    return [int(p) for p in parts] if parts and all(p.isdigit() for p in parts) else None


def open_monitor(gpu_ids: str | None, env: dict[str, str], *, cpu: bool) -> Monitor:
    if cpu or os.environ.get(FAKE_ENV) is not None:
        return NoMonitor()
    try:
        return NvmlMonitor(watched_gpus(gpu_ids, env))
    except Exception:  # no pynvml, no driver, or a driver that refuses: training goes on without samples
        return NoMonitor()
