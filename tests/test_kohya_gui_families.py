"""Kohya SS GUI export and import per model family: FLUX.1 [dev], Chroma and SD 1.5 configs as the GUI loads,
launches and defaults them (docs/kohya-gui.md §9)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import REPO, make_folder
from kohya_gui_rules import export_problems, launched_script
from test_kohya_gui_export import planned

from lorakit.cli.main import cli
from lorakit.config.schema import PATH_KEYS, registry
from lorakit.config.values import ResolvedValue, Values
from lorakit.errors import UserError
from lorakit.kohya_gui.arguments import effective
from lorakit.kohya_gui.export import direct_keys, export_plan, gui_arguments, gui_value
from lorakit.kohya_gui.importer import import_gui_config
from lorakit.kohya_gui.keys import gui_keys
from lorakit.models.source import resolve_sources
from lorakit.plan.build import PlanRequest, make_plan

FAMILY_PRESETS = REPO / "tests" / "fixtures" / "kohya_gui_presets" / "families"
FLUX_PRESET = FAMILY_PRESETS / "flux1D - adamw8bit fp8.json"


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("data") / "robots"
    make_folder(root / "10_sks robot", [(1024, 1024), (832, 1216), (1216, 832), (1024, 1024)] * 5)
    return root


def gui_file(tmp_path: Path, **values) -> Path:
    path = tmp_path / "gui.json"
    path.write_text(json.dumps(values), encoding="utf-8")
    return path


def codes(findings) -> dict[str, str]:
    return {f.code: f.level for f in findings}


def test_a_flux_plan_exports_as_a_flux_config(dataset, tmp_path):
    result = planned(dataset, tmp_path / "p", ["flux1-dev", "character"])
    exported = export_plan(result.plan)
    config = exported.config
    assert export_problems(exported.text().encode("utf-8"), "master", "flux1") == []
    assert (config["flux1_checkbox"], config["sdxl"], config["model_type"], config["LoRA_type"]) == (True, False, "flux", "Flux1")
    assert launched_script(config) == "flux_train_network.py"
    assert (config["guidance_scale"], config["timestep_sampling"], config["discrete_flow_shift"],
            config["model_prediction_type"]) == (1, "shift", 3.1582, "raw")
    assert config["flux1_cache_text_encoder_outputs"] is True and config["sdxl_cache_text_encoder_outputs"] is False
    assert (config["text_encoder_lr"], config["t5xxl_lr"]) == (0, 0), "the transformer alone trains"
    assert config["train_double_block_indices"] == "" and config["clip_skip"] == 0
    assert all(config[key] for key in ("ae", "clip_l", "t5xxl"))
    assert config["additional_parameters"] == ""
    gui_args, _ = gui_arguments(config)
    assert gui_args["network_module"] == "networks.lora_flux" and "max_token_length" not in gui_args


def test_flux_values_without_a_gui_field_go_through_additional_parameters(dataset, tmp_path):
    result = planned(dataset, tmp_path / "p", ["flux1-dev", "character"],
                     overrides=["guidance_scale=0", "blocks_to_swap=16", "network_args=img_attn_dim=8 split_qkv=True"])
    config = export_plan(result.plan).config
    assert config["blocks_to_swap"] == 16 and config["img_attn_dim"] == "8" and config["split_qkv"] is True
    # 0.0 equals False to the GUI's filter: only Chroma gets it back, so FLUX needs the command line.
    assert config["additional_parameters"] == "--guidance_scale 0.0"
    gui_args, _ = gui_arguments(config)
    assert effective(gui_args, "flux1")["guidance_scale"] == 0.0


def test_a_chroma_plan_exports_with_the_base_model_type_the_gui_has_only_at_master(dataset, tmp_path):
    result = planned(dataset, tmp_path / "p", ["chroma", "style"])
    exported = export_plan(result.plan)
    config = exported.config
    assert export_problems(exported.text().encode("utf-8"), "master", "chroma") == []
    assert (config["flux1_checkbox"], config["model_type"], config["apply_t5_attn_mask"]) == (True, "chroma", True)
    assert (config["guidance_scale"], config["timestep_sampling"], config["clip_l"]) == (0, "sigmoid", "")
    gui_args, _ = gui_arguments(config)
    assert gui_args["guidance_scale"] == 0.0 and gui_args["model_type"] == "chroma" and "clip_l" not in gui_args
    with pytest.raises(UserError, match="v26.0.0 has no model_type field"):
        export_plan(result.plan, "v26")


def test_a_chroma_plans_own_sampling_survives_the_guis_switch_to_chroma(dataset, tmp_path):
    result = planned(dataset, tmp_path / "p", ["chroma", "style"], overrides=["timestep_sampling=shift"])
    config = export_plan(result.plan).config
    assert config["timestep_sampling"] == "sigmoid", "what the GUI shows after switching to Chroma"
    assert config["additional_parameters"] == "--timestep_sampling shift"


def test_flux_needs_gui_v25_or_newer(runner, dataset, tmp_path):
    planned(dataset, tmp_path / "p", ["flux1-dev"])
    old = runner.invoke(cli, ["export", "kohya-gui", str(tmp_path / "p"), "--gui-version", "v24"])
    assert old.exit_code == 2 and "no flux1_checkbox field" in old.output and "--gui-version master" in old.output
    assert not (tmp_path / "p" / "kohya_gui.json").exists()
    ok = runner.invoke(cli, ["export", "kohya-gui", str(tmp_path / "p"), "--gui-version", "v25"])
    assert ok.exit_code == 0, ok.output


def test_an_sd15_plan_exports_with_every_model_checkbox_off(dataset, tmp_path):
    result = planned(dataset, tmp_path / "p", ["sd15", "character"])
    exported = export_plan(result.plan)
    config = exported.config
    assert export_problems(exported.text().encode("utf-8"), "master", "sd15") == []
    assert launched_script(config) == "train_network.py" and config["LoRA_type"] == "Standard"
    assert config["max_resolution"] == "512,512" and config["additional_parameters"] == ""


def test_the_guis_flux_preset_imports_as_flux_with_its_own_values(dataset, tmp_path):
    imported = import_gui_config(FLUX_PRESET)
    assert imported.family == "flux1" and imported.base == "flux1-dev"
    values = imported.values
    assert (values["guidance_scale"], values["timestep_sampling"], values["model_prediction_type"]) == (1.0, "sigmoid", "raw")
    assert values["fp8_base"] and values["cache_text_encoder_outputs"] and values["t5xxl_max_token_length"] == 512
    assert values["network_module"] == "networks.lora_flux" and values["clip_skip"] is None
    found = codes(imported.findings)
    assert found["gui/missing-path"] == "warning", "its ae, clip_l and t5xxl are 'put the full path ... here'"
    result = make_plan(PlanRequest(dataset=dataset, target_gpu="rtx4090", out=tmp_path / "p", imported=imported.imported()))
    assert result.plan.family == "flux1" and result.plan.presets[:2] == ["flux1-dev", f"kohya-gui:{FLUX_PRESET.name}"]
    assert result.plan.values["guidance_scale"].value == 1.0


def test_a_fresh_guis_flux_defaults_are_what_the_plan_trains(tmp_path):
    """What the GUI fills in differs from flux1-dev's recipe: guidance 3.5, sigma sampling, sigma_scaled, no caching."""
    imported = import_gui_config(gui_file(tmp_path, flux1_checkbox=True, sdxl=False, LoRA_type="Flux1"))
    values, entries = imported.values, imported.entries
    assert (values["guidance_scale"], values["timestep_sampling"], values["model_prediction_type"]) == (3.5, "sigma", "sigma_scaled")
    assert values["discrete_flow_shift"] == 3.0 and values["t5xxl_max_token_length"] == 512
    assert entries["cache_text_encoder_outputs"] is False and entries["guidance_scale"] == 3.5
    assert not values["network_train_unet_only"], "the GUI's text encoder learning rate is 1e-4 at master"
    assert "gui/no-model-files" in codes(imported.findings), "no ae, clip_l, t5xxl: flux1-dev's are used"
    for key in ("ae", "clip_l", "t5xxl"):
        assert key not in values


def test_loading_a_chroma_config_switches_three_fields_to_chromas_defaults(tmp_path):
    imported = import_gui_config(gui_file(tmp_path, flux1_checkbox=True, sdxl=False, LoRA_type="Flux1",
                                          model_type="chroma", guidance_scale=3.5, timestep_sampling="shift"))
    assert imported.family == "chroma" and imported.base == "chroma"
    warning = next(f for f in imported.findings if f.code == "gui/chroma-defaults")
    assert "guidance_scale, apply_t5_attn_mask, timestep_sampling" in warning.message
    assert (imported.values["guidance_scale"], imported.values["timestep_sampling"]) == (0.0, "sigmoid")
    assert imported.values["apply_t5_attn_mask"] is True and imported.values["model_type"] == "chroma"


@pytest.mark.parametrize("name", sorted(p.name for p in FAMILY_PRESETS.glob("*sd15*.json")))
def test_the_guis_sd15_presets_import_as_sd15(dataset, tmp_path, name):
    imported = import_gui_config(FAMILY_PRESETS / name)
    assert imported.family == "sd15" and imported.preset().header.extends == ["sd15"]
    result = make_plan(PlanRequest(dataset=dataset, target_gpu="rtx4090", out=tmp_path / "p", imported=imported.imported()))
    assert result.plan.family == "sd15" and result.plan.script == "train_network.py" and result.plan.total_steps > 0


def test_a_flux_config_cannot_build_on_another_familys_base(runner, dataset, tmp_path):
    result = runner.invoke(cli, ["plan", str(dataset), "--target-gpu", "rtx4090", "--out", str(tmp_path / "p"),
                                 "--from-kohya-gui", str(FLUX_PRESET), "--preset", "sdxl-base"])
    assert result.exit_code == 2 and "builds on flux1-dev" in result.output and "sdxl-base" in result.output


def test_import_cli_names_the_family_base(runner, tmp_path):
    result = runner.invoke(cli, ["import", "kohya-gui", str(FLUX_PRESET), "-o", str(tmp_path / "flux.toml")])
    assert result.exit_code == 0, result.output
    assert "differ from flux1-dev" in result.output
    assert 'extends = ["flux1-dev"]' in (tmp_path / "flux.toml").read_text(encoding="utf-8")


FLUX_ROWS = sorted(set(direct_keys("flux1")) - set(direct_keys("sdxl")))


@pytest.fixture(scope="module")
def flux_plan(dataset, tmp_path_factory):
    return planned(dataset, tmp_path_factory.mktemp("flux") / "p", ["flux1-dev"]).plan


def _flux_value(arg: str):
    """A value for `arg` that flux1-dev does not use, of the type flux_train_network.py wants."""
    spec = registry("flux1")[arg]
    if spec.choices:
        return next(c for c in reversed(spec.choices) if c not in (None, spec.default, "shift", "raw"))
    if arg in PATH_KEYS or arg in ("ae", "clip_l", "t5xxl"):
        return "/x-value.safetensors"
    return {"bool": True, "int": 7, "float": 2.25}.get(spec.kind, "x-value")


@pytest.mark.parametrize("gui_key", FLUX_ROWS)
def test_flux_mapping_rows_both_ways(flux_plan, tmp_path, gui_key):
    """plan value → FLUX field → the GUI's TOML gives sd-scripts the value; the field → import gives it back."""
    arg = direct_keys("flux1")[gui_key]
    value = _flux_value(arg)
    values = {**flux_plan.values, arg: ResolvedValue(value=value, source="set")}
    # a model file reaches the GUI as the plan resolved it (plan.json's model section), as in a real plan
    model = resolve_sources(Values(values), Path(flux_plan.plan_dir))
    exported = export_plan(flux_plan.model_copy(update={"values": values, "model": model}))
    if arg != "cache_text_encoder_outputs":  # the plan caches already; _to_disk is the distinct one
        assert exported.config[gui_key] == gui_value(gui_keys()[gui_key], value)
    assert exported.config["additional_parameters"] == ""
    gui_args, _ = gui_arguments(exported.config)
    assert effective(gui_args, "flux1")[arg] == effective({arg: value}, "flux1")[arg]
    path = tmp_path / "gui.json"
    path.write_text(exported.text(), encoding="utf-8")
    assert effective(import_gui_config(path).values, "flux1")[arg] == effective({arg: value}, "flux1")[arg]
