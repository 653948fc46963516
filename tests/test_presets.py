"""Presets: every built-in loads and cites its source; extends composes; user presets; `lorakit presets`."""

from __future__ import annotations

import json

import pytest

from lorakit.cli.main import cli
from lorakit.config.presets import PresetRegistry
from lorakit.config.resolve import resolve
from lorakit.errors import ConfigError, UserError

REQUIRED = {
    "sdxl-base", "pony", "kohya-example", "adamw", "adafactor", "prodigy", "lowvram-8gb",
    *(f"{t}-{i}" for t in ("character", "style", "object") for i in ("quick", "standard", "thorough")),
    "character", "style", "object",
}


def test_all_required_presets_exist():
    assert REQUIRED <= set(PresetRegistry().names())


@pytest.mark.parametrize("name", sorted(REQUIRED))
def test_every_builtin_value_says_where_it_comes_from(name):
    preset = PresetRegistry().get(name)
    assert preset.description
    assert preset.path.read_text().startswith("#"), "a shipped preset opens with a comment giving its command"
    for key, entry in preset.values.items():
        assert entry.from_, f"{name}: {key} has no `from`"


def test_alias_means_standard_intensity():
    registry = PresetRegistry()
    assert resolve(registry, ["character"], []).values["max_train_epochs"] == \
        resolve(registry, ["character-standard"], []).values["max_train_epochs"]
    assert [p.name for p in registry.chain(["style"])] == ["sdxl-base", "style-standard", "style"]


@pytest.mark.parametrize(
    ("task", "epochs", "ranks"),
    [("character", {"quick": 5, "standard": 12, "thorough": 25}, {"quick": 16, "standard": 16, "thorough": 32}),
     ("style", {"quick": 4, "standard": 10, "thorough": 20}, {"quick": 16, "standard": 32, "thorough": 64}),
     ("object", {"quick": 5, "standard": 12, "thorough": 20}, {"quick": 16, "standard": 16, "thorough": 32})],
)
def test_task_presets_follow_seed_004_tables(task, epochs, ranks):
    registry = PresetRegistry()
    for intensity in ("quick", "standard", "thorough"):
        values = resolve(registry, [f"{task}-{intensity}"], []).values
        assert values["max_train_epochs"] == epochs[intensity]
        assert values["network_dim"] == ranks[intensity]


def test_optimizer_presets():
    registry = PresetRegistry()
    ada = resolve(registry, ["adafactor"], []).values
    assert (ada["optimizer_type"], ada["learning_rate"]) == ("Adafactor", 4e-4)
    assert ada["optimizer_args"] == ["scale_parameter=False", "relative_step=False", "warmup_init=False"]
    adamw = resolve(registry, ["adamw"], []).values
    assert (adamw["learning_rate"], adamw["text_encoder_lr"]) == (1e-4, [5e-5])
    prodigy = resolve(registry, ["prodigy"], []).values
    assert (prodigy["learning_rate"], prodigy["lr_scheduler"]) == (1.0, "cosine")


def test_kohya_example_is_seed_000_row_for_row():
    values = resolve(PresetRegistry(), ["kohya-example"], []).values
    expected = {
        "network_module": "networks.lora", "learning_rate": 4e-4, "text_encoder_lr": [4e-4], "unet_lr": 4e-4,
        "network_dim": 64, "network_alpha": 1.0, "train_batch_size": 1, "max_train_epochs": 8,
        "resolution": "1024,1024", "mixed_precision": "bf16", "gradient_checkpointing": True, "xformers": True,
        "optimizer_type": "Adafactor",
        "optimizer_args": ["scale_parameter=False", "relative_step=False", "warmup_init=False"],
        "lr_scheduler": "constant", "save_model_as": "safetensors",
    }
    assert {k: values[k] for k in expected} == expected
    assert values.source("sdpa") == "sd-scripts default"  # nothing from sdxl-base leaks in


def test_base_presets_in_extends_stand_for_the_chosen_base():
    chain = PresetRegistry().chain(["kohya-example", "character"])
    assert [p.name for p in chain] == ["kohya-example", "character-standard", "character"]


def test_two_base_presets_are_refused():
    with pytest.raises(ConfigError, match="both base presets"):
        PresetRegistry().chain(["kohya-example", "sdxl-base"])


def test_shared_base_is_applied_once_so_flavours_survive():
    registry = PresetRegistry()
    chain = [p.name for p in registry.chain(["pony", "character"])]
    assert chain == ["sdxl-base", "pony", "character-standard", "character"]
    values = resolve(registry, ["pony", "character"], []).values
    assert values["model_flavour"] == "pony"
    assert values["clip_skip"] is None  # Pony's clip skip is a generation setting, never written


def test_user_presets_extend_and_shadow(tmp_path, monkeypatch):
    user = tmp_path / "mine"
    user.mkdir()
    (user / "my-style.toml").write_text('[preset]\nextends = ["style"]\n[values]\nnetwork_dim = 48\n')
    (user / "adamw.toml").write_text('[preset]\ndescription = "my adamw"\n[values]\nlearning_rate = 2e-4\n')
    monkeypatch.setenv("LORAKIT_PRESETS_DIR", str(user))
    registry = PresetRegistry()
    values = resolve(registry, ["my-style", "adamw"], []).values
    assert values["network_dim"] == 48 and values.source("network_dim") == "preset:my-style"
    assert values["learning_rate"] == 2e-4
    assert registry.shadowed("adamw")


def test_broken_user_preset_lists_every_problem(tmp_path):
    (tmp_path / "bad.toml").write_text('[preset]\nkind = "weird"\n[values]\nnetwork_dimm = 1\nnetwork_alpha = "x"\n')
    with pytest.raises(ConfigError) as info:
        PresetRegistry([tmp_path]).get("bad")
    text = info.value.render()
    assert "3 problem(s)" in text and "network_dimm" in text and "network_alpha" in text and "kind" in text


def test_extends_cycle_is_reported(tmp_path):
    (tmp_path / "a.toml").write_text('[preset]\nextends = ["b"]\n')
    (tmp_path / "b.toml").write_text('[preset]\nextends = ["a"]\n')
    with pytest.raises(ConfigError, match="circle"):
        PresetRegistry([tmp_path]).chain(["a"])


def test_unknown_preset_suggests_the_closest():
    with pytest.raises(UserError, match="Did you mean style"):
        PresetRegistry().get("styel")


def test_presets_command_lists_and_shows(runner):
    listing = runner.invoke(cli, ["presets", "--json"])
    assert {p["name"] for p in json.loads(listing.output)} >= REQUIRED
    shown = runner.invoke(cli, ["presets", "pony", "--json"])
    data = json.loads(shown.output)
    assert data["chain"] == ["sdxl-base", "pony"]
    assert data["requires"] == ["pretrained_model_name_or_path"]
    assert data["values"]["generation_clip_skip"]["value"] == 2
    text = runner.invoke(cli, ["presets", "character"])
    assert "sdxl-base → character-standard → character" in text.output


def test_presets_copy_to_never_overwrites(runner, tmp_path):
    target = tmp_path / "mine.toml"
    assert runner.invoke(cli, ["presets", "style", "--copy-to", str(target)]).exit_code == 0
    assert "style-standard" in target.read_text()
    again = runner.invoke(cli, ["presets", "style", "--copy-to", str(target)])
    assert again.exit_code == 2 and "already exists" in again.output


def test_presets_dir_option(runner, tmp_path):
    (tmp_path / "team.toml").write_text('[preset]\ndescription = "team default"\nextends = ["character"]\n')
    result = runner.invoke(cli, ["presets", "--presets-dir", str(tmp_path)])
    assert "team" in result.output and "(user)" in result.output


def test_pony_without_a_checkpoint_is_a_gate_error(runner, character_dataset, tmp_path):
    result = runner.invoke(cli, ["plan", str(character_dataset), "--preset", "pony", "--target-gpu", "rtx4090",
                                 "--out", str(tmp_path / "p")])
    assert result.exit_code == 1 and "params/required-value" in result.output
    ok = runner.invoke(cli, ["plan", str(character_dataset), "--preset", "pony", "--target-gpu", "rtx4090",
                             "--out", str(tmp_path / "p"), "--set", "pretrained_model_name_or_path=/m/pony.safetensors"])
    assert ok.exit_code == 0, ok.output
    assert "clip skip 2" in ok.output
    assert "clip_skip" not in (tmp_path / "p" / "config.toml").read_text()
    assert "score_9" in (tmp_path / "p" / "sample_prompts.txt").read_text()


def test_a_preset_can_unset_a_key_the_base_sets(tmp_path):
    (tmp_path / "random-seed.toml").write_text(
        '[preset]\nextends = ["sdxl-base"]\n\n[values]\nseed = { unset = true, from = "random seeds" }\n', encoding="utf-8")
    values = resolve(PresetRegistry([tmp_path]), ["random-seed"], []).values
    assert values["seed"] is None and values.source("seed") == "preset:random-seed"


def test_an_entry_needs_a_value_or_unset(tmp_path):
    path = tmp_path / "bad.toml"
    path.write_text('[values]\nseed = { from = "no value" }\nnetwork_dim = { value = 4, unset = true }\n', encoding="utf-8")
    with pytest.raises(ConfigError) as caught:
        PresetRegistry([tmp_path]).get("bad")
    assert caught.value.problems == ["seed: give either a value or `unset = true`",
                                     "network_dim: give either a value or `unset = true`"]
