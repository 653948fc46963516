"""`lorakit export kohya-gui`: every export follows the GUI's rules, trains what `lorakit launch` trains,
and golden files pin the JSON. Regenerate the golden files with LORAKIT_UPDATE_GOLDEN=1."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import tomllib
from conftest import REPO, builtin_preset_cases, make_folder
from hubgen import SDXL, cache_files, diffusers_files, fake_checkpoint, safetensors_bytes
from kohya_gui_rules import KEYS, export_problems, family_keys, version_keys

from lorakit.cli.main import cli
from lorakit.config.schema import PATH_KEYS, registry
from lorakit.config.values import ResolvedValue
from lorakit.errors import UserError
from lorakit.kohya_gui.arguments import effective
from lorakit.kohya_gui.export import direct_keys, export_plan, fits_choices, gui_arguments, gui_value
from lorakit.kohya_gui.keys import gui_keys
from lorakit.plan.build import PlanRequest, make_plan, write_plan

GOLDEN = REPO / "tests" / "golden" / "kohya-gui"
VERSIONS = ["master", "v26", "v25", "v24"]


def builtin_presets() -> list[str]:
    """Every built-in preset of every family: `character` on SDXL, `flux1-dev+character` on FLUX.1, ..."""
    return builtin_preset_cases()


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("data") / "dogs"
    make_folder(root / "10_sks dog", [(1024, 1024), (832, 1216), (1216, 832), (1024, 1024)] * 5)
    return root


def planned(dataset: Path, out: Path, presets: list[str], gpu: str = "rtx4090", overrides: list[str] = ()):
    presets = [name for preset in presets for name in preset.split("+")]  # a builtin_preset_cases() name
    result = make_plan(PlanRequest(dataset=dataset, presets=presets, target_gpu=gpu, out=out, overrides=list(overrides),
                                   sd_scripts="/opt/sd-scripts", python="/opt/venv/bin/python"))
    write_plan(result, force=True)
    return result


def plan_arguments(files: dict[str, str]) -> dict:
    """What the plan gives sd-scripts: config.toml, with dataset.toml's [general] winning for its keys."""
    config = tomllib.loads(files["config.toml"])
    flat = {k: v for table in config.values() for k, v in table.items()}
    general = tomllib.loads(files["dataset.toml"])["general"]
    flat.update(general)
    flat["resolution"] = ",".join(str(x) for x in general["resolution"])
    return flat


def from_plan_folder(arguments: dict, plan_dir: Path) -> dict:
    """The plan's relative paths as sd-scripts, started in the plan folder, opens them (the GUI gets them absolute)."""
    own = ("dataset_config", "output_dir", "logging_dir", "sample_prompts")
    return {k: str(plan_dir / v) if k in own and isinstance(v, str) and not os.path.isabs(v) else v
            for k, v in arguments.items()}


def prompt_lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.strip() and not line.startswith("#")]


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("preset", builtin_presets())
def test_every_export_follows_the_guis_key_and_format_rules(dataset, tmp_path, preset, version):
    result = planned(dataset, tmp_path / "p", [preset], overrides=["pretrained_model_name_or_path=/models/m.safetensors"])
    family = result.plan.family
    if family_keys(family) - version_keys(version):
        with pytest.raises(UserError, match=f"cannot export this plan for --gui-version {version}"):
            export_plan(result.plan, version)
        return
    exported = export_plan(result.plan, version)
    assert export_problems(exported.text().encode("utf-8"), version, family) == []
    assert not [f for f in exported.findings if f.level == "error"]


@pytest.mark.parametrize("preset", builtin_presets())
@pytest.mark.parametrize("gpu", ["rtx3070-8gb", "rtx4090"])
def test_the_gui_run_trains_what_lorakit_launch_trains(dataset, tmp_path, preset, gpu):
    result = planned(dataset, tmp_path / "p", [preset], gpu, ["pretrained_model_name_or_path=/models/m.safetensors"])
    exported = export_plan(result.plan)
    gui_args, prompts = gui_arguments(exported.config)
    ours = from_plan_folder(plan_arguments(result.files), tmp_path / "p")
    gui_args = {**gui_args, **tomllib.loads(result.files["dataset.toml"])["general"], "resolution": ours["resolution"]}
    mine, theirs = effective(ours, result.plan.family), effective(gui_args, result.plan.family)
    mine.pop("sample_prompts"), theirs.pop("sample_prompts")
    assert {k: (mine[k], theirs[k]) for k in mine if mine[k] != theirs[k]} == {}
    # Built-in presets need no extra command-line arguments, except a gradient clipping of 0 (the FLUX Adafactor
    # recipe): the GUI drops a 0 from its TOML, so the export passes it on the command line (docs/kohya-gui.md §2.8).
    expected = "--max_grad_norm 0.0" if ours.get("max_grad_norm") == 0 else ""
    assert exported.config["additional_parameters"] == expected
    if "sample_prompts.txt" in result.files:
        assert prompts.splitlines() == prompt_lines(result.files["sample_prompts.txt"])


def _distinct_value(arg: str):
    """A value for `arg` that no preset or default uses, of the type sd-scripts wants."""
    spec = registry()[arg]
    if spec.choices:
        return next(c for c in reversed(spec.choices) if c not in (None, spec.default))
    if arg in PATH_KEYS:
        return "/x-value"  # a plan holds user paths absolute (a relative one is inside the plan folder)
    return {"bool": True, "int": 3, "float": 0.25, "int_or_float": 3, "resolution": "896,1152"}.get(spec.kind, "x-value")


@pytest.fixture(scope="module")
def base_plan(dataset, tmp_path_factory):
    return planned(dataset, tmp_path_factory.mktemp("plan") / "p", ["sdxl-base"]).plan


# The GUI writes these only together with another field, so a lone change travels in additional_parameters.
CONDITIONAL = {"multires_noise_discount": "only written with noise_offset_type Multires",
               "clip_skip": "sd-scripts ignores it for SDXL; the GUI field is an int slider"}


@pytest.mark.parametrize("gui_key", sorted(direct_keys()))
def test_mapping_table_row_both_ways(base_plan, tmp_path, gui_key):
    """plan value → GUI field → GUI's TOML gives sd-scripts the value; GUI field → import gives it back."""
    arg = direct_keys()[gui_key]
    value = _distinct_value(arg)
    values = {**base_plan.values, arg: ResolvedValue(value=value, source="set")}
    exported = export_plan(base_plan.model_copy(update={"values": values}))
    key = gui_keys()[gui_key]
    if gui_key not in CONDITIONAL and fits_choices(key, gui_value(key, value)):
        assert exported.config[gui_key] == gui_value(key, value)
    gui_args, _ = gui_arguments(exported.config)
    assert effective({**gui_args, arg: gui_args.get(arg)})[arg] == effective({arg: value})[arg]
    from lorakit.kohya_gui.importer import import_gui_config

    path = tmp_path / "gui.json"
    path.write_text(exported.text(), encoding="utf-8")
    imported = import_gui_config(path)
    if arg not in ("output_dir", "output_name", "logging_dir"):  # the plan folder decides these
        assert effective({arg: imported.values[arg]})[arg] == effective({arg: value})[arg]


def test_special_rows_of_the_mapping(dataset, tmp_path):
    result = planned(dataset, tmp_path / "p", ["character"], overrides=[
        "network_args=conv_dim=8 conv_alpha=4 rank_dropout=0.1", "optimizer_args=weight_decay=0.01 betas=0.9,0.99",
        "text_encoder_lr=2e-5", "unet_lr=3e-4", "lr_warmup_steps=0.05", "xformers=true"])
    config = export_plan(result.plan).config
    assert config["LoRA_type"] == "Kohya LoCon" and (config["conv_dim"], config["conv_alpha"]) == (8, 4)
    assert config["rank_dropout"] == 0.1
    assert config["optimizer_args"] == "weight_decay=0.01 betas=0.9,0.99"
    assert (config["text_encoder_lr"], config["unet_lr"], config["learning_rate"]) == (2e-5, 3e-4, 0.0001)
    assert (config["lr_warmup"], config["lr_warmup_steps"]) == (5, 0)
    assert config["xformers"] == "xformers"
    assert (config["max_train_epochs"], config["epoch"], config["max_train_steps"]) == (12, 12, 0)
    assert config["max_resolution"] == "1024,1024"
    assert config["dataset_config"] == str(tmp_path / "p" / "dataset.toml")
    assert config["train_data_dir"] == str(dataset)
    assert config["additional_parameters"] == ""


def test_values_without_a_gui_field_go_through_additional_parameters(dataset, tmp_path):
    result = planned(dataset, tmp_path / "p", ["character"], overrides=[
        "max_grad_norm=0", "lr_warmup_steps=100", "sample_at_first=true", "min_snr_gamma=1.5",
        "text_encoder_lr=[1e-5, 2e-5]"])
    exported = export_plan(result.plan)
    assert exported.config["max_grad_norm"] == 1, "a 0 would be dropped by the GUI (docs/kohya-gui.md §2.8)"
    assert exported.config["additional_parameters"] == (
        "--sample_at_first --max_grad_norm 0.0 --lr_warmup_steps 100 --min_snr_gamma 1.5 --text_encoder_lr 1e-05 2e-05")
    assert "gui/additional-parameters" in {f.code for f in exported.findings}
    gui_args, _ = gui_arguments(exported.config)
    assert gui_args["max_grad_norm"] == 0.0 and gui_args["lr_warmup_steps"] == 100 and gui_args["sample_at_first"]


def test_what_the_gui_cannot_express_is_a_warning(dataset, tmp_path):
    result = planned(dataset, tmp_path / "p", ["character"], overrides=["training_comment=two words"])
    exported = export_plan(result.plan)
    assert exported.config["training_comment"] == "two words"  # a text field carries it
    result = planned(dataset, tmp_path / "q", ["character"], overrides=["log_prefix=my run"])
    exported = export_plan(result.plan)
    warning = next(f for f in exported.findings if f.code == "gui/not-expressible")
    assert warning.level == "warning" and "log_prefix" in warning.message


def test_a_local_model_file_and_an_odd_caption_extension_are_reported(dataset, tmp_path):
    result = planned(dataset, tmp_path / "p", ["character"], overrides=["pretrained_model_name_or_path=/m/x.safetensors"])
    codes = {f.code: f.level for f in export_plan(result.plan).findings}
    assert codes["gui/model-path"] == "warning"
    result = planned(dataset, tmp_path / "q", ["character"], overrides=["caption_extension=.wd14.txt"])
    exported = export_plan(result.plan)
    assert exported.config["caption_extension"] == ".txt"
    assert "gui/caption-extension" in {f.code for f in exported.findings}


def config_models(result) -> dict[str, str]:
    """The model paths config.toml gives sd-scripts."""
    model = tomllib.loads(result.files["config.toml"])["model"]
    return {k: model[k] for k in ("pretrained_model_name_or_path", "vae") if k in model}


@pytest.fixture
def hub_models(isolated_hub) -> Path:
    """A Hub cache with a diffusers repo at a tag, single-file repos and a VAE file."""
    hub = isolated_hub / "hub"
    cache_files(hub, "me/my-sdxl", diffusers_files(), revision="v2")
    cache_files(hub, "me/sdxl.merge", diffusers_files())
    cache_files(hub, "me/single", {"model.safetensors": fake_checkpoint()}, revision="v3")
    cache_files(hub, "madebyollin/sdxl-vae-fp16-fix", {"sdxl_vae.safetensors": safetensors_bytes({"w": 4})})
    return hub


@pytest.mark.parametrize("overrides", [
    ["pretrained_model_name_or_path=me/my-sdxl@v2"],
    ["pretrained_model_name_or_path=me/single@v3:model.safetensors", "vae=madebyollin/sdxl-vae-fp16-fix:sdxl_vae.safetensors"],
    ["pretrained_model_name_or_path=me/sdxl.merge"],  # the GUI takes no Hub id with a dot
], ids=["revision", "file-and-vae-file", "id-the-gui-refuses"])
def test_the_gui_gets_the_model_paths_config_toml_gives_sd_scripts(dataset, tmp_path, hub_models, overrides):
    result = planned(dataset, tmp_path / "p", ["character"], overrides=overrides)
    exported = export_plan(result.plan)
    wanted = config_models(result)
    assert {k: exported.config[k] for k in wanted} == wanted
    gui_args, _ = gui_arguments(exported.config)
    assert {k: gui_args[k] for k in wanted} == wanted
    assert exported.config["additional_parameters"] == ""
    warnings = [f for f in exported.findings if f.code == "gui/model-path"]
    assert sorted(f.key for f in warnings) == sorted(wanted)
    assert all("exists only on this machine" in f.message for f in warnings)


def test_relative_model_paths_are_exported_as_config_toml_names_them(runner, dataset, tmp_path, monkeypatch):
    work, elsewhere = tmp_path / "wörk dir", tmp_path / "elsewhere"
    elsewhere.mkdir()
    (work / "models").mkdir(parents=True)
    (work / "models" / "base.safetensors").write_bytes(fake_checkpoint())
    (work / "models" / "vae.safetensors").write_bytes(safetensors_bytes({"w": 4}))
    monkeypatch.chdir(work)
    made = runner.invoke(cli, ["plan", str(dataset), "--out", str(tmp_path / "p"), "--target-gpu", "rtx4090",
                               "--set", "pretrained_model_name_or_path=models/base.safetensors",
                               "--set", "vae=models/vae.safetensors"])
    assert made.exit_code == 0, made.output
    monkeypatch.chdir(elsewhere)
    done = runner.invoke(cli, ["export", "kohya-gui", str(tmp_path / "p"), "-o", "gui.json"])
    assert done.exit_code == 0, done.output
    exported = json.loads((elsewhere / "gui.json").read_text(encoding="utf-8"))
    assert exported["pretrained_model_name_or_path"] == str(work / "models" / "base.safetensors")
    assert exported["vae"] == str(work / "models" / "vae.safetensors")
    assert exported["additional_parameters"] == ""


def test_a_plain_hub_id_sd_scripts_loads_itself_is_kept(dataset, tmp_path, hub_models):
    result = planned(dataset, tmp_path / "p", ["character"], overrides=["vae=madebyollin/sdxl-vae-fp16-fix"])
    exported = export_plan(result.plan)
    assert exported.config["pretrained_model_name_or_path"] == SDXL, "the GUI's own SDXL id (docs/kohya-gui.md §2.7)"
    assert exported.config["vae"] == "madebyollin/sdxl-vae-fp16-fix"
    assert exported.config["additional_parameters"] == "", "the ids stand for the paths config.toml names"
    note = next(f for f in exported.findings if f.code == "gui/model-hub-id")
    assert note.level == "info" and "diffusers copy" in note.message
    assert "gui/model-path" not in {f.code for f in exported.findings}


def test_a_hub_model_not_downloaded_yet_is_exported_with_the_command_that_fetches_it(dataset, tmp_path):
    result = planned(dataset, tmp_path / "p", ["character"], overrides=["pretrained_model_name_or_path=me/other@v9:m.safetensors"])
    exported = export_plan(result.plan)
    assert exported.config["pretrained_model_name_or_path"] == config_models(result)["pretrained_model_name_or_path"]
    warning = next(f for f in exported.findings if f.code == "gui/model-path")
    assert "once the model is downloaded" in warning.message and "lorakit fetch-model" in warning.fix


def test_older_gui_versions_get_their_own_key_set(dataset, tmp_path):
    result = planned(dataset, tmp_path / "p", ["character"])
    assert len(export_plan(result.plan, "v24").config) == 158
    assert len(export_plan(result.plan, "v26").config) == 287
    assert len(export_plan(result.plan).config) == len(KEYS) == 288


@pytest.mark.parametrize("version", VERSIONS)
def test_an_export_for_an_older_gui_checks_only_the_fields_that_gui_has(dataset, tmp_path, version):
    result = planned(dataset, tmp_path / "p", ["character"])
    refused = [f.message for f in export_plan(result.plan, version).findings if f.code == "gui/refused-value"]
    assert refused == [], "no field of the plan's export is refused; fields the version lacks are not written"


def test_a_plan_value_an_older_gui_has_no_field_for_is_a_warning_naming_both(dataset, tmp_path):
    result = planned(dataset, tmp_path / "p", ["character"], overrides=["save_last_n_epochs=3"])
    old = export_plan(result.plan, "v24")
    warning = next(f for f in old.findings if f.code == "gui/field-not-in-version")
    assert warning.level == "warning" and "save_last_n_epochs" in warning.message and "v24.1.7" in warning.message
    assert "--save_last_n_epochs 3" in old.config["additional_parameters"]
    assert "save_last_n_epochs" not in old.config
    assert "gui/field-not-in-version" not in {f.code for f in export_plan(result.plan, "master").findings}


GOLDEN_CASES = {
    "character-rtx4090-master": (["character"], "rtx4090", "master"),
    "kohya-example-a100-v24": (["kohya-example"], "a100-80gb", "v24"),
    "style-lowvram-rtx3070-v25": (["style"], "rtx3070-8gb", "v25"),
    "sd15-character-rtx4090-master": (["sd15", "character"], "rtx4090", "master"),
}


@pytest.mark.parametrize("case", sorted(GOLDEN_CASES))
def test_golden_exports(dataset, tmp_path, case):
    presets, gpu, version = GOLDEN_CASES[case]
    out = tmp_path / "plan"
    result = planned(dataset, out, presets, gpu)
    text = export_plan(result.plan, version).text()
    text = text.replace(str(dataset), "<DATASET>").replace(str(out), "<PLAN>")
    golden = GOLDEN / f"{case}.json"
    if os.environ.get("LORAKIT_UPDATE_GOLDEN"):
        golden.parent.mkdir(parents=True, exist_ok=True)
        golden.write_text(text, encoding="utf-8")
    assert golden.is_file(), f"missing golden file {golden}; run with LORAKIT_UPDATE_GOLDEN=1"
    assert text == golden.read_text(encoding="utf-8"), f"{case} differs from its golden file"


def test_cli_writes_the_export_into_the_plan_and_never_overwrites(runner, dataset, tmp_path):
    out = tmp_path / "plän 'x'"
    planned(dataset, out, ["character"])
    first = runner.invoke(cli, ["export", "kohya-gui", str(out)])
    assert first.exit_code == 0, first.output
    written = out / "kohya_gui.json"
    assert json.loads(written.read_text(encoding="utf-8"))["sdxl"] is True
    written.write_text("{}", encoding="utf-8")  # as if the GUI had saved edits there
    again = runner.invoke(cli, ["export", "kohya-gui", str(out)])
    assert again.exit_code == 2 and "--force" in again.output and written.read_text() == "{}"
    forced = runner.invoke(cli, ["export", "kohya-gui", str(out), "--force", "--gui-version", "v25", "-o", str(written)])
    assert forced.exit_code == 0 and len(json.loads(written.read_text())) == 230


def test_cli_refuses_a_folder_that_is_not_a_plan(runner, tmp_path):
    result = runner.invoke(cli, ["export", "kohya-gui", str(tmp_path)])
    assert result.exit_code == 2 and "not a lorakit plan" in result.output and "Traceback" not in result.output
