"""The estimator against docs/estimator.md: parameter counts, FLOPs, the published VRAM points and
worked predictions (docs/estimator.md §5.3, §5.4) within the residuals shown there, and the planning throughput (docs/estimator.md §6)."""

from __future__ import annotations

import pytest

from lorakit.plan.estimate import (
    OVERHEAD_POOLED_GIB,
    TrainingSetup,
    activation_gib_per_sample,
    estimate_vram,
    lora_file_bytes,
    lora_modules,
    lora_params,
    vram_gib,
)
from lorakit.plan.timing import lora_forward_tflop, step_time, tflop_per_sample, unet_forward_tflop

MB, MIB = 1e6, 2**20
# docs/estimator.md §5.4's setting: r32 U-Net only, text-encoder outputs and latents cached, SDPA, bf16
R32 = TrainingSetup(network_dim=32, train_text_encoders=False, cache_text_encoder_outputs=True)


@pytest.mark.parametrize(("rank", "unet_m", "unet_mb", "both_m", "both_mb"), [
    (4, 10.64, 21.6, 14.25, 28.9), (8, 21.28, 42.9, 28.50, 57.4), (16, 42.56, 85.4, 57.01, 114.4),
    (32, 85.11, 170.5, 114.02, 228.4), (64, 170.23, 340.8, 228.03, 456.5), (128, 340.46, 681.2, 456.07, 912.5),
])
def test_lora_parameters_and_file_sizes_match_section_1_2(rank, unet_m, unet_mb, both_m, both_mb):
    unet = R32.with_(network_dim=rank)
    both = unet.with_(train_text_encoders=True)
    assert lora_params(unet) == 2_659_840 * rank
    assert lora_params(both) == 3_563_008 * rank
    assert lora_params(unet) / MB == pytest.approx(unet_m, abs=0.006)
    assert lora_params(both) / MB == pytest.approx(both_m, abs=0.006)
    assert lora_file_bytes(unet) / MB == pytest.approx(unet_mb, abs=0.1)
    assert lora_file_bytes(both) / MB == pytest.approx(both_mb, abs=0.1)
    assert lora_file_bytes(unet, save_bytes_per_param=4) - lora_file_bytes(unet) == 2 * lora_params(unet)  # fp32 save


def test_conv_dim_wraps_the_resnet_and_resampling_modules():
    plain = R32.with_(network_dim=16)
    locon = plain.with_(conv_dim=8)
    # 17 ResnetBlock2D × (2 3×3 convs + time embedding) + 11 skip convs + 4 resamplers (sd-scripts networks/lora.py)
    assert lora_modules(locon) - lora_modules(plain) == 17 * 3 + 11 + 4
    extra_8 = lora_params(locon) - lora_params(plain)
    extra_4 = lora_params(plain.with_(conv_dim=4)) - lora_params(plain)
    assert extra_8 > extra_4 > 0
    assert lora_forward_tflop(locon) > lora_forward_tflop(plain)


WORKED = {  # docs/estimator.md §5.4: optimizer, gradient checkpointing → GiB at 512² b1, 768² b1, 1024² b1, b2, b4, b8
    ("AdamW", True): (9.2, 9.5, 9.9, 10.8, 12.6, 16.1),
    ("AdamW", False): (11.6, 14.5, 18.6, 28.3, 47.5, 86),
    ("AdamW8bit", True): (8.7, 9.0, 9.4, 10.3, 12.1, 15.7),
    ("Adafactor", True): (8.6, 8.9, 9.2, 10.1, 11.9, 15.5),
    ("Prodigy", True): (9.8, 10.1, 10.5, 11.4, 13.2, 16.8),
}
COLUMNS = ((512, 1), (768, 1), (1024, 1), (1024, 2), (1024, 4), (1024, 8))


@pytest.mark.parametrize(("optimizer", "gc"), sorted(WORKED))
def test_worked_predictions_of_section_5_4(optimizer, gc):
    for (side, batch), published in zip(COLUMNS, WORKED[(optimizer, gc)], strict=True):
        setup = R32.with_(optimizer=optimizer, gradient_checkpointing=gc, width=side, height=side, batch_size=batch)
        # the table rounds to 0.1 GiB (86 to 1 GiB) from a pooled C quoted to 0.01 GiB
        rounding = 0.5 if published == 86 else 0.06
        assert vram_gib(setup, OVERHEAD_POOLED_GIB) == pytest.approx(published, abs=rounding), (side, batch)


FT_BF16 = TrainingSetup(full_finetune=True, full_half=True, optimizer="Adafactor", cache_text_encoder_outputs=True)
FT_FP32 = FT_BF16.with_(full_half=False, mixed_precision="no")
F5 = R32.with_(optimizer="AdamW8bit", fp8_unet=True, fp8_text_encoders=True)
PUBLISHED = {  # docs/estimator.md §5.3: point → (setup, observed, the doc's prediction, its residual)
    "F1 FT bf16 fbp bs1": (FT_BF16, 10.0, 9.01, 0.99),
    "F2 FT bf16 bs16": (FT_BF16.with_(batch_size=16), 23.5, 22.44, 1.06),
    "F3 FT fp32 fbp bs1": (FT_FP32, 16.4, 14.78, 1.62),
    "F4 FT fp32 bs6": (FT_FP32.with_(batch_size=6), 23.5, 21.95, 1.55),
    "F5 LoRA fp8 cached": (F5, 4.4, 7.00, -2.60),
    "F6 LoRA fp8 uncached": (F5.with_(cache_latents=False, cache_text_encoder_outputs=False, vae_fp32=True), 6.5, 9.12, -2.62),
}


@pytest.mark.parametrize("point", sorted(PUBLISHED))
def test_published_points_within_the_residuals_of_section_5_3(point):
    setup, observed, predicted, residual = PUBLISHED[point]
    estimate = vram_gib(setup, OVERHEAD_POOLED_GIB)
    assert estimate == pytest.approx(predicted, abs=0.1)
    assert abs(observed - estimate) <= abs(residual) + 0.1


def test_batch_slopes_match_the_fitted_pairs():
    # docs/estimator.md §5.3: the per-sample slopes fit within 1–3% (F1→F2 and F3→F4)
    slope_bf16 = (vram_gib(FT_BF16.with_(batch_size=16), 0) - vram_gib(FT_BF16, 0)) / 15
    slope_fp32 = (vram_gib(FT_FP32.with_(batch_size=6), 0) - vram_gib(FT_FP32, 0)) / 5
    assert slope_bf16 == pytest.approx((23.5 - 10.0) / 15, rel=0.03)
    assert slope_fp32 == pytest.approx((23.5 - 16.4) / 5, rel=0.03)


@pytest.mark.parametrize(("gc", "attention", "saved"), [
    (False, "sdpa", (2.16, 4.61, 8.03, 17.8)), (True, "sdpa", (0.16, 0.36, 0.64, 1.44)),
    (False, "none", (3.36, 10.2, 25.1, 102)), (True, "none", (0.21, 0.64, 1.54, 6.1)),
])
def test_activation_memory_per_sample_of_section_5_1(gc, attention, saved):
    k = 1.40 if gc else 1.2
    for side, published in zip((512, 768, 1024, 1536), saved, strict=True):
        setup = R32.with_(gradient_checkpointing=gc, attention=attention, width=side, height=side)
        rel = 0.02 if attention == "sdpa" else 0.05  # docs/estimator.md §5.1 gives plain attention's MP² term as an addition
        assert activation_gib_per_sample(setup) / k == pytest.approx(published, rel=rel, abs=0.01)


def test_fp32_and_text_encoder_training_cost_what_section_5_says():
    bf16 = R32
    fp32 = R32.with_(mixed_precision="no")
    assert activation_gib_per_sample(fp32) == pytest.approx(1.6 * activation_gib_per_sample(bf16))
    resident = estimate_vram(R32.with_(cache_text_encoder_outputs=False), 0).text_encoders
    assert resident == pytest.approx(1.523, abs=0.001)
    trained = estimate_vram(R32.with_(train_text_encoders=True, batch_size=3), 0)
    assert (trained.text_encoders, trained.text_encoder_activations) == (pytest.approx(1.523, abs=0.001), pytest.approx(0.3))


@pytest.mark.parametrize(("side", "published"), [(512, 1.589), (768, 3.641), (1024, 6.761), (1536, 17.26)])
def test_unet_forward_flops_fit_of_section_2_1(side, published):
    assert unet_forward_tflop(side * side / 1e6) == pytest.approx(published, rel=0.031)  # "within 3%"


@pytest.mark.parametrize(("side", "gc", "published", "rel"), [
    (1024, False, 14.62, 0.002), (1024, True, 20.87, 0.002), (512, False, 3.275, 0.03), (512, True, 4.737, 0.03),
])
def test_training_step_flops_of_section_2_2(side, gc, published, rel):
    setup = R32.with_(width=side, height=side, gradient_checkpointing=gc)
    assert tflop_per_sample(setup) == pytest.approx(published, rel=rel)


def test_vae_encode_and_lora_flops_of_section_2_2():
    assert lora_forward_tflop(R32) == pytest.approx(0.182, rel=0.01)
    for side, vae in ((512, 1.117), (1024, 4.879)):
        cached = R32.with_(width=side, height=side)
        assert tflop_per_sample(cached.with_(cache_latents=False)) - tflop_per_sample(cached) == pytest.approx(vae, rel=0.01)


@pytest.mark.parametrize(("peak", "batch", "gc", "low", "high"), [
    (165.2, 1, False, 1.1, 2.3),  # RTX 4090, bs1 no-GC
    (165.2, 4, True, 0.4, 0.6),  # RTX 4090, bs4 with GC
    (989.4, 1, False, 3, 8),  # H100 SXM, bs1 no-GC
    (989.4, 4, False, 2.5, 4),  # H100 SXM, bs4 no-GC
])
def test_planning_throughput_of_section_6(peak, batch, gc, low, high):
    its = 1 / step_time(R32.with_(batch_size=batch, gradient_checkpointing=gc), peak).seconds_per_step
    assert low <= its <= high


def test_a_calibration_replaces_the_two_machine_numbers():
    assert vram_gib(R32, 2.5) - vram_gib(R32, 1.0) == pytest.approx(1.5)
    assumed = step_time(R32, 165.2)
    measured = step_time(R32, 165.2, efficiency=0.075)  # half the assumed 15% at batch 1
    assert measured.seconds_per_step == pytest.approx(2 * assumed.seconds_per_step)
    at_four = step_time(R32.with_(batch_size=4), 165.2, efficiency=0.075)
    assert at_four.mfu == pytest.approx(0.125)  # the batch curve keeps its shape: 25% × 0.5


def test_breakdown_adds_up_and_gradient_accumulation_costs_time_not_memory():
    breakdown = estimate_vram(R32.with_(batch_size=2), 1.0)
    assert sum(breakdown.components().values()) == pytest.approx(breakdown.total)
    accumulated = R32.with_(gradient_accumulation_steps=4)
    assert vram_gib(accumulated, 1.0) == vram_gib(R32, 1.0)
    assert step_time(accumulated, 165.2).seconds_per_step == pytest.approx(4 * step_time(R32, 165.2).seconds_per_step)
