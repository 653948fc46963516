"""Gate 2: sd-scripts' own asserts decided before training, and the seeds' rules."""

from __future__ import annotations

import pytest

from lorakit.plan.build import PlanRequest, make_plan


def findings(dataset, tmp_path, *overrides, presets=("character",), gpu="rtx4090"):
    request = PlanRequest(dataset=dataset, presets=list(presets), overrides=list(overrides), target_gpu=gpu,
                          out=tmp_path / "p")
    return {f.code: f for f in make_plan(request).plan.findings}


@pytest.mark.parametrize(
    ("overrides", "code"),
    [
        (["cache_text_encoder_outputs=true"], "params/te-cache-needs-unet-only"),
        (["cache_text_encoder_outputs=true", "network_train_unet_only=true", "shuffle_caption=true"],
         "params/te-cache-vs-caption-augmentation"),
        (["color_aug=true", "cache_latents=true"], "params/latent-cache-vs-augmentation"),
        (["bucket_reso_steps=48"], "params/bucket-steps"),
        (["min_bucket_reso=1088"], "params/resolution-below-min-bucket"),
        (["max_bucket_reso=768"], "params/resolution-above-max-bucket"),
        (["lr_scheduler=constant", "lr_warmup_steps=100"], "params/warmup-with-constant"),
        (["lr_scheduler=reduce_lr_on_plateau"], "params/broken-scheduler"),
        (["lr_scheduler=cosine_annealing"], "params/unknown-scheduler"),
        (["lr_scheduler=adafactor", "lr_warmup_steps=0"], "params/adafactor-scheduler"),
        (["full_bf16=true", "mixed_precision=fp16"], "params/full-bf16-needs-bf16"),
        (["fp8_base=true", "mixed_precision=no"], "params/fp8-needs-mixed-precision"),
        (["optimizer_args=betas=0.9,0.99 weight_decay=low"], "params/optimizer-args"),
        (["network_args=conv_dim"], "params/network-args"),
        (["use_8bit_adam=true"], "params/optimizer-conflict"),
        (["optimizer_type=SuperAdam"], "params/unknown-optimizer"),
        (["adaptive_noise_scale=0.01"], "params/adaptive-noise-needs-offset"),
        (["v2=true"], "params/v2"),
        (["fused_backward_pass=true"], "params/fused-backward-pass"),
        (["network_train_unet_only=true", "network_train_text_encoder_only=true"], "params/nothing-to-train"),
    ],
)
def test_sd_scripts_asserts_become_errors(character_dataset, tmp_path, overrides, code):
    found = findings(character_dataset, tmp_path, *overrides)
    assert found[code].level == "error", found[code]
    assert found[code].fix


@pytest.mark.parametrize(
    ("overrides", "presets", "code"),
    [
        (["learning_rate=0.01"], ("prodigy",), "params/adaptive-optimizer-lr"),
        (["network_alpha=64"], ("character",), "params/alpha-above-rank"),
        (["mixed_precision=fp16"], ("character",), "params/fp16-vae"),
        (["mixed_precision=no"], ("character",), "params/no-mixed-precision"),
        (["max_train_epochs=1"], ("character",), "params/total-steps"),
        (["max_train_epochs=60"], ("character",), "params/steps-per-image"),
        (["learning_rate=0.002", "text_encoder_lr=1e-5"], ("character",), "params/lr-steps-fried"),
        (["learning_rate=1e-6", "text_encoder_lr=1e-7"], ("character",), "params/lr-steps-too-low"),
        (["text_encoder_lr=5e-4"], ("character",), "params/text-encoder-lr-high"),
        (["clip_skip=2"], ("character",), "params/clip-skip"),
        (["sdpa=false"], ("character",), "params/no-attention-backend"),
        (["sample_every_n_steps=0"], ("character",), "params/sampling-disabled"),
        (["optimizer_args=scale_parameter=False"], ("adafactor",), "params/adafactor-relative-step"),
        (["network_args=conv_dim=4 rank_drop=0.1"], ("character",), "params/network-args-ignored"),
        (["save_model_as=ckpt"], ("character",), "params/save-format"),
    ],
)
def test_seed_rules_warn(character_dataset, tmp_path, overrides, presets, code):
    found = findings(character_dataset, tmp_path, *overrides, presets=presets)
    assert found[code].level == "warning", found
    assert found[code].fix


def test_prodigy_preset_has_no_lr_findings(character_dataset, tmp_path):
    found = findings(character_dataset, tmp_path, presets=("character", "prodigy"))
    assert not any(code.startswith(("params/adaptive", "params/lr-steps")) for code in found)


def test_builtin_presets_plan_without_gate_errors(character_dataset, tmp_path):
    for presets in (("character",), ("style", "adafactor"), ("object", "prodigy"), ("kohya-example",),
                    ("character", "lowvram-8gb")):
        found = findings(character_dataset, tmp_path, presets=presets)
        assert not [f for f in found.values() if f.level == "error"], presets


def test_several_backends_note_which_wins(character_dataset, tmp_path):
    found = findings(character_dataset, tmp_path, "xformers=true")
    assert "xformers" in found["params/several-attention-backends"].message


def test_text_encoder_lr_guidance_for_the_seed_example(character_dataset, tmp_path):
    # the example configuration (docs/recommendations.md §7) trains the text encoders at the U-Net's 4e-4: allowed, but gentler is advised
    found = findings(character_dataset, tmp_path, "text_encoder_lr=8e-4", presets=("kohya-example",))
    assert found["params/text-encoder-lr-high"].level == "warning"


def test_augmentation_turns_off_a_presets_latent_cache(character_dataset, tmp_path):
    request = PlanRequest(dataset=character_dataset, presets=["character"], overrides=["color_aug=true"],
                          target_gpu="rtx4090", out=tmp_path / "p")
    plan = make_plan(request).plan
    assert plan.values["cache_latents"].value is False and plan.values["cache_latents"].source == "auto:augmentation"
    assert not [f for f in plan.findings if f.level == "error"]


@pytest.mark.parametrize(("overrides", "message"), [
    (["train_batch_size=0"], "train_batch_size = 0 must be at least 1"),
    (["max_train_epochs=-3"], "max_train_epochs = -3 must be at least 1"),
    (["network_alpha=0"], "network_alpha = 0.0 must be above 0"),
    (["learning_rate=-1"], "learning_rate = -1.0 must be at least 0"),
    (["gradient_accumulation_steps=0"], "gradient_accumulation_steps = 0 must be at least 1"),
])
def test_values_below_their_minimum_are_refused(runner, character_dataset, tmp_path, overrides, message):
    from lorakit.cli.main import cli

    result = runner.invoke(cli, ["plan", str(character_dataset), "--target-gpu", "rtx4090", "--out", str(tmp_path / "p"),
                                 *[w for o in overrides for w in ("--set", o)]])
    assert result.exit_code == 2 and message in result.output and "Traceback" not in result.output


def test_no_training_length_is_an_error(character_dataset, tmp_path):
    found = findings(character_dataset, tmp_path, "max_train_epochs=none")
    assert found["params/no-training-length"].level == "error"


def test_network_args_that_must_be_numbers(character_dataset, tmp_path):
    found = findings(character_dataset, tmp_path, "network_args=conv_dim=abc conv_alpha=4")
    assert "conv_dim=abc" in found["params/network-args-number"].message


def test_fixed_steps_keep_the_planned_batch(character_dataset, tmp_path):
    request = PlanRequest(dataset=character_dataset, presets=["character"], overrides=["max_train_steps=2000"],
                          target_gpu="rtx4090", out=tmp_path / "p")
    plan = make_plan(request).plan
    assert plan.values["train_batch_size"].value == 1 and plan.values["learning_rate"].value == 1e-4


def test_an_output_name_too_long_for_the_file_system_is_an_error(character_dataset, tmp_path):
    found = findings(character_dataset, tmp_path, "output_name=" + "x" * 250)
    assert found["params/output-name-too-long"].level == "error"
