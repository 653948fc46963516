"""Which torch build a trainer environment needs: the wheel variant for this machine's driver, and its index.

PyTorch publishes one wheel index per build variant (`https://download.pytorch.org/whl/cu124`,
`.../whl/cpu`, ...). A CUDA build runs on any driver whose CUDA version is at least the build's, so
`auto` takes the newest published variant the driver supports, and `cpu` where there is no NVIDIA driver.
"""

from __future__ import annotations

import os
import re

from lorakit.errors import UserError

TORCH_INDEX_ROOT = "https://download.pytorch.org/whl"
# The CUDA variants PyTorch has published wheels for (each torch release publishes a few of them);
# newest last. pip then takes the newest torch the chosen index holds.
CUDA_VARIANTS = ("cu118", "cu121", "cu124", "cu126", "cu128", "cu129", "cu130")
# For tests and dry planning, like LORAKIT_FAKE_GPU: the driver's CUDA version ("12.4"), or "none".
FAKE_CUDA_ENV = "LORAKIT_FAKE_CUDA"
_VARIANT = re.compile(r"^(cpu|cu\d{3})$")


def variant_cuda(variant: str) -> str | None:
    """The CUDA version a variant is built for ("cu124" → "12.4"); None for cpu."""
    if variant == "cpu":
        return None
    digits = variant[2:]
    return f"{int(digits[:-1])}.{digits[-1]}"


def variant_for_driver(driver_cuda: str | None) -> str:
    """The newest published variant a driver of CUDA version `driver_cuda` runs; cpu without a driver."""
    if driver_cuda is None:
        return "cpu"
    wanted = _version_tuple(driver_cuda)
    usable = [v for v in CUDA_VARIANTS if _version_tuple(variant_cuda(v) or "0") <= wanted]
    if not usable:
        raise UserError(
            f"the NVIDIA driver supports CUDA {driver_cuda}, older than any torch build lorakit knows "
            f"({variant_cuda(CUDA_VARIANTS[0])} is the oldest)",
            fix="update the NVIDIA driver, or name a build: lorakit setup --torch cpu (or cuXXX)",
        )
    return usable[-1]


def choose_variant(choice: str, driver_cuda: str | None = None) -> str:
    """`--torch auto|cpu|cuXXX` → the variant; auto asks the driver (`driver_cuda`, else pynvml)."""
    if choice == "auto":
        return variant_for_driver(driver_cuda if driver_cuda is not None else driver_cuda_version())
    if not _VARIANT.match(choice):
        raise UserError(f"--torch {choice!r} is not auto, cpu or a CUDA variant such as cu124")
    return choice


def index_url(variant: str) -> str:
    return f"{TORCH_INDEX_ROOT}/{variant}"


def build_variant(cuda: str | None) -> str:
    """The variant an installed torch is, from its `torch.version.cuda` ("12.4" → "cu124", None → "cpu")."""
    if not cuda:
        return "cpu"
    major, minor = cuda.split(".")[:2]
    return f"cu{major}{minor}"


def driver_cuda_version() -> str | None:
    """The newest CUDA version the NVIDIA driver supports ("12.4"), read through pynvml; None without a driver."""
    fake = os.environ.get(FAKE_CUDA_ENV)
    if fake is not None:
        return None if fake in ("", "none") else fake
    try:
        import pynvml
    except ImportError:
        return None
    try:
        pynvml.nvmlInit()
    except pynvml.NVMLError:
        return None
    try:
        encoded = pynvml.nvmlSystemGetCudaDriverVersion()  # e.g. 12040
        return f"{encoded // 1000}.{encoded % 1000 // 10}"
    except pynvml.NVMLError:
        return None
    finally:
        try:
            pynvml.nvmlShutdown()
        except pynvml.NVMLError:
            pass


def _version_tuple(version: str) -> tuple[int, ...]:
    return tuple(int(part) for part in version.split(".")[:2])
