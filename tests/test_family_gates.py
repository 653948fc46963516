"""Gate 2 per family (docs/families.md §7), sample prompts per family (§8) and model cards per family (§9)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import make_folder
from hubgen import fake_lora
from test_push import dry_run, front_matter

from lorakit.cli.main import cli
from lorakit.plan.build import PlanRequest, load_plan, make_plan, write_plan

FAMILY_CODES = {
    "params/flux-guidance", "params/chroma-guidance", "params/flux-timestep-sampling", "params/flux-model-prediction",
    "params/discrete-flow-shift-unused", "params/discrete-flow-shift-default", "params/te-cache-while-t5-trains",
    "params/t5-train-needs-text-encoders", "params/chroma-t5-attn-mask", "params/blocks-swap-vs-cpu-offload",
    "params/chroma-cpu-offload", "params/model-type", "params/sd-only-key", "params/sample-sampler-ignored",
    "params/attention-ignored", "params/chroma-sample-guidance", "params/sample-guidance-unused",
    "params/sample-negative-ignored",
    "params/network-module-family", "params/network-module", "params/sd15-resolution", "params/sd15-clip-skip",
    "dataset/caption-tokens", "params/bucket-steps", "params/te-cache-needs-unet-only", "params/v2",
}


@pytest.fixture
def data(tmp_path) -> Path:
    root = tmp_path / "data"
    make_folder(root / "10_zk robot", [(1024, 1024), (832, 1216), (1216, 832)] * 5)
    return root


def plan(runner, tmp_path: Path, data: Path, base: str, *sets: str, extra: tuple[str, ...] = ()) -> dict:
    """`lorakit plan DATA --preset BASE --preset character --set ...` on an A100 (no fit trouble): its plan.json."""
    out = tmp_path / "plan"
    args = ["plan", str(data), "--preset", base, "--preset", "character", "--target-gpu", "a100-80gb", "--out", str(out),
            "--force", "--json", *extra, *[word for s in sets for word in ("--set", s)]]
    result = runner.invoke(cli, args)
    assert result.exit_code in (0, 1), result.output
    return json.loads((out / "plan.json").read_text(encoding="utf-8"))


def found(runner, tmp_path, data, base, *sets) -> dict[str, dict]:
    return {f["code"]: f for f in plan(runner, tmp_path, data, base, *sets)["findings"]}


@pytest.mark.parametrize("base", ["sdxl-base", "flux1-dev", "chroma", "sd15"])
def test_each_base_preset_plans_without_a_family_finding(runner, tmp_path, data, base):
    assert not FAMILY_CODES & set(found(runner, tmp_path, data, base))


@pytest.mark.parametrize(("base", "sets", "code", "level"), [
    ("flux1-dev", ["guidance_scale=3.5"], "params/flux-guidance", "warning"),
    ("flux1-dev", ["guidance_scale=none"], "params/flux-guidance", "warning"),
    ("chroma", ["guidance_scale=1.0"], "params/chroma-guidance", "error"),
    ("flux1-dev", ["timestep_sampling=sigma"], "params/flux-timestep-sampling", "warning"),
    ("chroma", ["timestep_sampling=shift"], "params/flux-timestep-sampling", "warning"),
    ("flux1-dev", ["model_prediction_type=sigma_scaled"], "params/flux-model-prediction", "warning"),
    ("flux1-dev", ["timestep_sampling=flux_shift"], "params/discrete-flow-shift-unused", "warning"),
    ("flux1-dev", ["discrete_flow_shift=none"], "params/discrete-flow-shift-default", "info"),
    ("flux1-dev", ["network_args=train_t5xxl=True", "network_train_unet_only=false"], "params/te-cache-while-t5-trains", "error"),
    ("flux1-dev", ["network_args=train_t5xxl=True"], "params/t5-train-needs-text-encoders", "warning"),
    ("chroma", ["apply_t5_attn_mask=false"], "params/chroma-t5-attn-mask", "error"),
    ("flux1-dev", ["blocks_to_swap=16", "cpu_offload_checkpointing=true"], "params/blocks-swap-vs-cpu-offload", "error"),
    ("chroma", ["cpu_offload_checkpointing=true"], "params/chroma-cpu-offload", "warning"),
    ("flux1-dev", ["model_type=chroma", "apply_t5_attn_mask=true"], "params/model-type", "warning"),
    ("flux1-dev", ["sample_sampler=euler_a"], "params/sample-sampler-ignored", "info"),
    ("flux1-dev", ["xformers=true"], "params/attention-ignored", "info"),
    ("chroma", ["sample_guidance=none"], "params/chroma-sample-guidance", "warning"),
    ("sd15", ["sample_guidance=3.5"], "params/sample-guidance-unused", "info"),
    ("flux1-dev", ["sample_negative_prompt=blurry"], "params/sample-negative-ignored", "info"),
    ("flux1-dev", ["bucket_reso_steps=32"], "params/bucket-steps", "error"),
    ("sd15", ["bucket_reso_steps=32"], "params/bucket-steps", "error"),
    ("flux1-dev", ["network_module=networks.lora"], "params/network-module-family", "error"),
    ("sdxl-base", ["network_module=networks.lora_flux"], "params/network-module-family", "error"),
    ("flux1-dev", ["network_module=lycoris.kohya"], "params/network-module", "info"),
    ("sd15", ["resolution=1024,1024"], "params/sd15-resolution", "warning"),
    ("sd15", ["clip_skip=3"], "params/sd15-clip-skip", "warning"),
    ("sd15", ["clip_skip=2"], "params/sd15-clip-skip", "info"),
    ("sd15", ["v2=true"], "params/v2", "warning"),
    ("sdxl-base", ["v2=true"], "params/v2", "error"),
])
def test_a_family_rule_fires_with_its_level_and_a_fix(runner, tmp_path, data, base, sets, code, level):
    hit = found(runner, tmp_path, data, base, *sets)[code]
    assert hit["level"] == level, hit
    assert hit["fix"] or level == "info"


@pytest.mark.parametrize("setting", ["clip_skip=2", "v2=true", "v_parameterization=true", "max_token_length=225",
                                     "min_snr_gamma=5", "noise_offset=0.05", "zero_terminal_snr=true"])
@pytest.mark.parametrize("base", ["flux1-dev", "chroma"])
def test_stable_diffusion_arguments_are_flagged_as_ignored_for_the_transformer_families(runner, tmp_path, data, base, setting):
    hit = found(runner, tmp_path, data, base, setting)["params/sd-only-key"]
    assert hit["level"] == "warning" and hit["key"] == setting.split("=")[0]
    assert "flux_train_network.py ignores" in hit["message"]


def test_clip_skip_1_is_the_last_layer_and_no_sd_only_key(runner, tmp_path, data):
    assert "params/sd-only-key" not in found(runner, tmp_path, data, "flux1-dev", "clip_skip=1")


def test_sdxl_keeps_its_own_clip_skip_warning(runner, tmp_path, data):
    codes = found(runner, tmp_path, data, "sdxl-base", "clip_skip=2")
    assert codes["params/clip-skip"]["level"] == "warning" and "params/sd-only-key" not in codes


def test_flux_caches_text_encoder_outputs_while_clip_l_trains(runner, tmp_path, data):
    """Only SDXL asserts network_train_unet_only with the cache; FLUX refuses it only while T5-XXL trains."""
    codes = found(runner, tmp_path, data, "flux1-dev", "network_train_unet_only=false")
    assert not {"params/te-cache-needs-unet-only", "params/te-cache-while-t5-trains"} & set(codes)
    sdxl = found(runner, tmp_path, data, "sdxl-base", "cache_text_encoder_outputs=true")
    assert sdxl["params/te-cache-needs-unet-only"]["level"] == "error"


def test_the_bucket_step_is_the_familys(runner, tmp_path, data):
    assert "params/bucket-steps" not in found(runner, tmp_path, data, "sdxl-base", "bucket_reso_steps=32")
    message = found(runner, tmp_path, data, "sd15", "bucket_reso_steps=32")["params/bucket-steps"]["message"]
    assert "train_network.py needs a multiple of 64 for SD 1.5" in message


def test_sdxl_unet_rules_stay_quiet_for_flux(runner, tmp_path, data):
    codes = found(runner, tmp_path, data, "flux1-dev", "sdpa=false", "mixed_precision=fp16")
    assert not {"params/no-attention-backend", "params/fp16-vae"} & set(codes)


def test_discrete_flow_shift_with_shift_sampling_is_quiet(runner, tmp_path, data):
    codes = found(runner, tmp_path, data, "flux1-dev", "discrete_flow_shift=3.0")
    assert not {"params/discrete-flow-shift-unused", "params/discrete-flow-shift-default"} & set(codes)


def test_long_captions_warn_for_clip_and_not_once_max_token_length_allows_them(runner, tmp_path):
    data = tmp_path / "long"
    make_folder(data / "10_zk robot", [(512, 512)] * 4, caption="{name}, " + ", ".join(f"detail {i}" for i in range(40)))
    hit = found(runner, tmp_path, data, "sd15")["dataset/caption-tokens"]
    assert hit["level"] == "warning" and "max_token_length=150" in hit["fix"] and len(hit["paths"]) == 4
    assert "dataset/caption-tokens" not in found(runner, tmp_path, data, "sd15", "max_token_length=225")
    assert "dataset/caption-tokens" not in found(runner, tmp_path, data, "flux1-dev")


def test_flux_targets_are_named_as_the_presets_not_the_seeds(runner, tmp_path):
    few = tmp_path / "few"
    make_folder(few / "10_zk robot", [(1024, 1024)] * 2)
    flux = found(runner, tmp_path, few, "flux1-dev")
    assert "the flux1-dev preset advises 10–50" in flux["dataset/image-count"]["message"]
    assert "seeds" not in flux["dataset/image-count"]["message"]
    sdxl = found(runner, tmp_path, few, "sdxl-base")
    assert "the seeds advise 50–100" in sdxl["dataset/image-count"]["message"]


def test_total_steps_name_the_family(runner, tmp_path, data):
    hit = found(runner, tmp_path, data, "flux1-dev", "max_train_epochs=40")["params/total-steps"]
    assert "the flux1-dev preset targets for a FLUX.1 [dev] LoRA" in hit["message"]


# --- sample prompts per family (docs/families.md §8) ----------------------------------------------------

def prompt_options(line: str) -> dict[str, str]:
    """A prompt line read as docs/sd-scripts.md §7 says sd-scripts reads it: split on " --", options by letter."""
    prompt, *parts = line.split(" --")
    options = dict(part.split(" ", 1) for part in parts)
    return {"prompt": prompt, **options}


def prompt_lines(plan_dir: Path) -> list[str]:
    text = (plan_dir / "sample_prompts.txt").read_text(encoding="utf-8")
    return [line for line in text.splitlines() if line and not line.startswith("#")]


@pytest.mark.parametrize(("base", "expected"), [
    ("flux1-dev", {"w": "1024", "h": "1024", "g": "3.5", "l": "1", "s": "20"}),
    ("chroma", {"w": "1024", "h": "1024", "g": "0", "l": "4", "s": "20"}),
    ("sdxl-base", {"w": "1024", "h": "1024", "l": "7", "s": "28"}),
    ("sd15", {"w": "512", "h": "512", "l": "7", "s": "28"}),
])
def test_sample_prompts_write_each_familys_options(runner, tmp_path, data, base, expected):
    plan(runner, tmp_path, data, base)
    lines = prompt_lines(tmp_path / "plan")
    assert lines
    for line in lines:
        options = prompt_options(line)
        assert {k: options.get(k) for k in expected} == expected
        assert "ss" not in options  # the sampler is config.toml's (SDXL, SD 1.5) or the FLUX script's own
        if "g" not in expected:
            assert "g" not in options
    legend = (tmp_path / "plan" / "sample_prompts.txt").read_text(encoding="utf-8").splitlines()[1]
    assert ("--g embedded guidance" in legend) == ("g" in expected)


def test_chroma_samples_carry_a_negative_prompt(runner, tmp_path, data):
    plan(runner, tmp_path, data, "chroma")
    assert all(prompt_options(line)["n"].startswith("low quality") for line in prompt_lines(tmp_path / "plan"))


def test_sample_guidance_is_settable_for_flux(runner, tmp_path, data):
    plan(runner, tmp_path, data, "flux1-dev", "sample_guidance=4", "sample_cfg=1")
    assert {prompt_options(line)["g"] for line in prompt_lines(tmp_path / "plan")} == {"4"}


def test_config_toml_names_the_familys_script(runner, tmp_path, data):
    plan(runner, tmp_path, data, "sd15")
    assert "#   train_network.py --config_file" in (tmp_path / "plan" / "config.toml").read_text(encoding="utf-8")


# --- model cards per family (docs/families.md §9) -------------------------------------------------------

def trained(data: Path, out: Path, base: str) -> Path:
    write_plan(make_plan(PlanRequest(dataset=data, presets=[base, "character"], target_gpu="a100-80gb", out=out)), force=True)
    done = load_plan(out)
    final = next(s.file for s in done.saves if s.kind == "final")
    lora = Path(done.value_set["output_dir"]) / final
    lora.parent.mkdir(parents=True, exist_ok=True)
    lora.write_bytes(fake_lora(done.total_steps))
    return out


@pytest.mark.parametrize(("base", "base_model", "license_", "tag"), [
    ("flux1-dev", "black-forest-labs/FLUX.1-dev", "other", "flux"),
    ("chroma", "lodestones/Chroma1-Base", "apache-2.0", "chroma"),
    ("sd15", "stable-diffusion-v1-5/stable-diffusion-v1-5", "creativeml-openrail-m", "sd-1.5"),
    ("sdxl-base", "stabilityai/stable-diffusion-xl-base-1.0", "openrail++", "stable-diffusion-xl"),
])
def test_the_model_card_names_the_familys_base_tags_and_licence(runner, tmp_path, data, base, base_model, license_, tag):
    card, _ = dry_run(runner, trained(data, tmp_path / "plan", base))
    meta = front_matter(card)
    assert (meta["base_model"], meta["base_model_relation"], meta["license"]) == (base_model, "adapter", license_)
    assert {tag, "lora", "text-to-image"} <= set(meta["tags"])
    assert f"from_pretrained('{base_model}'" in card
    other_tags = {"flux", "stable-diffusion-xl", "sd-1.5"} - {tag} - ({"flux"} if base == "chroma" else set())
    assert not other_tags & set(meta["tags"])


def test_a_flux_card_carries_the_non_commercial_licence(runner, tmp_path, data):
    card, _ = dry_run(runner, trained(data, tmp_path / "plan", "flux1-dev"))
    meta = front_matter(card)
    assert meta["license_name"] == "flux-1-dev-non-commercial-license"
    assert meta["license_link"] == "https://huggingface.co/black-forest-labs/FLUX.1-dev/blob/main/LICENSE.md"
    assert "A LoRA for FLUX.1 [dev]" in card and "torch.bfloat16" in card


def test_a_licence_given_by_the_user_wins_and_needs_no_name(runner, tmp_path, data):
    card, _ = dry_run(runner, trained(data, tmp_path / "plan", "flux1-dev"), "--license", "mit")
    meta = front_matter(card)
    assert meta["license"] == "mit" and "license_name" not in meta
