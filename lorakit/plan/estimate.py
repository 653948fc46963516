"""Peak VRAM of an sd-scripts `sdxl_train_network.py` run, and what it is computed from.

Pure arithmetic on docs/estimator.md: parameter counts (docs/estimator.md §1) and the VRAM estimator with its fitted
constants (docs/estimator.md §5.2). A call takes microseconds, so the fit can try every batch size and memory setting.
The constant overhead C (GiB) depends on the machine and can be replaced by a measured calibration
(lorakit.plan.assumptions). Seconds per step are lorakit.plan.timing's.
"""

from __future__ import annotations

import math
import sys
from dataclasses import asdict, dataclass, replace
from functools import cache
from typing import TYPE_CHECKING

from pydantic import BaseModel, ConfigDict

if TYPE_CHECKING:
    from lorakit.config.values import Values

GIB = 2**30

# docs/estimator.md §1.1 [computed]
UNET_PARAMS = 2_567_463_684
TEXT_ENCODER_PARAMS = 817_720_320  # TE1 + TE2
VAE_PARAMS = 83_653_863
UNET_LARGEST_TENSOR = 29_500_000

# docs/estimator.md §1.2: the modules networks.lora wraps, as (in, out, count, where). `where` is the latent downscale the
# module runs at (2: the 640-wide level, 4: the 1280-wide level; 1: full latent size) or CONTEXT for
# attn2's k/v on the 77-token text context. Σ(in+out)·count = 2,659,840 per rank (722 modules).
CONTEXT = 0
CONTEXT_TOKENS = 77
PER_SAMPLE = -1  # the time-embedding Linear: one token per sample
UNET_LORA_MODULES = (
    (1280, 1280, 372, 4), (2048, 1280, 120, CONTEXT), (640, 640, 70, 2), (1280, 10240, 60, 4),
    (5120, 1280, 60, 4), (2048, 640, 20, CONTEXT), (640, 5120, 10, 2), (2560, 640, 10, 2),
)
TEXT_ENCODER_LORA_PER_RANK = 165_888 + 737_280  # TE1 + TE2 (docs/estimator.md §1.2)
TEXT_ENCODER_LORA_MODULES = 72 + 192
# With conv_dim, networks.lora also wraps ResnetBlock2D, Downsample2D and Upsample2D (sd-scripts
# networks/lora.py): their 3×3 convs at conv_dim (lora_down is 3×3, lora_up 1×1), and inside each
# ResnetBlock2D the time-embedding Linear (1280 → out) and the 1×1 skip conv (in ≠ out) at network_dim.
# (in, out, where) of the 17 ResnetBlock2D of SdxlUNet2DConditionModel, input → middle → output blocks:
UNET_RESNETS = (
    (320, 320, 1), (320, 320, 1), (320, 640, 2), (640, 640, 2), (640, 1280, 4), (1280, 1280, 4),
    (1280, 1280, 4), (1280, 1280, 4),
    (2560, 1280, 4), (2560, 1280, 4), (1920, 1280, 4), (1920, 640, 2), (1280, 640, 2), (960, 640, 2),
    (960, 320, 1), (640, 320, 1), (640, 320, 1),
)
# (channels, where the conv runs): Downsample2D ×2, Upsample2D ×2 (their conv runs after upsampling)
UNET_RESAMPLERS = ((320, 2), (640, 4), (1280, 2), (640, 1))
TIME_EMBED_DIM = 1280
SAFETENSORS_BYTES_PER_TENSOR = 140  # header; 3 tensors (down, up, alpha) per module (docs/estimator.md §1.2)

# docs/estimator.md §5.1–5.2 activations per sample in GiB, bf16 autocast, MP = megapixels
K_GC = 1.40  # peak/saved ratio, fitted on F1→F2 and F3→F4
K_NO_GC = 1.2  # not fitted; bounded 0.7–1.7 by user reports
FP32_ACTIVATIONS = 1.6  # mixed_precision=no
TEXT_ENCODER_ACTIVATIONS_GIB = 0.1  # per sample when the text encoders train
VAE_ENCODE_GIB_PER_MP = {True: 1.0, False: 0.5}  # fp32 VAE (no_half_vae) or half [estimate, unverified]
ADAFACTOR_FACTORED_STATES = 0.095  # × params, fine-tuning's fused Adafactor (docs/estimator.md §5.2, computed)

# docs/estimator.md §5.3: C on Linux, on Windows (WDDM), and the pooled mean the published fit used
OVERHEAD_LINUX_GIB = 1.0
OVERHEAD_WINDOWS_GIB = 3.5
OVERHEAD_POOLED_GIB = 2.76

# Optimizer state per parameter (docs/estimator.md §5.2): (states, bytes per state; None = the parameter's own dtype).
# Adafactor's factored row/column states come to ~0.15 bytes per fp32 LoRA parameter.
OPTIMIZER_STATES: dict[str, tuple[float, int | None]] = {
    "adamw": (2, None), "adam": (2, None), "pagedadamw": (2, None), "pagedadamw32bit": (2, 4),
    "adamw8bit": (2, 1), "pagedadamw8bit": (2, 1),
    "lion": (1, None), "lion8bit": (1, 1), "pagedlion8bit": (1, 1),
    "sgdnesterov": (1, None), "sgdnesterov8bit": (1, 1), "sgd": (1, None),
    "adafactor": (0.0375, None), "prodigy": (4, None),
    "dadaptation": (3, None), "dadaptadam": (3, None), "dadaptadampreprint": (3, None), "dadaptadagrad": (3, None),
    "dadaptadan": (5, None), "dadaptadanip": (5, None), "dadaptlion": (2, None), "dadaptsgd": (3, None),
    "adamwschedulefree": (2, None), "radamschedulefree": (2, None), "sgdschedulefree": (1, None),
}
UNKNOWN_OPTIMIZER_STATES = (4, None)  # as much as Prodigy, the largest common one

@dataclass(frozen=True, slots=True)
class TrainingSetup:
    """What the estimate depends on, read from the resolved values (`setup_from_values`)."""

    width: int = 1024
    height: int = 1024
    batch_size: int = 1
    gradient_accumulation_steps: int = 1
    gradient_checkpointing: bool = True
    mixed_precision: str = "bf16"  # no | fp16 | bf16
    full_half: bool = False  # --full_bf16 / --full_fp16: LoRA weights, gradients and states in 16 bits
    fp8_unet: bool = False  # --fp8_base or --fp8_base_unet
    fp8_text_encoders: bool = False  # --fp8_base
    train_unet: bool = True
    train_text_encoders: bool = False
    cache_text_encoder_outputs: bool = False
    cache_latents: bool = True
    vae_fp32: bool = False  # --no_half_vae, or no mixed precision
    network_dim: int = 16
    conv_dim: int | None = None
    optimizer: str = "AdamW"
    attention: str = "sdpa"  # sdpa | xformers | mem_eff_attn | none
    # sdxl_train.py fine-tuning with the fused Adafactor (docs/estimator.md §5.2's variant). lorakit plans LoRA only;
    # this reproduces the published fine-tuning points the constants were fitted on.
    full_finetune: bool = False

    @property
    def megapixels(self) -> float:
        return self.width * self.height / 1e6

    @property
    def text_encoders_resident(self) -> bool:
        return self.train_text_encoders or not self.cache_text_encoder_outputs

    def with_(self, **changes) -> TrainingSetup:
        return replace(self, **changes)


@dataclass(frozen=True, slots=True)
class VramBreakdown:
    """Peak VRAM of one training step by component, GiB."""

    cuda_overhead: float
    unet_weights: float
    text_encoders: float
    vae: float
    trainable_weights: float
    gradients: float
    optimizer_state: float
    cast_copies: float
    text_encoder_activations: float
    unet_activations: float

    @property
    def total(self) -> float:
        return (self.cuda_overhead + self.unet_weights + self.text_encoders + self.vae + self.trainable_weights
                + self.gradients + self.optimizer_state + self.cast_copies + self.text_encoder_activations
                + self.unet_activations)

    def components(self) -> dict[str, float]:
        return asdict(self)


# --- parameters -----------------------------------------------------------------------------------

UNET_LORA_PER_RANK = sum((i + o) * n for i, o, n, _ in UNET_LORA_MODULES)
UNET_LORA_MODULE_COUNT = sum(n for *_, n, _ in UNET_LORA_MODULES)


@cache
def conv_modules(dim: int, conv_dim: int) -> tuple[tuple[int, int], ...]:
    """(params, where) of each module that conv_dim adds."""
    out = []
    for c_in, c_out, where in UNET_RESNETS:
        out.append((conv_dim * (9 * c_in + c_out), where))
        out.append((conv_dim * (9 * c_out + c_out), where))
        out.append((dim * (TIME_EMBED_DIM + c_out), PER_SAMPLE))
        if c_in != c_out:
            out.append((dim * (c_in + c_out), where))
    out += [(conv_dim * (9 * c + c), where) for c, where in UNET_RESAMPLERS]
    return tuple(out)


@cache
def _conv_params(dim: int, conv_dim: int) -> int:
    return sum(p for p, _ in conv_modules(dim, conv_dim))


def lora_params(setup: TrainingSetup) -> int:
    """Trainable LoRA parameters (networks.lora), exact."""
    r = setup.network_dim
    total = 0
    if setup.train_unet:
        total += UNET_LORA_PER_RANK * r
        if setup.conv_dim:
            total += _conv_params(r, setup.conv_dim)
    if setup.train_text_encoders:
        total += TEXT_ENCODER_LORA_PER_RANK * r
    return total


def lora_modules(setup: TrainingSetup) -> int:
    count = 0
    if setup.train_unet:
        count += UNET_LORA_MODULE_COUNT + (len(conv_modules(1, 1)) if setup.conv_dim else 0)
    if setup.train_text_encoders:
        count += TEXT_ENCODER_LORA_MODULES
    return count


def lora_file_bytes(setup: TrainingSetup, save_bytes_per_param: int = 2) -> int:
    """Size of one saved LoRA .safetensors file (docs/estimator.md §1.2: 2 bytes per parameter for fp16/bf16 + headers)."""
    return lora_params(setup) * save_bytes_per_param + SAFETENSORS_BYTES_PER_TENSOR * 3 * lora_modules(setup)


def optimizer_bytes_per_param(optimizer: str, param_bytes: int) -> float:
    states, state_bytes = OPTIMIZER_STATES.get(canonical_optimizer(optimizer), UNKNOWN_OPTIMIZER_STATES)
    return states * (state_bytes if state_bytes is not None else param_bytes)


def canonical_optimizer(name: str) -> str:
    """`bitsandbytes.optim.AdamW8bit` → `adamw8bit`: the class name, lower case."""
    return name.rsplit(".", 1)[-1].lower()


def known_optimizer(name: str) -> bool:
    return canonical_optimizer(name) in OPTIMIZER_STATES


# --- VRAM -----------------------------------------------------------------------------------------

def default_overhead_gib() -> float:
    """docs/estimator.md §5.3's recommendation: C ≈ 1.0 GiB on Linux, 3.5 GiB on Windows (WDDM reserves more)."""
    return OVERHEAD_WINDOWS_GIB if sys.platform == "win32" else OVERHEAD_LINUX_GIB


def activation_gib_per_sample(setup: TrainingSetup) -> float:
    """Peak UNet activations per sample: k · S(MP, checkpointing, attention, precision) (docs/estimator.md §5.1–5.2)."""
    mp = setup.megapixels
    naive = setup.attention == "none"
    if setup.gradient_checkpointing:
        saved = 0.61 * mp + (0.8 * mp * mp if naive else 0.0)
        k = K_GC
    else:
        saved = 0.21 + 7.46 * mp + (15.5 * mp * mp if naive else 0.0)
        k = K_NO_GC
    if setup.mixed_precision == "no":
        saved *= FP32_ACTIVATIONS
    return k * saved


def _weight_bytes(setup: TrainingSetup, fp8: bool) -> int:
    if fp8:
        return 1
    return 4 if setup.mixed_precision == "no" else 2


def estimate_vram(setup: TrainingSetup, overhead_gib: float) -> VramBreakdown:
    b = setup.batch_size
    vae = 0.0
    if not setup.cache_latents:
        vae_bytes = 4 if setup.vae_fp32 else 2
        vae = VAE_PARAMS * vae_bytes / GIB + b * setup.megapixels * VAE_ENCODE_GIB_PER_MP[setup.vae_fp32]
    text_encoders = 0.0
    if setup.text_encoders_resident:
        text_encoders = TEXT_ENCODER_PARAMS * _weight_bytes(setup, setup.fp8_text_encoders) / GIB
    param_bytes = 2 if setup.full_half else 4
    if setup.full_finetune:
        # the UNet's own weights train (counted under unet_weights); fused Adafactor keeps one gradient
        # tensor at a time and factored states
        trainable, cast = 0.0, 0.0
        gradients = UNET_LARGEST_TENSOR * param_bytes / GIB
        optimizer = ADAFACTOR_FACTORED_STATES * UNET_PARAMS * param_bytes / GIB
    else:
        n = lora_params(setup)
        trainable = n * param_bytes / GIB
        gradients = n * param_bytes / GIB
        optimizer = n * optimizer_bytes_per_param(setup.optimizer, param_bytes) / GIB
        # autocast keeps a 16-bit copy of each fp32 LoRA weight for the step
        cast = 0.0 if setup.full_half or setup.mixed_precision == "no" else n * 2 / GIB
    unet_weight_bytes = param_bytes if setup.full_finetune else _weight_bytes(setup, setup.fp8_unet)
    return VramBreakdown(
        cuda_overhead=overhead_gib,
        unet_weights=UNET_PARAMS * unet_weight_bytes / GIB,
        text_encoders=text_encoders,
        vae=vae,
        trainable_weights=trainable,
        gradients=gradients,
        optimizer_state=optimizer,
        cast_copies=cast,
        text_encoder_activations=TEXT_ENCODER_ACTIVATIONS_GIB * b if setup.train_text_encoders else 0.0,
        unet_activations=b * activation_gib_per_sample(setup),
    )


def vram_gib(setup: TrainingSetup, overhead_gib: float) -> float:
    return estimate_vram(setup, overhead_gib).total


def largest_batch(setup: TrainingSetup, overhead_gib: float, budget_gib: float, limit: int = 64) -> int:
    """The largest batch size whose estimate fits the budget (0: not even batch 1). VRAM is linear in batch."""
    one = vram_gib(setup.with_(batch_size=1), overhead_gib)
    if one > budget_gib:
        return 0
    per_sample = vram_gib(setup.with_(batch_size=2), overhead_gib) - one
    if per_sample <= 0:
        return limit
    return max(1, min(limit, 1 + math.floor((budget_gib - one) / per_sample + 1e-9)))


# --- from lorakit's values ------------------------------------------------------------------------

def attention_backend(values: Values) -> str:
    """sd-scripts uses the first of mem_eff_attn > xformers > sdpa; none set is plain attention."""
    for key in ("mem_eff_attn", "xformers", "sdpa"):
        if values[key]:
            return key
    return "none"


def conv_dim(values: Values) -> int | None:
    if values["network_module"] != "networks.lora":
        return None
    for item in values["network_args"] or []:
        key, _, text = item.partition("=")
        if key.strip() == "conv_dim":
            try:
                return int(text.strip()) or None
            except ValueError:
                return None  # Gate 2 reports the malformed argument
    return None


def setup_from_values(values: Values) -> TrainingSetup:
    from lorakit.config.derived import optimizer_name
    from lorakit.config.schema import resolution_tuple

    width, height = resolution_tuple(values["resolution"])
    precision = values["mixed_precision"] or "no"
    return TrainingSetup(
        width=width,
        height=height,
        batch_size=values["train_batch_size"] or 1,
        gradient_accumulation_steps=values["gradient_accumulation_steps"] or 1,
        gradient_checkpointing=bool(values["gradient_checkpointing"]),
        mixed_precision=precision,
        full_half=bool(values["full_bf16"] or values["full_fp16"]),
        fp8_unet=bool(values["fp8_base"] or values["fp8_base_unet"]),
        fp8_text_encoders=bool(values["fp8_base"]),
        train_unet=not values["network_train_text_encoder_only"],
        train_text_encoders=not values["network_train_unet_only"],
        cache_text_encoder_outputs=bool(values["cache_text_encoder_outputs"] or values["cache_text_encoder_outputs_to_disk"]),
        cache_latents=bool(values["cache_latents"] or values["cache_latents_to_disk"]),
        vae_fp32=bool(values["no_half_vae"]) or precision == "no",
        network_dim=values["network_dim"] or 4,  # sd-scripts' default rank
        conv_dim=conv_dim(values),
        optimizer=optimizer_name(values),
        attention=attention_backend(values),
    )


# --- what plan.json stores ------------------------------------------------------------------------

class VramReport(BaseModel):
    """plan.json `vram`: the estimate against the budget, by component (GiB)."""

    model_config = ConfigDict(extra="forbid")

    estimate_gib: float
    budget_gib: float
    vram_total_gib: float
    fits: bool
    calibrated: bool  # the constant overhead comes from a measured calibration
    overhead_source: str
    fit: str  # the --fit mode that chose the settings
    components: dict[str, float]


def vram_report(setup: TrainingSetup, *, overhead_gib: float, budget_gib: float, vram_total_gib: float,
                calibrated: bool, overhead_source: str, fit: str) -> VramReport:
    breakdown = estimate_vram(setup, overhead_gib)
    return VramReport(
        estimate_gib=round(breakdown.total, 3),
        budget_gib=round(budget_gib, 3),
        vram_total_gib=round(vram_total_gib, 3),
        fits=breakdown.total <= budget_gib,
        calibrated=calibrated,
        overhead_source=overhead_source,
        fit=fit,
        components={name: round(gib, 3) for name, gib in breakdown.components().items()},
    )


def explain_vram(setup: TrainingSetup, breakdown: VramBreakdown, overhead_source: str) -> list[tuple[str, float, str]]:
    """(component, GiB, how it was counted) for `lorakit plan --explain-vram`."""
    def dtype(fp8: bool) -> str:
        return "fp8" if fp8 else ("fp32" if setup.mixed_precision == "no" else setup.mixed_precision)

    b = setup.batch_size
    n = lora_params(setup)
    param = "16-bit" if setup.full_half else "fp32"
    parts = " + ".join(p for p, on in (("U-Net", setup.train_unet), ("text encoders", setup.train_text_encoders)) if on)
    conv = f", conv_dim {setup.conv_dim}" if setup.conv_dim else ""
    if setup.full_finetune:
        trained = "fine-tuning: the U-Net's own weights (counted above)"
    else:
        trained = f"LoRA rank {setup.network_dim}{conv} on the {parts}: {n / 1e6:.1f} M parameters in {param}"
    te = ("resident: trained" if setup.train_text_encoders else "resident: outputs not cached") + f", {dtype(setup.fp8_text_encoders)}"
    vae = ("latents cached: the VAE waits on the CPU" if setup.cache_latents else
           f"{'fp32' if setup.vae_fp32 else '16-bit'} weights + encoding {b} image(s) of {setup.megapixels:.2f} MP")
    gc = "with" if setup.gradient_checkpointing else "without"
    attention = "plain attention (no backend)" if setup.attention == "none" else setup.attention
    return [
        ("cuda_overhead", breakdown.cuda_overhead, f"CUDA context, cuBLAS/cuDNN workspaces, allocator reserve: {overhead_source}"),
        ("unet_weights", breakdown.unet_weights, f"frozen U-Net, {UNET_PARAMS / 1e9:.2f} B parameters in {dtype(setup.fp8_unet)}"),
        ("text_encoders", breakdown.text_encoders,
         te if setup.text_encoders_resident else "outputs cached: the text encoders wait on the CPU"),
        ("vae", breakdown.vae, vae),
        ("trainable_weights", breakdown.trainable_weights, trained),
        ("gradients", breakdown.gradients, "one gradient per trainable parameter" if not setup.full_finetune
         else "fused backward pass: one tensor's gradient at a time"),
        ("optimizer_state", breakdown.optimizer_state, "fused Adafactor, factored states" if setup.full_finetune else
         f"{setup.optimizer}: {optimizer_bytes_per_param(setup.optimizer, 2 if setup.full_half else 4):g} bytes per parameter"),
        ("cast_copies", breakdown.cast_copies, "16-bit copies of the fp32 LoRA weights under autocast"),
        ("text_encoder_activations", breakdown.text_encoder_activations,
         f"{TEXT_ENCODER_ACTIVATIONS_GIB} GiB × batch {b}" if setup.train_text_encoders else "the text encoders are not trained"),
        ("unet_activations", breakdown.unet_activations,
         f"batch {b} × {setup.width}×{setup.height}, {gc} gradient checkpointing, {attention}"),
    ]
