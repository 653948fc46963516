"""The fit (--fit speed|memory|off) and Gate 3 (hardware): every plan fits its card, values you set are
never changed, and a plan that cannot fit says by how much and what would."""

from __future__ import annotations

import json
import math

import pytest

from lorakit.cli.main import cli
from lorakit.config.presets import PresetRegistry
from lorakit.config.resolve import resolve
from lorakit.machine.probe import choose_target
from lorakit.plan import build as plan_module
from lorakit.plan.assumptions import Assumptions
from lorakit.plan.build import PlanRequest, make_plan
from lorakit.plan.estimate import setup_from_values, vram_gib
from lorakit.plan.fit import fit_to_gpu

FIVE_GPUS = ["rtx3080-10gb", "rtx3060-12gb", "rtx4090", "a100-80gb", "h100"]  # by VRAM, then speed


def make(dataset, tmp_path, *overrides, presets=("character",), gpu="rtx4090", fit="speed"):
    return make_plan(PlanRequest(dataset=dataset, presets=list(presets), overrides=list(overrides), target_gpu=gpu,
                                 out=tmp_path / "p", fit=fit)).plan


def codes(plan) -> dict:
    return {f.code: f for f in plan.findings}


@pytest.mark.parametrize("preset", ["character", "style"])
def test_every_card_gets_settings_that_fit_and_more_vram_buys_speed(character_dataset, tmp_path, preset):
    plans = [make(character_dataset, tmp_path, presets=(preset,), gpu=gpu) for gpu in FIVE_GPUS]
    for p in plans:
        assert p.vram.estimate_gib <= p.vram.budget_gib, p.target.name
        assert p.vram.fits and not [f for f in p.findings if f.level == "error"]
    chosen = [(v["train_batch_size"], v["gradient_checkpointing"], not v["network_train_unet_only"], v["network_dim"])
              for v in (p.value_set for p in plans)]
    for (b1, gc1, te1, r1), (b2, gc2, te2, r2) in zip(chosen[:-1], chosen[1:], strict=True):
        assert b2 >= b1 and gc2 <= gc1 and te2 >= te1 and r2 >= r1, chosen
    assert chosen[0] != chosen[-1]
    assert plans[-1].values["gradient_checkpointing"].value is False  # 80 GB: no checkpointing
    assert [p.time.seconds_per_step / p.values["train_batch_size"].value for p in plans[2:]] == sorted(
        [p.time.seconds_per_step / p.values["train_batch_size"].value for p in plans[2:]], reverse=True)


def test_explicit_batch_that_cannot_fit_is_a_gate_3_error_not_a_silent_change(runner, character_dataset, tmp_path):
    out = tmp_path / "p"
    args = ["plan", str(character_dataset), "--preset", "character", "--target-gpu", "rtx3060-12gb", "--out", str(out),
            "--set", "train_batch_size=8"]
    result = runner.invoke(cli, args)
    assert result.exit_code == 1
    assert "hardware/vram-over-budget" in result.output and "nothing was written" in result.output
    assert "You set train_batch_size=8" in result.output
    assert "--set train_batch_size=1" in result.output  # the smallest change that fits
    assert not out.exists()
    forced = runner.invoke(cli, [*args, "--force"])
    assert forced.exit_code == 1
    data = json.loads((out / "plan.json").read_text())
    assert data["values"]["train_batch_size"] == {"value": 8, "source": "set", "note": "", "replaced": [
        {"value": 1, "source": "preset:sdxl-base"}]}
    over = next(f for f in data["findings"] if f["code"] == "hardware/vram-over-budget")
    assert (over["gate"], over["level"]) == (3, "error")
    assert f"by {data['vram']['estimate_gib'] - data['vram']['budget_gib']:.1f} GiB" in over["message"]
    assert data["vram"]["fits"] is False


def test_checkpointing_you_turned_off_is_kept_and_named_in_the_advice(character_dataset, tmp_path):
    plan = make(character_dataset, tmp_path, "gradient_checkpointing=false", gpu="rtx3060-12gb")
    assert plan.values["gradient_checkpointing"].source == "set"
    over = codes(plan)["hardware/vram-over-budget"]
    assert "--set gradient_checkpointing=true" in over.fix


def test_a_plan_no_change_can_fit_names_the_card_it_needs(character_dataset, tmp_path):
    plan = make(character_dataset, tmp_path, "train_batch_size=16", "gradient_checkpointing=false",
                "resolution=1536,1536", "max_bucket_reso=2048", gpu="rtx3080-10gb")
    over = codes(plan)["hardware/vram-over-budget"]
    assert "plan for a card with at least" in over.fix


@pytest.mark.parametrize("gpu", ["t4", "v100-16gb"])
def test_bf16_you_set_on_a_card_without_it_is_an_error_with_the_fp16_alternative(character_dataset, tmp_path, gpu):
    found = codes(make(character_dataset, tmp_path, "mixed_precision=bf16", gpu=gpu))
    error = found["hardware/no-bf16"]
    assert (error.level, error.gate) == ("error", 3)
    assert "--set mixed_precision=fp16 --set no_half_vae=true" in error.fix
    full = codes(make(character_dataset, tmp_path, "full_bf16=true", gpu=gpu))["hardware/no-bf16"]
    assert "full_bf16" in full.message and "--set full_bf16=false" in full.fix


@pytest.mark.parametrize("gpu", ["t4", "v100-16gb"])
def test_a_presets_bf16_becomes_fp16_with_the_fp32_vae(character_dataset, tmp_path, gpu):
    plan = make(character_dataset, tmp_path, gpu=gpu)
    assert (plan.values["mixed_precision"].value, plan.values["mixed_precision"].source) == ("fp16", "auto:no-bf16")
    assert plan.values["no_half_vae"].value is True
    found = codes(plan)
    assert found["hardware/fp16-instead-of-bf16"].level == "info"
    assert "hardware/no-bf16" not in found and "params/fp16-vae" not in found


def test_fit_off_changes_nothing_and_still_checks(character_dataset, tmp_path):
    plan = make(character_dataset, tmp_path, gpu="t4", fit="off")
    assert not [k for k, v in plan.values.items() if v.source.startswith("auto:") and v.source != "auto:plan-folder"]
    assert codes(plan)["hardware/no-bf16"].level == "error"
    assert plan.vram.fit == "off"


def test_fit_memory_takes_the_smallest_estimate(character_dataset, tmp_path):
    speed = make(character_dataset, tmp_path, gpu="a100-80gb")
    memory = make(character_dataset, tmp_path, gpu="a100-80gb", fit="memory")
    assert memory.values["train_batch_size"].value == 1 and memory.values["gradient_checkpointing"].value is True
    assert memory.vram.estimate_gib < speed.vram.estimate_gib
    assert memory.time.seconds_per_step * speed.values["train_batch_size"].value > speed.time.seconds_per_step


def test_low_vram_cards_get_the_seed_steps_with_a_quality_warning(character_dataset, tmp_path):
    ten = make(character_dataset, tmp_path, gpu="rtx3080-10gb")
    assert (ten.values["network_train_unet_only"].value, ten.values["network_train_unet_only"].source) == (True, "auto:low-vram")
    assert ten.values["cache_text_encoder_outputs"].value is True
    assert codes(ten)["hardware/low-vram-recipe"].level == "warning"
    style = make(character_dataset, tmp_path, presets=("style",), gpu="rtx3080-10gb")
    assert (style.values["network_dim"].value, style.values["network_alpha"].value) == (16, 1.0)
    assert "docs/recommendations.md §8 Hardware" in style.values["network_dim"].note
    assert style.vram.fits
    eight = make(character_dataset, tmp_path, gpu="rtx3070-8gb")
    assert (eight.value_set["fp8_base"], eight.values["fp8_base"].source) == (True, "auto:low-vram")
    assert "experimental" in codes(eight)["hardware/low-vram-recipe"].message
    assert eight.vram.fits


def test_larger_cards_only_stop_training_the_text_encoders_and_say_so(character_dataset, tmp_path):
    plan = make(character_dataset, tmp_path, presets=("style",), gpu="rtx3060-12gb")
    assert plan.values["network_train_unet_only"].source == "auto:vram-saver"
    assert plan.values["network_dim"].value == 32  # the seeds' low-VRAM steps are for 8–10 GB cards only
    warning = codes(plan)["hardware/text-encoders-not-trained"]
    assert warning.level == "warning" and "low-vram" not in " ".join(codes(plan))


def test_values_you_set_are_never_changed_even_to_fit(character_dataset, tmp_path):
    plan = make(character_dataset, tmp_path, "network_train_unet_only=false", "network_dim=32", "resolution=1024,1024",
                presets=("style",), gpu="rtx3080-10gb")
    for key in ("network_train_unet_only", "network_dim", "resolution"):
        assert plan.values[key].source == "set"
    assert plan.values["fp8_base"].source == "auto:low-vram"  # a lever you left open
    assert plan.vram.fits


def test_no_attention_backend_gets_sdpa_and_a_large_dataset_caches_latents_to_disk():
    registry = PresetRegistry()
    values = resolve(registry, ["kohya-example"], ["xformers=false"]).values
    target = choose_target("rtx4090")
    fit = fit_to_gpu(values, target, Assumptions.uncalibrated(), images=1500)
    assert (values["sdpa"], values.source("sdpa")) == (True, "auto:fit-speed")
    assert (values["cache_latents_to_disk"], values.source("cache_latents_to_disk")) == (True, "auto:large-dataset")
    assert "1500 images" in values.entry("cache_latents_to_disk").note
    assert {c.key for c in fit.changes} >= {"sdpa", "cache_latents", "cache_latents_to_disk"}


def test_batch_rule_scales_learning_rates_by_the_square_root(character_dataset, tmp_path):
    plan = make(character_dataset, tmp_path, "lr_warmup_steps=0", gpu="rtx4090")
    batch = plan.values["train_batch_size"].value
    assert batch > 1
    factor = math.sqrt(batch)
    assert plan.values["learning_rate"].value == pytest.approx(1e-4 * factor, rel=1e-3)
    assert plan.values["text_encoder_lr"].value == [pytest.approx(5e-5 * factor, rel=1e-3)]
    assert plan.values["learning_rate"].source == "auto:batch-scaling"
    assert "params/total-steps" not in codes(plan)  # 612 steps at batch 4 read as ≈2448 at batch 1


def test_batch_rule_scales_a_warmup_in_steps_and_leaves_your_learning_rates(character_dataset, tmp_path):
    plan = make(character_dataset, tmp_path, "lr_warmup_steps=200", gpu="rtx4090")
    assert plan.values["lr_warmup_steps"].source == "set"
    registry = PresetRegistry()
    values = resolve(registry, ["character"], []).values
    values.set("lr_warmup_steps", 200, "preset:test")
    fit_to_gpu(values, choose_target("rtx4090"), Assumptions.uncalibrated())
    assert values["lr_warmup_steps"] == 200 // values["train_batch_size"]
    mine = make(character_dataset, tmp_path, "learning_rate=3e-4", gpu="rtx4090")
    assert mine.values["learning_rate"].value == 3e-4
    assert mine.values["text_encoder_lr"].source == "preset:sdxl-base"  # none scaled once you set one


def test_adaptive_optimizers_keep_their_learning_rate(character_dataset, tmp_path):
    plan = make(character_dataset, tmp_path, presets=("character", "prodigy"), gpu="a100-80gb")
    assert plan.values["train_batch_size"].value > 1
    assert plan.values["learning_rate"].value == 1.0


def test_total_steps_warning_reads_steps_at_batch_1(character_dataset, tmp_path):
    warning = codes(make(character_dataset, tmp_path, "max_train_epochs=1", gpu="rtx4090"))["params/total-steps"]
    assert "51 total steps at batch 4 (≈ 204 at batch 1)" in warning.message


def test_disk_space_for_checkpoints_and_states(character_dataset, tmp_path, monkeypatch):
    monkeypatch.setattr(plan_module, "free_disk_gib", lambda path: 0.5)
    found = codes(make(character_dataset, tmp_path, "save_state=false", gpu="rtx4090"))
    error = found["hardware/disk-space"]
    assert (error.level, error.gate) == ("error", 3)
    assert "12 LoRA file(s) × 109 MiB" in error.message and "0.50 GiB is free" in error.message
    with_states = codes(make(character_dataset, tmp_path, "save_state=true", gpu="rtx4090"))["hardware/disk-space"]
    assert "12 state folder(s)" in with_states.message
    assert "hardware/disk-space" not in codes(make(character_dataset, tmp_path, "save_last_n_epochs=2", "save_state=false",
                                                   gpu="rtx4090"))
    monkeypatch.setattr(plan_module, "free_disk_gib", lambda path: 0.3)
    kept = codes(make(character_dataset, tmp_path, "save_last_n_epochs=2", "save_state=false",
                      gpu="rtx4090"))["hardware/disk-space"]
    assert "4 LoRA file(s)" in kept.message  # 2 kept + the final + one that waits to be deleted
    monkeypatch.setattr(plan_module, "free_disk_gib", lambda path: 500.0)
    assert "hardware/disk-space" not in codes(make(character_dataset, tmp_path, "save_state=true", gpu="rtx4090"))


def test_plan_json_has_vram_and_time(runner, character_dataset, tmp_path):
    out = tmp_path / "p"
    assert runner.invoke(cli, ["plan", str(character_dataset), "--target-gpu", "rtx4090", "--out", str(out)]).exit_code == 0
    data = json.loads((out / "plan.json").read_text())
    vram, time = data["vram"], data["time"]
    assert vram["budget_gib"] == pytest.approx(19.19, abs=0.01)
    assert sum(vram["components"].values()) == pytest.approx(vram["estimate_gib"], abs=0.01)
    assert {"cuda_overhead", "unet_weights", "optimizer_state", "unet_activations"} <= set(vram["components"])
    assert vram["calibrated"] is False and time["calibrated"] is False
    assert time["total_hours"] == pytest.approx(time["seconds_per_step"] * data["total_steps"] / 3600, rel=1e-3)
    setup = setup_from_values(plan_module.load_plan(out).value_set)
    assert vram["estimate_gib"] == pytest.approx(vram_gib(setup, vram["components"]["cuda_overhead"]), abs=1e-3)


def test_summary_prints_the_estimate_the_eta_and_explains_vram(runner, character_dataset, tmp_path):
    result = runner.invoke(cli, ["plan", str(character_dataset), "--target-gpu", "rtx4090", "--out", str(tmp_path / "p"),
                                 "--explain-vram"])
    assert result.exit_code == 0, result.output
    assert "of the 19.2 GiB budget" in result.output and "ETA:" in result.output
    for component in ("cuda_overhead", "unet_weights", "optimizer_state", "unet_activations"):
        assert component in result.output
    assert "unet_weights" not in runner.invoke(cli, ["plan", str(character_dataset), "--target-gpu", "rtx4090", "--out",
                                                     str(tmp_path / "q")]).output


def test_bad_fit_mode_is_refused(runner, character_dataset, tmp_path):
    result = runner.invoke(cli, ["plan", str(character_dataset), "--target-gpu", "rtx4090", "--fit", "fastest"])
    assert result.exit_code == 2 and "Traceback" not in result.output
    with pytest.raises(Exception, match="not one of speed, memory, off"):
        make(character_dataset, tmp_path, fit="fastest")
