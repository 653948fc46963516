"""Seconds per step of an sd-scripts LoRA run of any family.

Pure arithmetic on docs/estimator.md: FLOPs per sample (docs/estimator.md §2; §9.6 for FLUX.1, Chroma and SD 1.5),
the planning efficiencies (docs/estimator.md §6, §9.6) and block swap's transfers (docs/estimator.md §9.3).
The efficiency (the share of the card's peak bf16 FLOP/s a step achieves at batch 1) depends on the
machine and can be replaced by a measured calibration (lorakit.plan.assumptions).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

from pydantic import BaseModel, ConfigDict

from lorakit.plan.arch import T5XXL, arch_for, dit_tokens
from lorakit.plan.estimate import (
    CONTEXT,
    CONTEXT_TOKENS,
    GIB,
    PER_SAMPLE,
    TrainingSetup,
    conv_modules,
    has_conv,
    swapped_gib,
    trained_text_encoders,
)

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
# docs/estimator.md §9.6: SD 1.5's U-Net forward counted at 512², 768², 1024² (0.813, 2.170, 4.713 TFLOP), fitted
SD15_FWD_LINEAR_PER_MP, SD15_FWD_ATTENTION_PER_MP2 = 2.638, 1.771
# FLUX.1 / Chroma: each of the 57 blocks runs 113.25 M multiply-adds per token through its Linears (counted:
# 1.044 TFLOP per double block at 4608 tokens), and joint attention of 4 · 3072 · L² FLOPs over all L tokens;
# sd-scripts checkpoints every block, so checkpointing recomputes the whole forward.
DIT_LINEAR_FLOP_PER_TOKEN_PER_BLOCK = 226.5e6
DIT_ATTENTION_FLOP_PER_TOKEN2_PER_BLOCK = 4 * 3072
CLIP_TOKENS = 77

# docs/estimator.md §6 "plan with these MFU values", midpoints: (batch 1, batch ≥ 4); linear in between.
MFU_CONSUMER = (0.15, 0.25)
MFU_FAST = (0.085, 0.20)  # H100-class cards: at small batch the step is bound by launches and Python
# docs/estimator.md §9.6 [assumed]: FLUX's 3072-wide matmuls over thousands of tokens keep the card busier than
# SDXL's; SD 1.5's smaller U-Net at 512² leaves it idler.
MFU_BY_FAMILY = {
    "flux1": ((0.35, 0.40), (0.30, 0.40)),
    "chroma": ((0.35, 0.40), (0.30, 0.40)),
    "sd15": ((0.10, 0.20), (0.05, 0.15)),
}
FAST_GPU_TFLOPS = 500.0
MFU_BATCH_PLATEAU = 4
# docs/estimator.md §9.3 [assumed]: pageable host-to-device copies over PCIe 4.0 ×16, and the share of the
# shorter of compute and transfer the offloader's per-block waits leave exposed
PCIE_GBS = 12.0
SWAP_EXPOSED = 0.25


@dataclass(frozen=True, slots=True)
class StepTime:
    tflop_per_step: float
    peak_tflops: float
    mfu: float
    seconds_per_step: float
    swap_seconds: float = 0.0  # block swap's transfers per step (overlapping the compute)


def _tokens(setup: TrainingSetup, where: int) -> float:
    if where == CONTEXT:
        return CONTEXT_TOKENS
    if where == PER_SAMPLE:
        return 1
    return (setup.width / 8 / where) * (setup.height / 8 / where)


def lora_forward_tflop(setup: TrainingSetup) -> float:
    """Forward FLOPs of the denoiser's LoRA modules per sample (2 per multiply-add)."""
    if not setup.train_unet:
        return 0.0
    if setup.arch.transformer:
        tokens = dit_tokens(setup.width, setup.height, setup.text_tokens)
        return 2 * setup.network_dim * setup.arch.lora_token_per_rank * tokens / 1e12
    return _lora_forward_tflop(setup.family, setup.network_dim, setup.conv_dim if has_conv(setup) else None,
                               setup.width, setup.height)


@cache
def _lora_forward_tflop(family: str, r: int, conv: int | None, width: int, height: int) -> float:
    size = TrainingSetup(width=width, height=height)
    flops = sum(2 * (i + o) * r * n * _tokens(size, where) for i, o, n, where in arch_for(family).lora_table)
    if conv:
        flops += sum(2 * p * _tokens(size, where) for p, where in conv_modules(r, conv))
    return flops / 1e12


def unet_forward_tflop(megapixels: float) -> float:
    return FWD_LINEAR_PER_MP * megapixels + FWD_ATTENTION_PER_MP2 * megapixels**2


def denoiser_forward_tflop(setup: TrainingSetup) -> tuple[float, float]:
    """(Linear and conv, attention) forward TFLOP per sample of the frozen model."""
    blocks = setup.arch.blocks
    if blocks is not None:
        tokens = dit_tokens(setup.width, setup.height, setup.text_tokens)
        count = blocks.double + blocks.single
        return (count * DIT_LINEAR_FLOP_PER_TOKEN_PER_BLOCK * tokens / 1e12,
                count * DIT_ATTENTION_FLOP_PER_TOKEN2_PER_BLOCK * tokens * tokens / 1e12)
    mp = setup.megapixels
    if setup.family == "sd15":
        return SD15_FWD_LINEAR_PER_MP * mp, SD15_FWD_ATTENTION_PER_MP2 * mp * mp
    return FWD_LINEAR_PER_MP * mp, FWD_ATTENTION_PER_MP2 * mp * mp


def text_encoder_forward_tflop(setup: TrainingSetup, trained_only: bool = False) -> float:
    """SDXL's two CLIPs as counted (§2.2); otherwise 2 FLOPs per parameter per token (CLIP 77, T5 its sequence)."""
    encoders = trained_text_encoders(setup) if trained_only else setup.arch.text_encoders
    if setup.family == "sdxl":
        return TEXT_ENCODERS_FORWARD if encoders else 0.0
    return sum(2 * te.params * (setup.text_tokens if te is T5XXL else CLIP_TOKENS) for te in encoders) / 1e12


def tflop_per_sample(setup: TrainingSetup) -> float:
    linear, attention = denoiser_forward_tflop(setup)
    lora = lora_forward_tflop(setup)
    work = 2 * linear + 3 * attention + 3 * lora
    if setup.gradient_checkpointing:
        recompute = 1.0 if setup.arch.transformer else GC_RECOMPUTE
        work += recompute * (linear + attention) + lora
    if not setup.cache_latents:
        mp = setup.megapixels
        work += VAE_ENCODE_PER_MP * mp + VAE_ENCODE_PER_MP2 * mp * mp
    if setup.text_encoders_resident:
        # every encoder runs forward each step; the trained ones twice more (their backward)
        work += text_encoder_forward_tflop(setup) + 2 * text_encoder_forward_tflop(setup, trained_only=True)
    return work


def tflop_per_step(setup: TrainingSetup) -> float:
    return tflop_per_sample(setup) * setup.batch_size * setup.gradient_accumulation_steps


def _curve(peak_tflops: float, family: str) -> tuple[float, float]:
    consumer, fast = MFU_BY_FAMILY.get(family, (MFU_CONSUMER, MFU_FAST))
    return fast if peak_tflops >= FAST_GPU_TFLOPS else consumer


def assumed_mfu(peak_tflops: float, batch_size: int, family: str = "sdxl") -> float:
    low, high = _curve(peak_tflops, family)
    return low + (high - low) * (min(batch_size, MFU_BATCH_PLATEAU) - 1) / (MFU_BATCH_PLATEAU - 1)


def mfu(peak_tflops: float, batch_size: int, efficiency: float | None = None, family: str = "sdxl") -> float:
    """Model-FLOPs utilisation at this batch. A calibrated efficiency is SDXL's batch-1 MFU on that card
    (lorakit.run.calibrate measures it against the family's own curve): it scales every family's curve."""
    assumed = assumed_mfu(peak_tflops, batch_size, family)
    if efficiency is None:
        return assumed
    return efficiency * assumed / assumed_mfu(peak_tflops, 1)


def swap_transfer_seconds(setup: TrainingSetup) -> float:
    """Each swapped block comes onto the GPU once in the forward pass and once in the backward pass."""
    return 2 * swapped_gib(setup) * GIB / (PCIE_GBS * 1e9) * setup.gradient_accumulation_steps


def step_time(setup: TrainingSetup, peak_tflops: float, efficiency: float | None = None) -> StepTime:
    work = tflop_per_step(setup)
    utilisation = mfu(peak_tflops, setup.batch_size, efficiency, setup.family)
    compute = work / (peak_tflops * utilisation)
    if setup.mixed_precision == "no":
        compute *= FP32_SLOWDOWN
    swap = swap_transfer_seconds(setup)
    seconds = max(compute, swap) + SWAP_EXPOSED * min(compute, swap)
    return StepTime(tflop_per_step=work, peak_tflops=peak_tflops, mfu=utilisation, seconds_per_step=seconds,
                    swap_seconds=swap)


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
    swap_seconds_per_step: float = 0.0  # blocks_to_swap's transfers, which overlap the compute (docs/estimator.md §9.3)


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
        swap_seconds_per_step=round(step.swap_seconds, 4),
    )

