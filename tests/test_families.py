"""Model families: the base preset picks the family, its script, its keys and its own recipe values."""

from __future__ import annotations

import json

import pytest
from conftest import make_folder

from lorakit.cli.main import cli
from lorakit.config.family import FAMILIES
from lorakit.config.presets import PresetRegistry, load_preset
from lorakit.config.resolve import resolve
from lorakit.errors import ConfigError
from lorakit.util.resources import sd_scripts_arguments


def plan_json(runner, tmp_path, *args: str) -> dict:
    data = tmp_path / "data"
    if not data.exists():
        make_folder(data / "10_zk robot", [(1024, 1024), (832, 1216)] * 3)
    out = tmp_path / "plan"
    result = runner.invoke(cli, ["plan", str(data), "--target-gpu", "a100-80gb", "--out", str(out), "--force", *args])
    assert result.exit_code in (0, 1), result.output
    return json.loads((out / "plan.json").read_text())


@pytest.mark.parametrize(("base", "family", "script"), [
    ("sdxl-base", "sdxl", "sdxl_train_network.py"), ("flux1-dev", "flux1", "flux_train_network.py"),
    ("chroma", "chroma", "flux_train_network.py"), ("sd15", "sd15", "train_network.py"),
])
def test_the_base_preset_picks_the_family_and_its_script(runner, tmp_path, base, family, script):
    plan = plan_json(runner, tmp_path, "--preset", base, "--preset", "character")
    assert (plan["family"], plan["script"]) == (family, script)
    assert plan["values"]["family"]["source"] == f"preset:{base}"
    assert plan["values"]["family"]["note"] == f"{FAMILIES[family].title}: trained by sd-scripts' {script}"
    assert plan["command"][plan["command"].index("--config_file") - 1].endswith(f"/{script}")
    assert f"/{script} " in (tmp_path / "plan" / "launch.sh").read_text()


def test_each_family_has_the_argument_table_of_its_own_script():
    tables = {script: {a["dest"] for a in sd_scripts_arguments(script)["arguments"]}
              for script in ("sdxl_train_network.py", "flux_train_network.py", "train_network.py")}
    assert {"ae", "t5xxl", "guidance_scale", "blocks_to_swap"} <= tables["flux_train_network.py"] - tables["sdxl_train_network.py"]
    assert "cache_text_encoder_outputs" in tables["sdxl_train_network.py"] - tables["train_network.py"]
    for script in tables:
        assert sd_scripts_arguments(script)["script"] == script


def test_a_task_preset_gives_flux_its_own_numbers_not_the_seeds_sdxl_ones():
    registry = PresetRegistry()
    sdxl = resolve(registry, ["character-standard"], []).values
    flux = resolve(registry, ["flux1-dev", "character-standard"], []).values
    assert (sdxl["max_train_epochs"], sdxl["network_dim"], sdxl["network_alpha"]) == (12, 16, 8.0)
    assert (flux["max_train_epochs"], flux["network_dim"], flux["network_alpha"]) == (6, 16, 16.0)
    assert flux.source("max_train_epochs") == "preset:character-standard"
    assert flux.entry("max_train_epochs").note.startswith("docs/families.md §6")


def test_no_seed_number_reaches_a_flux_plan_unreplaced():
    """Every value a FLUX plan takes from a preset cites FLUX's own page or a rule that holds for every family."""
    registry = PresetRegistry()
    for name in registry.names():
        preset = registry.get(name)
        if preset.header.kind == "base" or not preset.made_for("flux1"):
            continue
        values = resolve(registry, ["flux1-dev", name], []).values
        for key, item in values.items():
            numeric = isinstance(item.value, (int, float, list)) and not isinstance(item.value, bool)
            if numeric and item.source.startswith("preset:") and item.source != "preset:flux1-dev":
                seeds_step_or_rate = "recommendations.md §2" in item.note or "recommendations.md §3" in item.note \
                    or "recommendations.md §4" in item.note or "recommendations.md §10" in item.note
                assert not seeds_step_or_rate, f"{name}: {key} = {item.value} comes from the SDXL seeds ({item.note})"


def test_chroma_builds_on_flux_and_changes_what_chroma_needs():
    registry = PresetRegistry()
    assert [p.name for p in registry.chain(["chroma", "character"])] == ["flux1-dev", "chroma", "character-standard", "character"]
    values = resolve(registry, ["chroma", "character"], []).values
    assert values.family == "chroma"
    assert (values["model_type"], values["guidance_scale"], values["apply_t5_attn_mask"]) == ("chroma", 0.0, True)
    assert values["clip_l"] is None and values["network_dim"] == 16 and values["max_train_epochs"] == 6


def test_an_sdxl_only_preset_is_refused_on_another_family():
    with pytest.raises(ConfigError) as raised:
        resolve(PresetRegistry(), ["flux1-dev", "pony"], [])
    assert "pony is made for SDXL and this plan trains FLUX.1 [dev]" in str(raised.value)


def test_set_is_typed_by_the_familys_script_and_names_the_families_that_have_the_key(runner, tmp_path):
    make_folder(tmp_path / "data" / "10_zk robot", [(512, 512)] * 2)
    result = runner.invoke(cli, ["plan", str(tmp_path / "data"), "--preset", "sd15", "--target-gpu", "rtx4090",
                                 "--set", "guidance_scale=1.0", "--out", str(tmp_path / "p")])
    assert result.exit_code == 2
    assert "guidance_scale' is not an argument of train_network.py, which trains SD 1.5" in result.output
    assert "FLUX.1 [dev], Chroma" in result.output and "Traceback" not in result.output
    assert not (tmp_path / "p").exists()


def test_the_family_is_the_base_presets_choice_not_a_set(runner, tmp_path):
    make_folder(tmp_path / "data" / "10_zk robot", [(512, 512)] * 2)
    result = runner.invoke(cli, ["plan", str(tmp_path / "data"), "--set", "family=flux1", "--target-gpu", "rtx4090"])
    assert result.exit_code == 2 and "--preset flux1-dev" in result.output


def test_a_preset_value_the_familys_script_lacks_is_named_with_the_fix(tmp_path, monkeypatch):
    presets = tmp_path / "presets"
    presets.mkdir()
    (presets / "mine.toml").write_text('[preset]\nkind = "user"\n\n[values]\ncache_text_encoder_outputs = true\n')
    monkeypatch.setenv("LORAKIT_PRESETS_DIR", str(presets))
    with pytest.raises(ConfigError) as raised:
        resolve(PresetRegistry(), ["sd15", "mine"], [])
    assert "mine sets cache_text_encoder_outputs, which train_network.py does not have" in str(raised.value)
    assert "[family.sd15]" in str(raised.value)


def test_a_family_table_replaces_values_for_that_family_only(tmp_path):
    path = tmp_path / "mine.toml"
    path.write_text('[preset]\nkind = "user"\n\n[values]\nnetwork_dim = 8\n\n[family.flux1]\nnetwork_dim = 24\n'
                    '\n[family.sd15]\nnetwork_dim = { unset = true, from = "sd-scripts default" }\n')
    preset = load_preset(path)
    assert preset.values_for("sdxl")["network_dim"].value == 8
    assert preset.values_for("flux1")["network_dim"].value == 24
    assert preset.values_for("chroma")["network_dim"].value == 24  # Chroma reads FLUX's tables
    assert preset.values_for("sd15")["network_dim"].unset


@pytest.mark.parametrize(("text", "problem"), [
    ('[preset]\nkind = "user"\n\n[family.flux2]\nnetwork_dim = 8\n', "[family.flux2]: not a model family"),
    ('[preset]\nkind = "user"\n\n[family.flux1]\nnot_a_key = 8\n', "[family.flux1] unknown key 'not_a_key'"),
    ('[preset]\nkind = "task"\nfamily = "flux1"\n', "only a base preset picks the family"),
    ('[preset]\nkind = "user"\nfamilies = ["sdxl3"]\n', "'sdxl3' is not a model family"),
    ('family = "flux1"\n[preset]\nkind = "user"\n', "write one table per family"),
])
def test_a_broken_family_table_is_reported_with_the_others(tmp_path, text, problem):
    path = tmp_path / "mine.toml"
    path.write_text(text)
    with pytest.raises(ConfigError) as raised:
        load_preset(path)
    assert problem in str(raised.value)


def test_keys_lists_the_familys_own_keys(runner):
    flux = runner.invoke(cli, ["keys", "--family", "flux1", "--json"])
    sd15 = runner.invoke(cli, ["keys", "--family", "sd15", "--json"])
    flux_keys = {k["key"] for k in json.loads(flux.output)}
    sd15_keys = {k["key"] for k in json.loads(sd15.output)}
    assert {"guidance_scale", "t5xxl", "blocks_to_swap"} <= flux_keys
    assert not {"guidance_scale", "cache_text_encoder_outputs"} & sd15_keys


def test_presets_are_listed_by_family(runner):
    result = runner.invoke(cli, ["presets"], env={"COLUMNS": "200"})
    assert result.exit_code == 0
    text = result.output
    headings = ["SDXL (--preset sdxl-base picks it)", "FLUX.1 [dev] (--preset flux1-dev picks it)",
                "Chroma (--preset chroma picks it)", "SD 1.5 (--preset sd15 picks it)", "for every family"]
    assert [text.index(h) for h in headings] == sorted(text.index(h) for h in headings)
    assert text.index("pony") < text.index("FLUX.1 [dev] (") < text.index("flux1-dev │")
    summary = json.loads(runner.invoke(cli, ["presets", "--json"]).output)
    assert {p["name"]: p["family"] for p in summary if p["kind"] == "base"}["chroma"] == "chroma"


def test_presets_name_shows_a_task_preset_resolved_for_a_family(runner):
    result = runner.invoke(cli, ["presets", "character", "--family", "flux1", "--json"])
    report = json.loads(result.output)
    assert report["chain"] == ["flux1-dev", "character-standard", "character"]
    assert report["values"]["max_train_epochs"]["value"] == 6


def test_a_chroma_plan_asks_for_no_flux_dev_licence():
    """Chroma takes FLUX.1's autoencoder from the ungated schnell repository, and not flux1-dev's licence note."""
    chroma = resolve(PresetRegistry(), ["chroma", "character"], [])
    flux = resolve(PresetRegistry(), ["flux1-dev", "character"], [])
    assert chroma.values["ae"] == "black-forest-labs/FLUX.1-schnell:ae.safetensors"
    assert any("Non-Commercial" in note for note in flux.notes)
    assert not any("Non-Commercial" in note for note in chroma.notes)
