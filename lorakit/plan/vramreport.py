"""plan.json's `vram` report and `lorakit plan --explain-vram`: the estimate of lorakit.plan.estimate, part by part."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict

from lorakit.plan.estimate import (
    TrainingSetup,
    VramBreakdown,
    estimate_vram,
    has_conv,
    lora_params,
    optimizer_bytes_per_param,
    ram_gib,
    swapped_gib,
    text_encoder_bytes,
    trained_text_encoders,
)


class VramReport(BaseModel):
    """plan.json `vram`: the estimate against the budget, by component (GiB), and the system RAM the run needs."""

    model_config = ConfigDict(extra="forbid")

    estimate_gib: float
    budget_gib: float
    vram_total_gib: float
    fits: bool
    calibrated: bool  # the constant overhead comes from a measured calibration
    overhead_source: str
    fit: str  # the --fit mode that chose the settings
    components: dict[str, float]
    caching_peak_gib: float = 0.0  # FLUX: the text-encoder caching phase, when it is the higher peak
    blocks_to_swap: int = 0
    swapped_gib: float = 0.0  # of the transformer, held in system RAM
    ram_gib: float | None = None  # system RAM the run needs (docs/estimator.md §9.5)
    ram_available_gib: float | None = None  # what the probed machine had free when planning (None: a catalog card)

    def ram_text(self) -> str:
        """The plan summary's line on system RAM (block swap keeps transformer blocks there)."""
        swap = f"; blocks_to_swap {self.blocks_to_swap} keeps {self.swapped_gib:.1f} GiB of the model there" \
            if self.blocks_to_swap else ""
        have = f" of the {self.ram_available_gib:.1f} GiB available" if self.ram_available_gib is not None else ""
        return f"needs ~{self.ram_gib or 0:.0f} GiB{have} (loading the model files{swap})"


def vram_report(setup: TrainingSetup, *, overhead_gib: float, budget_gib: float, vram_total_gib: float,
                calibrated: bool, overhead_source: str, fit: str, ram_available_gib: float | None = None) -> VramReport:
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
        caching_peak_gib=round(breakdown.caching_peak, 3),
        blocks_to_swap=setup.blocks_to_swap,
        swapped_gib=round(swapped_gib(setup), 3),
        ram_gib=round(ram_gib(setup), 3),
        ram_available_gib=None if ram_available_gib is None else round(ram_available_gib, 3),
    )


def explain_vram(setup: TrainingSetup, breakdown: VramBreakdown, overhead_source: str) -> list[tuple[str, float, str]]:
    """(component, GiB, how it was counted) for `lorakit plan --explain-vram`."""
    def dtype(fp8: bool) -> str:
        return "fp8" if fp8 else ("fp32" if setup.mixed_precision == "no" else setup.mixed_precision)

    arch = setup.arch
    b = setup.batch_size
    n = lora_params(setup)
    param = "16-bit" if setup.full_half else "fp32"
    encoders = " + ".join(te.name for te in trained_text_encoders(setup))
    parts = " + ".join(p for p, on in ((arch.denoiser, setup.train_unet), (encoders, bool(encoders))) if on)
    conv = f", conv_dim {setup.conv_dim}" if has_conv(setup) else ""
    if setup.full_finetune:
        trained = "fine-tuning: the U-Net's own weights (counted above)"
    else:
        trained = f"LoRA rank {setup.network_dim}{conv} on the {parts}: {n / 1e6:.1f} M parameters in {param}"
    names = " + ".join(f"{te.name} {'fp8' if text_encoder_bytes(setup, te, training=True) == 1 else dtype(False)}"
                       for te in arch.text_encoders)
    te = ("resident: trained" if setup.train_text_encoders else "resident: outputs not cached") + f", {names}"
    vae = ("latents cached: the VAE waits on the CPU" if setup.cache_latents else
           f"{'fp32' if setup.vae_fp32 else '16-bit'} weights + encoding {b} image(s) of {setup.megapixels:.2f} MP")
    gc = "with" if setup.gradient_checkpointing else "without"
    attention = "plain attention (no backend)" if setup.attention == "none" and not arch.transformer else \
        ("SDPA" if arch.transformer else setup.attention)
    swap = (f"; blocks_to_swap {setup.blocks_to_swap} keeps {swapped_gib(setup):.2f} GiB of it in system RAM"
            if setup.blocks_to_swap else "")
    rows = [
        ("cuda_overhead", breakdown.cuda_overhead, f"CUDA context, cuBLAS/cuDNN workspaces, allocator reserve: {overhead_source}"),
        ("unet_weights", breakdown.unet_weights,
         f"frozen {arch.denoiser}, {arch.params / 1e9:.2f} B parameters in {dtype(setup.fp8_unet)}{swap}"),
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
         f"per sample × batch {b}" if encoders else "the text encoders are not trained"),
        ("unet_activations", breakdown.unet_activations,
         f"batch {b} × {setup.width}×{setup.height}, {gc} gradient checkpointing, {attention}"),
    ]
    if breakdown.caching_peak:
        caching = " + ".join(f"{te.name} {'fp8' if text_encoder_bytes(setup, te, training=False) == 1 else dtype(False)}"
                             for te in arch.text_encoders)
        rows.append(("caching_peak", breakdown.caching_peak,
                     f"not added: the peak while the text encoders cache their outputs ({caching}, "
                     "the transformer on the CPU); the estimate is the larger of it and the step"))
    return rows
