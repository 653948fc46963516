"""`lorakit import kohya-gui` and `lorakit plan --from-kohya-gui`: GUI configs read the way the GUI reads
them, the GUI's own SDXL presets, bad files, and the round trip plan → export → import → plan."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import tomllib
from conftest import REPO, make_folder
from test_kohya_gui_export import builtin_presets, plan_arguments, planned

from lorakit.cli.main import cli
from lorakit.config.family import FAMILIES
from lorakit.config.presets import PresetRegistry, load_preset
from lorakit.errors import ConfigError, UserError
from lorakit.kohya_gui.arguments import effective
from lorakit.kohya_gui.export import export_plan
from lorakit.kohya_gui.importer import import_gui_config
from lorakit.plan.build import PlanRequest, make_plan

GUI_PRESETS = REPO / "tests" / "fixtures" / "kohya_gui_presets"


def gui_preset(name: str) -> Path:
    return GUI_PRESETS / f"{name}.json"


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("data") / "dogs"
    make_folder(root / "10_sks dog", [(1024, 1024), (832, 1216), (1216, 832), (1024, 1024)] * 5)
    return root


def plan_from_gui(dataset: Path, out: Path, config: Path, gpu: str = "rtx4090", presets: list[str] = ()):
    return make_plan(PlanRequest(dataset=dataset, target_gpu=gpu, out=out, imported=import_gui_config(config).imported(), presets=list(presets)))


def codes(findings) -> dict[str, str]:
    return {f.code: f.level for f in findings}


@pytest.mark.parametrize("config", sorted(p.name for p in GUI_PRESETS.glob("*.json")))
def test_the_guis_shipped_sdxl_presets_import_with_findings(dataset, tmp_path, config):
    result = plan_from_gui(dataset, tmp_path / "p", GUI_PRESETS / config)
    found = codes(result.plan.findings)
    assert found["gui/missing-keys"] == "warning", "GUI presets are partial configs"
    assert "gui/legacy-values" in found
    assert result.plan.total_steps > 0
    assert result.plan.presets[1] == f"kohya-gui:{config}"


def test_the_1600_step_trap_is_a_finding_and_planned_as_the_gui_trains_it(dataset, tmp_path):
    result = plan_from_gui(dataset, tmp_path / "p", gui_preset("SDXL - LoRA AI_Now prodigy v1.0"))
    trap = next(f for f in result.plan.findings if f.code == "gui/epoch-ignored")
    assert trap.level == "warning" and "1600 steps" in trap.message and "epoch = 160" in trap.message
    assert trap.fix == "to train 160 epoch(s) instead: --set max_train_epochs=160"
    assert result.plan.total_steps == 1600
    values = result.plan.values
    assert values["max_train_steps"].value == 1600 and values["max_train_epochs"].value is None
    assert (values["optimizer_type"].value, values["learning_rate"].value) == ("Prodigy", 1.0)
    assert values["optimizer_args"].value == ["weight_decay=0.01", "decouple=True", "d0=0.0001", "use_bias_correction=True"]
    assert (values["network_dim"].value, values["network_alpha"].value) == (32, 16.0)
    assert values["network_dim"].source == "import:kohya-gui:SDXL - LoRA AI_Now prodigy v1.0.json"


def test_epochs_train_when_max_train_epochs_is_set(dataset, tmp_path):
    result = plan_from_gui(dataset, tmp_path / "p", gui_preset("SDXL - LoRA adafactor v1.0"))
    assert result.plan.epochs == 30 and "gui/epoch-ignored" not in codes(result.plan.findings)
    refused = [f.message for f in result.plan.findings if f.code == "gui/refused-value"]
    assert any("caption_extension = '.txt2'" in m for m in refused), "GUI v25+ refuses .txt2 (docs/kohya-gui.md §7, #3160)"
    assert result.plan.values["caption_extension"].value == ".txt2"


def test_steps_the_gui_counts_from_folders_become_epochs(dataset, tmp_path):
    result = plan_from_gui(dataset, tmp_path / "p", gui_preset("SDXL - LoRA face dogu_cat v1.0"))
    assert codes(result.plan.findings)["gui/steps-from-folders"] == "info"
    assert result.plan.epochs == 10 and result.plan.values["max_train_steps"].value is None


def test_paths_this_machine_lacks_are_reported():
    imported = import_gui_config(gui_preset("SDXL - LoRA finetuning phase 2_v1.1"))
    warning = next(f for f in imported.findings if f.code == "gui/missing-path")
    assert "network_weights 'D:/lycoris/sdxl" in warning.message
    assert imported.values["network_weights"].startswith("D:/lycoris/sdxl")


def test_lycoris_types_become_lycoris_network_arguments(dataset, tmp_path):
    imported = import_gui_config(gui_preset("SDXL - 1 image LoRA v1.0"))
    assert imported.values["network_module"] == "lycoris.kohya"
    assert "algo=lokr" in imported.values["network_args"]
    assert imported.values["network_dim"] == 100000
    assert imported.values["max_train_steps"] == 160


def test_legacy_forms_are_converted_like_the_gui_does(tmp_path):
    path = tmp_path / "old.json"
    path.write_text(json.dumps({
        "sdxl": True, "xformers": True, "seed": "", "max_train_epochs": "12", "max_train_steps": "0",
        "learning_rate": "0.0002", "LoRA_type": "LoCon", "use_8bit_adam": True, "lora_network_weights": "",
        "keep_tokens": "many", "batch_size": 4, "made_up_key": 1, "output_dir": "/out",
    }), encoding="utf-8")
    imported = import_gui_config(path)
    values = imported.values
    assert values["xformers"] is True and values["seed"] is None and values["max_train_epochs"] == 12
    assert values["learning_rate"] == 0.0002 and values["optimizer_type"] == "AdamW8bit"
    assert values["network_module"] == "lycoris.kohya" and "algo=locon" in values["network_args"]
    found = {f.code: f for f in imported.findings}
    assert "keep_tokens 'many' → 0" in found["gui/unparsable-values"].message
    assert "made_up_key" in found["gui/unknown-keys"].message
    assert "batch_size (Finetune)" in found["gui/other-tab-keys"].message
    assert "lora_network_weights" in found["gui/legacy-keys"].message


def test_a_config_without_a_model_checkbox_is_what_a_fresh_gui_trains_sd15(tmp_path):
    path = tmp_path / "partial.json"
    path.write_text(json.dumps({"network_dim": 8, "max_train_epochs": 4}), encoding="utf-8")
    imported = import_gui_config(path)
    assert codes(imported.findings)["gui/family-assumed"] == "warning"
    assert imported.family == "sd15" and imported.values["network_dim"] == 8


@pytest.mark.parametrize(("model", "family"), [("stabilityai/stable-diffusion-xl-base-1.0", "sdxl"),
                                               ("runwayml/stable-diffusion-v1-5", "sd15")])
def test_a_built_in_model_id_ticks_the_guis_checkboxes_on_load(tmp_path, model, family):
    path = tmp_path / "partial.json"
    path.write_text(json.dumps({"pretrained_model_name_or_path": model, "flux1_checkbox": True}), encoding="utf-8")
    imported = import_gui_config(path)
    assert imported.family == family and "gui/family-assumed" not in codes(imported.findings)


BAD_FILES = {
    "malformed": (b'{"sdxl": true,, }', "is not valid JSON: Expecting property name enclosed in double quotes at line 1"),
    "bom": (b'\xef\xbb\xbf{"sdxl": true}', "byte-order mark"),
    "nan": (b'{"sdxl": true, "learning_rate": NaN}', "NaN is not a number JSON allows"),
    "array": (b'[{"sdxl": true}]', "holds a JSON list, not an object"),
    "latin1": ('{"output_name": "caf\u00e9"}'.encode("latin-1"), "is not UTF-8 text"),
    "null": (b'{"sdxl": true, "network_dim": null, "seed": null}', "network_dim is null"),
    "types": (b'{"sdxl": "yes", "network_dim": "32", "network_alpha": [1], "optimizer": 5}',
              "4 problem(s) in the Kohya GUI config"),
    "flux-standard": (b'{"sdxl": false, "flux1_checkbox": true}', "trains a FLUX.1 [dev] LoRA with LoRA_type 'Standard'"),
    "sd3": (b'{"sdxl": false, "sd3_checkbox": true}', "is a LoRA config for sd3_train_network.py; lorakit plans"),
    "sd2": (b'{"pretrained_model_name_or_path": "stabilityai/stable-diffusion-2-1"}', "is a LoRA config for SD 2.x"),
    "sdxl-flux-network": (b'{"sdxl": true, "LoRA_type": "Flux1"}', "trains a SDXL LoRA with LoRA_type 'Flux1'"),
}


@pytest.mark.parametrize("case", sorted(BAD_FILES))
def test_bad_files_give_one_clear_error_and_write_nothing(runner, tmp_path, case):
    content, expected = BAD_FILES[case]
    path = tmp_path / "bad.json"
    path.write_bytes(content)
    out = tmp_path / "preset.toml"
    result = runner.invoke(cli, ["import", "kohya-gui", str(path), "-o", str(out)])
    assert result.exit_code == 2, result.output
    assert expected in result.output
    assert "Traceback" not in result.output and "Fix:" in result.output
    assert not out.exists()


def test_wrong_types_are_all_listed(tmp_path):
    path = tmp_path / "bad.json"
    path.write_bytes(BAD_FILES["types"][0])
    with pytest.raises(ConfigError) as caught:
        import_gui_config(path)
    assert caught.value.problems == [
        "sdxl = \"yes\" is not true or false", "network_dim = \"32\" is not a whole number",
        "network_alpha = [1] is not a number", "optimizer = 5 is not a string"]


def test_a_missing_file_is_a_user_error(tmp_path):
    with pytest.raises(UserError, match="cannot read the Kohya GUI config"):
        import_gui_config(tmp_path / "nope.json")


def test_import_writes_a_user_preset_that_plans_like_from_kohya_gui(runner, dataset, tmp_path):
    config = gui_preset("SDXL - LoRA by malcolmrey training v1.0")
    result = runner.invoke(cli, ["import", "kohya-gui", str(config)])
    assert result.exit_code == 0, result.output
    written = PresetRegistry().get("kohya-sdxl-lora-by-malcolmrey-training-v1-0")
    assert written.header.extends == ["sdxl-base"] and not written.builtin
    assert all(entry.from_.startswith("Kohya GUI SDXL - LoRA by malcolmrey") for entry in written.values.values())
    assert written.values["seed"].unset, "seed '' is 0 to the GUI: a random seed, so sdxl-base's 42 is unset"
    assert written.values["network_alpha"].value == 13.0
    again = runner.invoke(cli, ["import", "kohya-gui", str(config)])
    assert again.exit_code == 2 and "already exists" in again.output
    # A preset is adapted to the card by the fit; the GUI config itself is planned as the GUI runs it: without the
    # fit, both give sd-scripts the same arguments.
    by_preset = make_plan(PlanRequest(dataset=dataset, presets=[written.name], target_gpu="rtx4090", out=tmp_path / "a",
                                      fit="off"))
    direct = make_plan(PlanRequest(dataset=dataset, target_gpu="rtx4090", out=tmp_path / "a", fit="off",
                                   imported=import_gui_config(config).imported()))
    assert plan_arguments(by_preset.files) == plan_arguments(direct.files)


def test_unset_entries_round_trip_through_the_preset_file(tmp_path):
    imported = import_gui_config(gui_preset("SDXL - LoRA AI_Now prodigy v1.0"))
    assert imported.entries["max_train_epochs"] is None
    from lorakit.kohya_gui.importer import write_preset

    path = write_preset(imported, tmp_path / "mine.toml")
    preset = load_preset(path)
    assert preset.values["max_train_epochs"].unset and preset.values["max_train_epochs"].value is None
    assert {k: e.value for k, e in preset.values.items()} == imported.entries
    assert "unset = true" in path.read_text(encoding="utf-8")


def test_from_kohya_gui_cannot_replace_the_base(runner, dataset, tmp_path):
    result = runner.invoke(cli, ["plan", str(dataset), "--target-gpu", "rtx4090", "--out", str(tmp_path / "p"),
                                 "--from-kohya-gui", str(gui_preset("SDXL - LoRA adafactor v1.0")), "--preset", "kohya-example"])
    assert result.exit_code == 2 and "cannot be combined with the base preset kohya-example" in result.output


def test_presets_on_the_command_line_apply_after_the_gui_config(dataset, tmp_path):
    result = plan_from_gui(dataset, tmp_path / "p", gui_preset("SDXL - LoRA adafactor v1.0"), presets=["lowvram-8gb"])
    assert result.plan.values["resolution"].value == "768,768"
    assert result.plan.values["optimizer_type"].value == "Adafactor"


@pytest.mark.parametrize("preset", builtin_presets())
def test_round_trip_plan_export_import_plan_gives_the_same_run(dataset, tmp_path, preset):
    gpu = "rtx3070-8gb" if preset.startswith("style") else "rtx4090"
    first = planned(dataset, tmp_path / "p", [preset], gpu, ["pretrained_model_name_or_path=/models/m.safetensors"])
    path = tmp_path / "gui.json"
    path.write_text(export_plan(first.plan).text(), encoding="utf-8")
    second = plan_from_gui(dataset, tmp_path / "p", path, gpu)
    family = first.plan.family
    assert second.plan.family == family and FAMILIES[family].base_preset in second.plan.presets
    assert effective(plan_arguments(second.files), family) == effective(plan_arguments(first.files), family)
    assert tomllib.loads(second.files["dataset.toml"])["datasets"] == tomllib.loads(first.files["dataset.toml"])["datasets"]
    assert second.files.get("sample_prompts.txt") == first.files.get("sample_prompts.txt")
    assert (second.plan.total_steps, second.plan.epochs) == (first.plan.total_steps, first.plan.epochs)
    # Text-identical too, except where the GUI cannot tell "unset" from a value sd-scripts derives anyway: the
    # presets that spell out unet_lr = learning_rate (the GUI always writes unet_lr), and lowvram-8gb, whose
    # batch-scaled text_encoder_lr has no effect since only the U-Net trains (see
    # test_round_trip_keeps_the_text_of_config_toml_apart_from_comments).
    if preset.split("+")[-1] not in ("kohya-example", "adafactor", "prodigy", "lowvram-8gb"):
        assert plan_arguments(second.files) == plan_arguments(first.files)


def test_round_trip_keeps_the_text_of_config_toml_apart_from_comments(dataset, tmp_path):
    first = planned(dataset, tmp_path / "p", ["character"])
    path = tmp_path / "gui.json"
    path.write_text(export_plan(first.plan).text(), encoding="utf-8")
    second = plan_from_gui(dataset, tmp_path / "p", path)

    def lines(text: str) -> list[str]:
        return [line.split("  #")[0] for line in text.splitlines() if line and not line.startswith("#")]

    assert lines(second.files["config.toml"]) == lines(first.files["config.toml"])
    assert lines(second.files["dataset.toml"]) == lines(first.files["dataset.toml"])


def test_literal_prompts_are_not_repeated_for_every_subject(tmp_path):
    root = tmp_path / "two"
    make_folder(root / "10_sks dog", [(1024, 1024)] * 4)
    make_folder(root / "10_sks cat", [(1024, 1024)] * 4)
    config = tmp_path / "gui.json"
    config.write_text(json.dumps({"sdxl": True, "sample_every_n_steps": 100, "max_train_epochs": 2, "max_resolution": "1024,1024",
                                  "sample_prompts": "a dog --d 5 --l 6 --s 20\na cat --d 6 --l 6 --s 20"}), encoding="utf-8")
    result = plan_from_gui(root, tmp_path / "p", config)
    lines = [line for line in result.files["sample_prompts.txt"].splitlines() if not line.startswith("#")]
    assert lines == ["a dog --d 5 --l 6 --s 20", "a cat --d 6 --l 6 --s 20"], "the GUI's prompt lines, as it gives them"
    assert codes(result.plan.findings)["gui/sample-size"] == "info", "without --w/--h sd-scripts samples at 512×512"


def test_plan_from_a_bad_gui_config_writes_nothing(runner, dataset, tmp_path):
    bad = tmp_path / "bom.json"
    bad.write_bytes(b'\xef\xbb\xbf{"sdxl": true}')
    result = runner.invoke(cli, ["plan", str(dataset), "--target-gpu", "rtx4090", "--out", str(tmp_path / "p"),
                                 "--from-kohya-gui", str(bad)])
    assert result.exit_code == 2 and "byte-order mark" in result.output and "Traceback" not in result.output
    assert not (tmp_path / "p").exists()


def test_plan_from_kohya_gui_through_the_cli(runner, dataset, tmp_path):
    out = tmp_path / "p"
    result = runner.invoke(cli, ["plan", str(dataset), "--target-gpu", "rtx4090", "--out", str(out), "--force",
                                 "--from-kohya-gui", str(gui_preset("SDXL - LoRA by malcolmrey training v1.0"))])
    assert result.exit_code == 0, result.output
    data = json.loads((out / "plan.json").read_text(encoding="utf-8"))
    assert data["presets"] == ["sdxl-base", "kohya-gui:SDXL - LoRA by malcolmrey training v1.0.json"]
    assert data["epochs"] == 16 and data["values"]["network_dim"]["value"] == 32
    assert any(f["code"] == "gui/missing-keys" for f in data["findings"])


@pytest.mark.parametrize(("extra", "named"), [("--machine_rank one", "'one'"), ("--machine_rank", "with no value")])
def test_a_bad_machine_rank_in_the_accelerate_arguments_is_a_warning(tmp_path, extra, named):
    path = tmp_path / "two-machines.json"
    path.write_text(json.dumps({"sdxl": True, "num_machines": 2, "extra_accelerate_launch_args": extra}), encoding="utf-8")
    imported = import_gui_config(path)
    bad = next(f for f in imported.findings if f.code == "gui/bad-machine-rank")
    assert bad.level == "warning" and f"--machine_rank {named}" in bad.message and "--set machine_rank=N" in bad.fix
    assert "machine_rank" not in imported.values


def test_a_good_machine_rank_is_imported_without_a_finding(tmp_path):
    path = tmp_path / "two-machines.json"
    path.write_text(json.dumps({"sdxl": True, "num_machines": 2, "extra_accelerate_launch_args": "--machine_rank 1"}),
                    encoding="utf-8")
    imported = import_gui_config(path)
    assert imported.values["machine_rank"] == 1 and "gui/bad-machine-rank" not in codes(imported.findings)


def gui_run_config(tmp_path: Path, **fields) -> Path:
    """A GUI config that fixes its batch, text-encoder training, name and prompt, as a user brings it."""
    config = tmp_path / "my-run.json"
    config.write_text(json.dumps({
        "sdxl": True, "train_batch_size": 8, "max_train_epochs": 4, "max_resolution": "1024,1024",
        "learning_rate": 0.0001, "text_encoder_lr": 0.00005, "unet_lr": 0.0001, "network_dim": 16, "network_alpha": 16,
        "mixed_precision": "bf16", "gradient_checkpointing": True, "xformers": "sdpa", "output_name": "my-gui-lora",
        "sample_every_n_steps": 50, "sample_prompts": "a photo of sks dog --w 1024 --h 1024 --s 20", **fields}),
        encoding="utf-8")
    return config


@pytest.mark.parametrize("gpu", ["rtx4090", "h100"])
def test_a_gui_configs_batch_is_planned_as_the_gui_runs_it(dataset, tmp_path, gpu):
    result = plan_from_gui(dataset, tmp_path / "p", gui_run_config(tmp_path), gpu)
    values = result.plan.values
    assert values["train_batch_size"].value == 8 and values["train_batch_size"].source == "import:kohya-gui:my-run.json"
    assert values["learning_rate"].value == 0.0001, "no batch scaling of the GUI's own learning rate"
    # 10 repeats of 10 square and 5 + 5 portrait/landscape images: 100, 50, 50 per bucket → 13 + 7 + 7 batches of 8
    assert result.plan.total_steps == 4 * (13 + 7 + 7)


def test_a_gui_config_over_the_budget_is_gate_3s_error_not_a_quieter_run(dataset, tmp_path):
    result = plan_from_gui(dataset, tmp_path / "p", gui_run_config(tmp_path), "rtx3060-12gb")
    values = result.plan.values
    assert values["train_batch_size"].value == 8
    assert values["network_train_unet_only"].value in (None, False), "the text encoders stay trained"
    over = next(f for f in result.plan.findings if f.code == "hardware/vram-over-budget")
    assert over.level == "error" and "train_batch_size=8" in over.message
    assert "(your imported kohya-gui:my-run.json)" in over.message
    assert "the smallest change that fits: --set" in over.fix


def test_what_a_gui_config_leaves_out_is_still_fitted(dataset, tmp_path):
    config = tmp_path / "partial.json"
    config.write_text(json.dumps({"sdxl": True, "max_train_epochs": 4, "network_dim": 16}), encoding="utf-8")
    result = plan_from_gui(dataset, tmp_path / "p", config, "h100")
    assert result.plan.values["train_batch_size"].source == "auto:fit-speed"
    assert result.plan.values["network_dim"].source == "import:kohya-gui:partial.json"


def test_values_a_gui_config_sets_are_credited_to_it_even_when_the_base_agrees(dataset, tmp_path):
    result = plan_from_gui(dataset, tmp_path / "p", gui_run_config(tmp_path, seed=42), "rtx4090")
    values = result.plan.values
    assert values["gradient_checkpointing"].value is True  # sdxl-base says the same
    assert values["gradient_checkpointing"].source == "import:kohya-gui:my-run.json"
    assert values["seed"].value == 42 and values["seed"].source == "import:kohya-gui:my-run.json"


def test_a_gui_configs_output_name_names_the_lora(dataset, tmp_path):
    result = plan_from_gui(dataset, tmp_path / "p", gui_run_config(tmp_path), "rtx4090")
    assert result.plan.values["output_name"].value == "my-gui-lora"
    assert result.plan.saves[-1].file == "my-gui-lora.safetensors"
    assert 'output_name = "my-gui-lora"' in result.files["config.toml"]


def test_a_gui_configs_sample_prompts_are_kept_as_given(dataset, tmp_path):
    result = plan_from_gui(dataset, tmp_path / "p", gui_run_config(tmp_path), "rtx4090")
    lines = [line for line in result.files["sample_prompts.txt"].splitlines() if not line.startswith("#")]
    assert lines == ["a photo of sks dog --w 1024 --h 1024 --s 20"], "no --d or --l the user did not give"
