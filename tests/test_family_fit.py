"""The estimator, time model and fit per family (issue 15): FLUX.1 fits small cards through sd-scripts' own
memory steps and block swap and says how much system RAM it needs; SD 1.5 is fitted for speed; Chroma has
no CLIP-L; Gate 3 holds the run's RAM to the probed machine's (docs/estimator.md §9)."""

from __future__ import annotations

import json

import pytest

from lorakit.cli.main import cli
from lorakit.config.presets import PresetRegistry
from lorakit.config.resolve import resolve
from lorakit.machine.probe import VRAM_MARGIN, choose_target
from lorakit.plan.arch import T5XXL, arch_for
from lorakit.plan.assumptions import Assumptions
from lorakit.plan.estimate import GIB, TrainingSetup, estimate_vram, lora_file_bytes, lora_params, setup_from_values
from lorakit.plan.fit import fit_to_gpu
from lorakit.plan.timing import step_time

FLUX = ["--preset", "flux1-dev", "--preset", "character"]


def plan_json(runner, dataset, tmp_path, *args: str, env: dict | None = None, name: str = "p") -> tuple[dict, str]:
    out = tmp_path / name
    result = runner.invoke(cli, ["plan", str(dataset), *args, "--out", str(out)], env=env)
    assert result.exit_code == 0, result.output
    return json.loads((out / "plan.json").read_text()), result.output


def value(plan: dict, key: str):
    entry = plan["values"].get(key)
    return None if entry is None else entry["value"]


def test_flux_on_a_12gb_card_fits_through_block_swap_and_says_the_ram_it_needs(runner, character_dataset, tmp_path):
    plan, output = plan_json(runner, character_dataset, tmp_path, *FLUX, "--target-gpu", "rtx3060-12gb")
    assert plan["vram"]["fits"] and not [f for f in plan["findings"] if f["level"] == "error"]
    swap = value(plan, "blocks_to_swap")
    assert swap and 0 < swap <= 35 and plan["values"]["blocks_to_swap"]["source"].startswith("auto:")
    assert value(plan, "fp8_base") is True and value(plan, "optimizer_type") == "AdamW8bit"  # the guide's order
    assert plan["vram"]["blocks_to_swap"] == swap and plan["vram"]["swapped_gib"] > 0
    assert plan["vram"]["ram_gib"] > plan["vram"]["swapped_gib"]
    assert f"system RAM: needs ~{plan['vram']['ram_gib']:.0f} GiB" in output and f"blocks_to_swap {swap}" in output
    assert plan["time"]["swap_seconds_per_step"] > 0
    steps = {f["code"]: f for f in plan["findings"]}["hardware/flux-memory-steps"]
    assert "system RAM" in steps["message"]


def test_the_same_flux_plan_on_a_24gb_card_needs_no_swap(runner, character_dataset, tmp_path):
    plan, output = plan_json(runner, character_dataset, tmp_path, *FLUX, "--target-gpu", "rtx4090")
    assert plan["vram"]["fits"] and not [f for f in plan["findings"] if f["level"] == "error"]
    assert not value(plan, "blocks_to_swap") and plan["vram"]["blocks_to_swap"] == 0
    assert "system RAM: needs" in output and "blocks_to_swap" not in output.split("system RAM:")[1].splitlines()[0]


def test_fewer_blocks_swap_on_more_vram(character_dataset):
    registry = PresetRegistry(include_user_dir=False)
    swapped = []
    for gpu in ("rtx3080-10gb", "rtx3060-12gb", "rtx4060ti-16gb", "rtx4090"):
        values = resolve(registry, ["flux1-dev", "character"], []).values
        fit_to_gpu(values, choose_target(gpu), Assumptions.uncalibrated(), images=20)
        swapped.append(values["blocks_to_swap"] or 0)
    assert swapped == sorted(swapped, reverse=True) and swapped[0] > 0 and swapped[-1] == 0, swapped


@pytest.mark.parametrize(("gpu", "guide_swap", "guide_batch"), [("rtx4090", 0, 2), ("rtx3060-12gb", 16, 1), ("rtx3080-10gb", 22, 1)])
def test_against_the_whole_card_the_fit_lands_on_sd_scripts_published_tiers(gpu, guide_swap, guide_batch):
    """docs/estimator.md §9.7: without lorakit's 20% margin the fit chooses what the FLUX guide publishes."""
    registry = PresetRegistry(include_user_dir=False)
    values = resolve(registry, ["flux1-dev", "character"], []).values
    target = choose_target(gpu)
    whole = target.model_copy(update={"vram_total_gib": target.vram_total_gib / (1 - VRAM_MARGIN)})
    fit_to_gpu(values, whole, Assumptions.uncalibrated(), images=20)
    assert values["fp8_base"] is True and values["train_batch_size"] == guide_batch
    assert abs((values["blocks_to_swap"] or 0) - guide_swap) <= 2


def test_a_flux_plan_that_does_not_fit_names_block_swap_in_gate_3s_fix(runner, character_dataset, tmp_path):
    result = runner.invoke(cli, ["plan", str(character_dataset), *FLUX, "--target-gpu", "rtx3060-12gb", "--fit", "off",
                                 "--out", str(tmp_path / "p")])
    assert result.exit_code == 1 and "hardware/vram-over-budget" in result.output
    assert "--set blocks_to_swap=" in result.output and "--set fp8_base=true" in result.output


def test_your_blocks_to_swap_is_kept_and_counted(runner, character_dataset, tmp_path):
    plan, _ = plan_json(runner, character_dataset, tmp_path, *FLUX, "--target-gpu", "a100-80gb", "--set", "blocks_to_swap=10")
    assert value(plan, "blocks_to_swap") == 10 and plan["vram"]["blocks_to_swap"] == 10
    setup = TrainingSetup(family="flux1", blocks_to_swap=10)
    blocks = arch_for("flux1").blocks
    assert blocks is not None and blocks.swapped_params(10) == 5 * blocks.double_params + 10 * blocks.single_params
    assert step_time(setup, 312.0).seconds_per_step > step_time(setup.with_(blocks_to_swap=0), 312.0).seconds_per_step


def test_sd15_is_fitted_for_speed_without_checkpointing_and_a_bigger_batch(runner, character_dataset, tmp_path):
    plan, _ = plan_json(runner, character_dataset, tmp_path, "--preset", "sd15", "--preset", "character",
                        "--target-gpu", "rtx4090")
    assert not value(plan, "gradient_checkpointing") and value(plan, "train_batch_size") > 1
    sdxl, _ = plan_json(runner, character_dataset, tmp_path, "--preset", "character", "--target-gpu", "rtx4090", name="x")
    assert plan["time"]["tflop_per_step"] / value(plan, "train_batch_size") < \
        sdxl["time"]["tflop_per_step"] / value(sdxl, "train_batch_size") / 4


def test_chroma_has_no_clip_l(runner, character_dataset, tmp_path):
    args = ["--target-gpu", "a100-80gb", "--set", "cache_text_encoder_outputs=false", "--explain-vram"]
    chroma, chroma_out = plan_json(runner, character_dataset, tmp_path, "--preset", "chroma", "--preset", "character", *args)
    flux, flux_out = plan_json(runner, character_dataset, tmp_path, *FLUX, *args, name="f")
    t5 = T5XXL.params * 2 / GIB
    assert chroma["vram"]["components"]["text_encoders"] == pytest.approx(t5, abs=0.01)
    assert flux["vram"]["components"]["text_encoders"] == pytest.approx(t5 + 123_060_480 * 2 / GIB, abs=0.01)
    assert "CLIP-L" not in chroma_out and "CLIP-L" in flux_out
    assert chroma["vram"]["components"]["unet_weights"] < flux["vram"]["components"]["unet_weights"]


def test_ram_over_the_probed_machines_is_a_gate_3_error_with_the_fix(runner, character_dataset, tmp_path):
    env = {"LORAKIT_FAKE_GPU": "rtx3060-12gb", "LORAKIT_FAKE_RAM_GIB": "12"}
    result = runner.invoke(cli, ["plan", str(character_dataset), *FLUX, "--out", str(tmp_path / "p")], env=env)
    assert result.exit_code == 1 and "hardware/ram-over-budget" in result.output
    assert "12.0 GiB available" in result.output and "close other programs" in result.output
    bf16_t5 = runner.invoke(cli, ["plan", str(character_dataset), *FLUX, "--set", "fp8_base=false", "--out", str(tmp_path / "b")],
                            env={**env, "LORAKIT_FAKE_GPU": "a100-80gb"})
    assert "--set fp8_base=true" in bf16_t5.output and "--set t5xxl=comfyanonymous/flux_text_encoders:t5xxl_fp8" in bf16_t5.output
    plan, output = plan_json(runner, character_dataset, tmp_path, *FLUX, env={**env, "LORAKIT_FAKE_RAM_GIB": "32"}, name="q")
    assert plan["target"]["ram_available_gib"] == 32 and "of the 32.0 GiB available" in output


def test_flux_lora_counts_come_from_the_architecture():
    """docs/estimator.md §9.1: 19 double blocks × 10 Linears and 38 single × 3, rank 16: 76.6 M parameters."""
    setup = TrainingSetup(family="flux1", network_dim=16, train_text_encoders=False)
    assert lora_params(setup) == 4_786_176 * 16
    assert lora_file_bytes(setup) / 1e6 == pytest.approx(153.3, abs=0.2)
    assert lora_params(setup.with_(family="chroma")) == 3_502_080 * 16
    assert lora_params(setup.with_(family="sd15", train_text_encoders=True)) == (423_936 + 165_888) * 16


def test_fp8_t5_matters_only_while_t5_is_on_the_gpu():
    cached = TrainingSetup(family="flux1", fp8_unet=True, fp8_text_encoders=True, train_text_encoders=False,
                           cache_text_encoder_outputs=True)
    caching = estimate_vram(cached, 1.0).caching_peak
    assert estimate_vram(cached.with_(t5_fp8_file=True), 1.0).caching_peak == pytest.approx(caching - T5XXL.params / GIB)
    assert estimate_vram(cached.with_(t5_fp8_file=True), 1.0).step == estimate_vram(cached, 1.0).step
    resident = cached.with_(cache_text_encoder_outputs=False)
    assert estimate_vram(resident, 1.0).caching_peak == 0.0
    assert estimate_vram(resident, 1.0).text_encoders == pytest.approx((T5XXL.params + 123_060_480) / GIB)  # fp8_base


def test_setup_reads_the_flux_values():
    values = resolve(PresetRegistry(include_user_dir=False), ["flux1-dev", "character"],
                     ["t5xxl=/m/t5xxl_fp8_e4m3fn.safetensors", "blocks_to_swap=8", "fp8_base_unet=true"]).values
    setup = setup_from_values(values)
    assert setup.family == "flux1" and setup.t5_fp8_file and setup.blocks_to_swap == 8
    assert setup.fp8_unet and not setup.fp8_text_encoders  # fp8_base_unet keeps the encoders at 16 bits
