"""Peak VRAM (and system RAM) of an sd-scripts LoRA run of any family, and what it is computed from.

Pure arithmetic on docs/estimator.md: parameter counts (docs/estimator.md §1, §9 for FLUX.1, Chroma and SD 1.5,
read through lorakit.plan.arch) and the VRAM estimator with its fitted constants (docs/estimator.md §5.2). A call
takes microseconds, so the fit can try every batch size and memory setting. The constant overhead C (GiB) depends
on the machine and can be replaced by a measured calibration (lorakit.plan.assumptions). Seconds per step are lorakit.plan.timing's.
"""

from __future__ import annotations

import math
import sys
from dataclasses import asdict, dataclass, replace
from functools import cache
from typing import TYPE_CHECKING

from lorakit.plan.arch import (
    CONTEXT,
    CONTEXT_TOKENS,
    GIB,
    PER_SAMPLE,
    SDXL_LORA_TABLE,
    T5XXL,
    Arch,
    TextEncoder,
    arch_for,
    dit_saved_gib,
    dit_tokens,
    unet_saved_gib,
)

if TYPE_CHECKING:
    from lorakit.config.values import Values

__all__ = ["CONTEXT", "CONTEXT_TOKENS", "PER_SAMPLE", "GIB"]

# docs/estimator.md §1.1 [computed]: SDXL (the other families' counts are lorakit.plan.arch's)
UNET_PARAMS = arch_for("sdxl").params
TEXT_ENCODER_PARAMS = arch_for("sdxl").text_encoder_params  # TE1 + TE2
VAE_PARAMS = arch_for("sdxl").vae_params
UNET_LARGEST_TENSOR = 29_500_000

# docs/estimator.md §1.2: the modules networks.lora wraps in SDXL's U-Net, as (in, out, count, where)
UNET_LORA_MODULES = SDXL_LORA_TABLE
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
T5_ACTIVATIONS_GIB = 0.5  # per sample when T5-XXL trains (train_t5xxl) [assumed]
CACHING_TRANSIENT_GIB = 0.2  # the text encoders' own activations while caching their outputs [assumed]
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
    family: str = "sdxl"
    blocks_to_swap: int = 0  # DiTs: transformer blocks kept in system RAM (docs/estimator.md §9.3)
    t5_fp8_file: bool = False  # the t5xxl file holds fp8 weights (t5xxl_fp8_e4m3fn.safetensors)
    transformer_fp8_file: bool = False  # the transformer file holds fp8 weights
    train_t5: bool = False  # network_args train_t5xxl=True
    text_tokens: int = 512  # T5's sequence (t5xxl_max_token_length)

    @property
    def megapixels(self) -> float:
        return self.width * self.height / 1e6

    @property
    def text_encoders_resident(self) -> bool:
        return self.train_text_encoders or not self.cache_text_encoder_outputs

    @property
    def arch(self) -> Arch:
        return arch_for(self.family)

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
    unet_activations: float  # the denoiser's (U-Net or transformer; sd-scripts calls both "unet")
    # Not a part of the step: the peak while the text encoders cache their outputs, before training starts
    # (FLUX moves the transformer to the CPU for it, and T5-XXL onto the GPU).
    caching_peak: float = 0.0

    @property
    def step(self) -> float:
        return (self.cuda_overhead + self.unet_weights + self.text_encoders + self.vae + self.trainable_weights
                + self.gradients + self.optimizer_state + self.cast_copies + self.text_encoder_activations
                + self.unet_activations)

    @property
    def total(self) -> float:
        return max(self.step, self.caching_peak)

    def components(self) -> dict[str, float]:
        parts = asdict(self)
        del parts["caching_peak"]
        return parts


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


def trained_text_encoders(setup: TrainingSetup) -> tuple[TextEncoder, ...]:
    """The encoders that get LoRA modules: all of them for the U-Nets; for FLUX CLIP-L, and T5-XXL only with
    train_t5xxl (networks.lora_flux)."""
    if not setup.train_text_encoders:
        return ()
    encoders = setup.arch.text_encoders
    if setup.arch.transformer:
        return tuple(te for te in encoders if te is not T5XXL or setup.train_t5)
    return encoders


def has_conv(setup: TrainingSetup) -> bool:
    # conv_dim is networks.lora's, and lorakit counts its modules on SDXL's U-Net only (docs/estimator.md §9.1)
    return bool(setup.conv_dim) and setup.family == "sdxl"


def lora_params(setup: TrainingSetup) -> int:
    """Trainable LoRA parameters (networks.lora / networks.lora_flux), exact."""
    r = setup.network_dim
    total = 0
    if setup.train_unet:
        total += setup.arch.lora_per_rank * r
        if has_conv(setup):
            total += _conv_params(r, setup.conv_dim or 0)
    total += sum(te.lora_per_rank for te in trained_text_encoders(setup)) * r
    return total


def lora_modules(setup: TrainingSetup) -> int:
    count = 0
    if setup.train_unet:
        count += setup.arch.lora_modules + (len(conv_modules(1, 1)) if has_conv(setup) else 0)
    count += sum(te.lora_modules for te in trained_text_encoders(setup))
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
    """Peak denoiser activations per sample: k · S(size, checkpointing, attention, precision) (docs/estimator.md §5.1–5.2,
    §9.4). FLUX always runs SDPA (flux_models calls it whatever the sdpa flag says)."""
    blocks = setup.arch.blocks
    if blocks is not None:
        tokens = dit_tokens(setup.width, setup.height, setup.text_tokens)
        saved = dit_saved_gib(blocks, tokens, setup.gradient_checkpointing)
    else:
        saved = unet_saved_gib(setup.family, setup.megapixels, setup.gradient_checkpointing, setup.attention == "none")
    k = K_GC if setup.gradient_checkpointing else K_NO_GC
    if setup.mixed_precision == "no":
        saved *= FP32_ACTIVATIONS
    return k * saved


def swapped_gib(setup: TrainingSetup) -> float:
    """The transformer blocks blocks_to_swap keeps in system RAM, at the weights' precision."""
    blocks = setup.arch.blocks
    if blocks is None or not setup.blocks_to_swap:
        return 0.0
    return blocks.swapped_params(setup.blocks_to_swap) * _weight_bytes(setup, setup.fp8_unet) / GIB


def text_encoder_bytes(setup: TrainingSetup, te: TextEncoder, *, training: bool) -> int:
    """T5-XXL stays fp8 when its file is; fp8_base makes resident encoders fp8 for the step (not while caching)."""
    if te is T5XXL and setup.t5_fp8_file:
        return 1
    return _weight_bytes(setup, setup.fp8_text_encoders and training)


def text_encoders_gib(setup: TrainingSetup) -> float:
    return sum(te.params * text_encoder_bytes(setup, te, training=True) for te in setup.arch.text_encoders) / GIB


def caching_peak_gib(setup: TrainingSetup, overhead_gib: float) -> float:
    """FLUX caches the text-encoder outputs with the transformer and AE on the CPU and the encoders on the GPU."""
    if not setup.arch.transformer or setup.text_encoders_resident:
        return 0.0
    weights = sum(te.params * text_encoder_bytes(setup, te, training=False) for te in setup.arch.text_encoders)
    return overhead_gib + weights / GIB + CACHING_TRANSIENT_GIB


def _weight_bytes(setup: TrainingSetup, fp8: bool) -> int:
    if fp8:
        return 1
    return 4 if setup.mixed_precision == "no" else 2


def estimate_vram(setup: TrainingSetup, overhead_gib: float) -> VramBreakdown:
    b = setup.batch_size
    vae = 0.0
    if not setup.cache_latents:
        vae_bytes = 4 if setup.vae_fp32 else 2
        vae = setup.arch.vae_params * vae_bytes / GIB + b * setup.megapixels * VAE_ENCODE_GIB_PER_MP[setup.vae_fp32]
    text_encoders = text_encoders_gib(setup) if setup.text_encoders_resident else 0.0
    param_bytes = 2 if setup.full_half else 4
    if setup.full_finetune:
        # the U-Net's own weights train (counted under unet_weights); fused Adafactor keeps one gradient
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
    te_activations = (TEXT_ENCODER_ACTIVATIONS_GIB + (T5_ACTIVATIONS_GIB if setup.train_t5 else 0.0)) * b \
        if trained_text_encoders(setup) else 0.0
    return VramBreakdown(
        cuda_overhead=overhead_gib,
        unet_weights=setup.arch.params * unet_weight_bytes / GIB - swapped_gib(setup),
        text_encoders=text_encoders,
        vae=vae,
        trainable_weights=trainable,
        gradients=gradients,
        optimizer_state=optimizer,
        cast_copies=cast,
        text_encoder_activations=te_activations,
        unet_activations=b * activation_gib_per_sample(setup),
        caching_peak=caching_peak_gib(setup, overhead_gib),
    )


def vram_gib(setup: TrainingSetup, overhead_gib: float) -> float:
    return estimate_vram(setup, overhead_gib).total


def largest_batch(setup: TrainingSetup, overhead_gib: float, budget_gib: float, limit: int = 64) -> int:
    """The largest batch size whose estimate fits the budget (0: not even batch 1). VRAM is linear in batch."""
    one = estimate_vram(setup.with_(batch_size=1), overhead_gib)
    if one.total > budget_gib:
        return 0
    per_sample = estimate_vram(setup.with_(batch_size=2), overhead_gib).step - one.step
    if per_sample <= 0:
        return limit
    return max(1, min(limit, 1 + math.floor((budget_gib - one.step) / per_sample + 1e-9)))


def max_swap(setup: TrainingSetup) -> int:
    blocks = setup.arch.blocks
    return blocks.max_swap if blocks is not None else 0


def smallest_swap(setup: TrainingSetup, overhead_gib: float, budget_gib: float) -> int | None:
    """The fewest blocks_to_swap with which the step fits (None: not even the most sd-scripts allows).
    Swapping takes its blocks' weights off the step's estimate and nothing else."""
    unswapped = estimate_vram(setup.with_(blocks_to_swap=0), overhead_gib)
    if unswapped.caching_peak > budget_gib:
        return None
    for n in range(max_swap(setup) + 1):
        if unswapped.step - swapped_gib(setup.with_(blocks_to_swap=n)) <= budget_gib:
            return n
    return None


# --- system RAM (docs/estimator.md §9.5) ------------------------------------------------------------

RAM_PROCESS_GIB = 2.0  # Python, torch, the CUDA libraries' host side [assumed]


def ram_gib(setup: TrainingSetup) -> float:
    """System RAM the run needs: the process plus the weights sd-scripts keeps in RAM.

    FLUX: sd-scripts loads the transformer (cast to fp8 on the CPU with fp8_base), CLIP-L, T5-XXL and the AE
    into RAM before anything moves to the GPU; the encoders and the AE go back there after caching, and the
    swapped blocks stay there through training. The files are memory-mapped, so their pages beyond that are
    reclaimable cache (unless disable_mmap_load_safetensors). The U-Net families build their models in fp32
    on the CPU before casting them (the measured CPU run, docs/estimator.md §8).
    """
    arch = setup.arch
    if not arch.transformer:
        return RAM_PROCESS_GIB + (arch.params + arch.text_encoder_params + arch.vae_params) * 4 / GIB
    others = sum(te.params * text_encoder_bytes(setup, te, training=False) for te in arch.text_encoders) \
        + arch.vae_params * 2
    return RAM_PROCESS_GIB + (arch.params * _weight_bytes(setup, setup.fp8_unet) + others) / GIB


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
    text = network_arg(values, "conv_dim")
    if text is None:
        return None
    try:
        return int(text) or None
    except ValueError:
        return None  # Gate 2 reports the malformed argument


def setup_from_values(values: Values) -> TrainingSetup:
    from lorakit.config.derived import optimizer_name
    from lorakit.config.schema import resolution_tuple

    width, height = resolution_tuple(values["resolution"])
    precision = values["mixed_precision"] or "no"
    fp8_base = bool(values["fp8_base"] or values["fp8_base_unet"])
    return TrainingSetup(
        width=width,
        height=height,
        batch_size=values["train_batch_size"] or 1,
        gradient_accumulation_steps=values["gradient_accumulation_steps"] or 1,
        gradient_checkpointing=bool(values["gradient_checkpointing"]),
        mixed_precision=precision,
        full_half=bool(values["full_bf16"] or values["full_fp16"]),
        fp8_unet=fp8_base,
        # train_network: fp8_base_unet keeps the text encoders at 16 bits
        fp8_text_encoders=fp8_base and not values["fp8_base_unet"],
        train_unet=not values["network_train_text_encoder_only"],
        train_text_encoders=not values["network_train_unet_only"],
        cache_text_encoder_outputs=bool(values["cache_text_encoder_outputs"] or values["cache_text_encoder_outputs_to_disk"]),
        cache_latents=bool(values["cache_latents"] or values["cache_latents_to_disk"]),
        vae_fp32=bool(values["no_half_vae"]) or precision == "no",
        network_dim=values["network_dim"] or 4,  # sd-scripts' default rank
        conv_dim=conv_dim(values),
        optimizer=optimizer_name(values),
        attention=attention_backend(values),
        family=values.family,
        blocks_to_swap=values["blocks_to_swap"] or 0,
        t5_fp8_file=fp8_file(values["t5xxl"]),
        transformer_fp8_file=fp8_file(values["pretrained_model_name_or_path"]) and arch_for(values.family).transformer,
        train_t5=network_arg(values, "train_t5xxl") == "True",
        text_tokens=values["t5xxl_max_token_length"] or 512,
    )


def fp8_file(name: object) -> bool:
    """sd-scripts loads fp8 files as they are; the name says which they are (t5xxl_fp8_e4m3fn.safetensors)."""
    return isinstance(name, str) and "fp8" in name.lower()


def network_arg(values: Values, key: str) -> str | None:
    for item in values["network_args"] or []:
        name, _, text = item.partition("=")
        if name.strip() == key:
            return text.strip()
    return None
