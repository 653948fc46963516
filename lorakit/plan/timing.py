"""Seconds per step of an sd-scripts `sdxl_train_network.py` run.

Pure arithmetic on docs/estimator.md: FLOPs per sample (docs/estimator.md §2) and the planning efficiencies (docs/estimator.md §6).
The efficiency (the share of the card's peak bf16 FLOP/s a step achieves at batch 1) depends on the
machine and can be replaced by a measured calibration (lorakit.plan.assumptions).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

from pydantic import BaseModel, ConfigDict

from lorakit.plan.estimate import CONTEXT, CONTEXT_TOKENS, PER_SAMPLE, UNET_LORA_MODULES, TrainingSetup, conv_modules

# docs/estimator.md §2 FLOPs per sample, TFLOP, MP = megapixels. Forward fit 5.94·MP (Linear and conv) + 0.49·MP²
# (attention), within 3% from 512² to 1536². Backward: the frozen layers need only input gradients
# (≈ 1× their forward), attention 2×; gradient checkpointing recomputes ~0.895 of the forward; the
# LoRA modules cost 3× their forward (once more with checkpointing). These reproduce docs/estimator.md §2.2's 14.62 and
# 20.87 TFLOP at 1024² (r32) exactly, and 512² within 2.5%.
FWD_LINEAR_PER_MP = 5.94
FWD_ATTENTION_PER_MP2 = 0.49
GC_RECOMPUTE = 0.895
VAE_ENCODE_PER_MP, VAE_ENCODE_PER_MP2 = 4.13, 0.50  # fitted on docs/estimator.md §2.2's 1.117 (512²) and 4.879 (1024²)
TEXT_ENCODERS_FORWARD = 0.111
FP32_SLOWDOWN = 4.0  # mixed_precision=no runs fp32 matmuls, roughly a quarter of the bf16 tensor rate [assumption]

# docs/estimator.md §6 "plan with these MFU values", midpoints: (batch 1, batch ≥ 4); linear in between.
MFU_CONSUMER = (0.15, 0.25)
MFU_FAST = (0.085, 0.20)  # H100-class cards: at small batch the step is bound by launches and Python
FAST_GPU_TFLOPS = 500.0
MFU_BATCH_PLATEAU = 4


@dataclass(frozen=True, slots=True)
class StepTime:
    tflop_per_step: float
    peak_tflops: float
    mfu: float
    seconds_per_step: float


def _tokens(setup: TrainingSetup, where: int) -> float:
    if where == CONTEXT:
        return CONTEXT_TOKENS
    if where == PER_SAMPLE:
        return 1
    return (setup.width / 8 / where) * (setup.height / 8 / where)


def lora_forward_tflop(setup: TrainingSetup) -> float:
    """Forward FLOPs of the UNet's LoRA modules per sample (2 per multiply-add)."""
    if not setup.train_unet:
        return 0.0
    return _lora_forward_tflop(setup.network_dim, setup.conv_dim, setup.width, setup.height)


@cache
def _lora_forward_tflop(r: int, conv: int | None, width: int, height: int) -> float:
    size = TrainingSetup(width=width, height=height)
    flops = sum(2 * (i + o) * r * n * _tokens(size, where) for i, o, n, where in UNET_LORA_MODULES)
    if conv:
        flops += sum(2 * p * _tokens(size, where) for p, where in conv_modules(r, conv))
    return flops / 1e12


def unet_forward_tflop(megapixels: float) -> float:
    return FWD_LINEAR_PER_MP * megapixels + FWD_ATTENTION_PER_MP2 * megapixels**2


def tflop_per_sample(setup: TrainingSetup) -> float:
    mp = setup.megapixels
    linear, attention = FWD_LINEAR_PER_MP * mp, FWD_ATTENTION_PER_MP2 * mp * mp
    lora = lora_forward_tflop(setup)
    work = 2 * linear + 3 * attention + 3 * lora
    if setup.gradient_checkpointing:
        work += GC_RECOMPUTE * (linear + attention) + lora
    if not setup.cache_latents:
        work += VAE_ENCODE_PER_MP * mp + VAE_ENCODE_PER_MP2 * mp * mp
    if setup.train_text_encoders:
        work += 3 * TEXT_ENCODERS_FORWARD
    elif not setup.cache_text_encoder_outputs:
        work += TEXT_ENCODERS_FORWARD
    return work


def tflop_per_step(setup: TrainingSetup) -> float:
    return tflop_per_sample(setup) * setup.batch_size * setup.gradient_accumulation_steps


def assumed_mfu(peak_tflops: float, batch_size: int) -> float:
    low, high = MFU_FAST if peak_tflops >= FAST_GPU_TFLOPS else MFU_CONSUMER
    return low + (high - low) * (min(batch_size, MFU_BATCH_PLATEAU) - 1) / (MFU_BATCH_PLATEAU - 1)


def mfu(peak_tflops: float, batch_size: int, efficiency: float | None = None) -> float:
    """Model-FLOPs utilisation at this batch; a calibrated efficiency (at batch 1) scales the curve."""
    assumed = assumed_mfu(peak_tflops, batch_size)
    if efficiency is None:
        return assumed
    return efficiency * assumed / assumed_mfu(peak_tflops, 1)


def step_time(setup: TrainingSetup, peak_tflops: float, efficiency: float | None = None) -> StepTime:
    work = tflop_per_step(setup)
    utilisation = mfu(peak_tflops, setup.batch_size, efficiency)
    seconds = work / (peak_tflops * utilisation)
    if setup.mixed_precision == "no":
        seconds *= FP32_SLOWDOWN
    return StepTime(tflop_per_step=work, peak_tflops=peak_tflops, mfu=utilisation, seconds_per_step=seconds)


def seconds_per_sample(setup: TrainingSetup, peak_tflops: float, efficiency: float | None = None) -> float:
    return step_time(setup, peak_tflops, efficiency).seconds_per_step / (setup.batch_size * setup.gradient_accumulation_steps)


class TimeReport(BaseModel):
    """plan.json `time`: seconds per optimizer step and the run's hours (training steps only)."""

    model_config = ConfigDict(extra="forbid")

    seconds_per_step: float | None
    total_hours: float | None
    tflop_per_step: float
    peak_tflops: float | None
    mfu: float | None
    calibrated: bool  # the efficiency comes from a measured calibration
    efficiency_source: str


def time_report(setup: TrainingSetup, *, peak_tflops: float | None, efficiency: float | None, total_steps: int,
                efficiency_source: str) -> TimeReport:
    work = tflop_per_step(setup)
    if not peak_tflops:
        return TimeReport(seconds_per_step=None, total_hours=None, tflop_per_step=round(work, 3), peak_tflops=None,
                          mfu=None, calibrated=efficiency is not None, efficiency_source=efficiency_source)
    step = step_time(setup, peak_tflops, efficiency)
    return TimeReport(
        seconds_per_step=round(step.seconds_per_step, 4),
        total_hours=round(step.seconds_per_step * total_steps / 3600, 3),
        tflop_per_step=round(work, 3),
        peak_tflops=peak_tflops,
        mfu=round(step.mfu, 4),
        calibrated=efficiency is not None,
        efficiency_source=efficiency_source,
    )

