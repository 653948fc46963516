"""The GUI's own behaviour lorakit restates (docs/kohya-gui.md §3, §4, §5): the key table, load migrations, the TOML it writes."""

from __future__ import annotations

import json

import pytest
from conftest import REPO, SHARED_DOCS, make_folder

from lorakit.kohya_gui.gui_toml import gui_run
from lorakit.kohya_gui.keys import VERSIONS, gui_keys, value_problems, version_keys
from lorakit.kohya_gui.load import migrate

SHIPPED = REPO / "lorakit" / "data" / "kohya-gui-lora-keys.json"


@pytest.mark.skipif(not (SHARED_DOCS / "kohya-gui-lora-keys.json").is_file(), reason="needs ../shared/docs")
def test_the_shipped_key_table_is_a_faithful_trim_of_the_shared_one():
    shared = json.loads((SHARED_DOCS / "kohya-gui-lora-keys.json").read_text(encoding="utf-8"))
    shipped = json.loads(SHIPPED.read_text(encoding="utf-8"))
    assert list(shipped["keys"]) == list(shared["keys"])
    for name, row in shipped["keys"].items():
        assert row == {k: v for k, v in shared["keys"][name].items() if k in row}, name
        assert {"type", "default", "component", "since", "sdxl_lora"} <= set(row)
        assert all(k in row for k in ("choices", "custom_allowed", "min", "max", "load_coerces") if k in shared["keys"][name])
    for part in ("legacy_keys", "foreign_tab_keys", "keys_by_version"):
        assert shipped[part] == shared[part]
    assert shipped["_meta"]["commit"] == shared["_meta"]["commit"]


def test_each_version_saves_the_number_of_keys_the_facts_give():
    assert {v: len(version_keys(v)) for v in VERSIONS} == {"master": 288, "v26": 287, "v25": 230, "v24": 158}


def fresh(**changes) -> dict:
    config = {name: key.default for name, key in gui_keys().items()}
    config.update(sdxl=True, output_dir="/out", dataset_config="/plan/dataset.toml", max_train_epochs=10, epoch=10,
                  max_train_steps=0)
    config.update(changes)
    return config


def test_zeros_vanish_from_the_guis_toml_but_empty_lists_stay():
    toml = gui_run(fresh(max_grad_norm=0, prior_loss_weight=0, seed=0, min_snr_gamma=0)).toml
    assert not {"max_grad_norm", "prior_loss_weight", "seed", "min_snr_gamma", "network_dropout"} & set(toml)
    assert toml["lr_scheduler_args"] == [] and toml["network_args"] == [] and toml["optimizer_args"] == []
    assert toml["max_data_loader_n_workers"] == 0, "always written, even as 0"
    assert list(toml) == sorted(toml)


@pytest.mark.parametrize(("te", "unet", "expected"), [
    (0, 1e-4, {"network_train_unet_only": True}),
    (1e-4, 0, {"network_train_text_encoder_only": True, "text_encoder_lr": [1e-4, 1e-4]}),
    (5e-5, 1e-4, {"text_encoder_lr": [5e-5, 5e-5], "unet_lr": 1e-4}),
])
def test_learning_rate_fields_choose_what_trains(te, unet, expected):
    toml = gui_run(fresh(text_encoder_lr=te, unet_lr=unet)).toml
    assert {k: toml[k] for k in expected} == expected
    assert ("text_encoder_lr" in toml) == (te != 0) and ("unet_lr" in toml) == (unet != 0)


def test_all_learning_rates_zero_is_refused():
    refusals = gui_run(fresh(learning_rate=0, text_encoder_lr=0, unet_lr=0)).refusals
    assert "learning rates are 0" in refusals["learning_rate"]


@pytest.mark.parametrize(("xformers", "expected"), [("xformers", {"xformers": True}), ("sdpa", {"sdpa": True}), ("none", {})])
def test_attention_dropdown(xformers, expected):
    toml = gui_run(fresh(xformers=xformers)).toml
    assert {k: toml[k] for k in ("xformers", "sdpa") if k in toml} == expected


def test_warmup_percent_becomes_a_ratio_and_the_absolute_field_is_zeroed_with_dataset_config():
    assert gui_run(fresh(lr_warmup=10, lr_warmup_steps=50)).toml["lr_warmup_steps"] == 0.1
    toml = gui_run(fresh(lr_warmup=10, lr_warmup_steps=0, max_train_epochs=0, max_train_steps=1000)).toml
    assert toml["lr_warmup_steps"] == 100 and toml["max_train_steps"] == 1000


def test_without_dataset_config_the_gui_counts_steps_from_the_folders(tmp_path):
    make_folder(tmp_path / "img" / "5_sks dog", [(64, 64)] * 6)
    make_folder(tmp_path / "img" / "not a repeat folder", [(64, 64)] * 3)
    run = gui_run(fresh(dataset_config="", train_data_dir=str(tmp_path / "img"), max_train_epochs=0, epoch=3,
                        train_batch_size=4))
    assert run.steps_from_folders and run.toml["max_train_steps"] == 23  # ceil(5 × 6 / 4 × 3)


def test_sdxl_flags_and_noise_and_network_types():
    toml = gui_run(fresh(sdxl_no_half_vae=True, sdxl_cache_text_encoder_outputs=True, noise_offset=0.05,
                         noise_offset_type="Multires", multires_noise_iterations=6, LoRA_type="Kohya LoCon",
                         conv_dim=8, conv_alpha=4, rank_dropout=0.1)).toml
    assert toml["no_half_vae"] and toml["cache_text_encoder_outputs"]
    assert "noise_offset" not in toml and toml["multires_noise_iterations"] == 6
    assert toml["network_module"] == "networks.lora"
    assert toml["network_args"] == ["conv_dim=8", "conv_alpha=4", "rank_dropout=0.1"]
    lokr = gui_run(fresh(LoRA_type="LyCORIS/LoKr")).toml
    assert lokr["network_module"] == "lycoris.kohya" and "algo=lokr" in lokr["network_args"]


def test_load_migrations_follow_update_my_data():
    data, converted, unparsed = migrate({"xformers": False, "seed": "", "epoch": "x", "lr_scheduler_num_cycles": "",
                                         "learning_rate": "1e-4", "LoRA_type": "LoCon", "save_model_as": "diffusers",
                                         "use_wandb": "True", "lora_network_weights": "w.safetensors"})
    assert data["xformers"] == "none" and data["seed"] == 0 and data["epoch"] == 0
    assert data["lr_scheduler_num_cycles"] == 1 and data["learning_rate"] == 1e-4
    assert data["LoRA_type"] == "LyCORIS/LoCon" and data["save_model_as"] == "safetensors"
    assert data["log_with"] == "wandb" and "use_wandb" not in data
    assert data["network_weights"] == "w.safetensors" and data["optimizer"] == "AdamW"
    assert unparsed == ["epoch 'x' → 0"]


def test_choices_are_enforced_from_v25_and_sliders_only_at_master():
    config = {"caption_extension": ".txt2", "network_dim": 1024, "learning_rate": 2}
    assert len(value_problems(config, "master")) == 3
    assert [p.split(" ")[0] for p in value_problems(config, "v25")] == ["caption_extension", "learning_rate"]
    assert [p.split(" ")[0] for p in value_problems(config, "v24")] == ["learning_rate"]
    assert value_problems({"network_dim": 4096, "LoRA_type": "LyCORIS/LoKr"}) == []
    assert value_problems({"optimizer_args": "betas=(0.9, 0.99)"})[0].startswith("optimizer_args")


PRINTED = REPO / "tests" / "fixtures" / "kohya_gui_printed" / "sdxl-presets.json"
PRESETS = REPO / "tests" / "fixtures" / "kohya_gui_presets"


@pytest.mark.parametrize("name", sorted(json.loads(PRINTED.read_text(encoding="utf-8"))))
def test_lorakit_predicts_the_toml_the_real_gui_printed(tmp_path, name):
    """The GUI's own train_model(print_only=True) output for its shipped presets (see the fixture's README)."""
    from lorakit.kohya_gui.load import load_gui_config

    make_folder(tmp_path / "dogs" / "10_sks dog", [(64, 64)] * 10)
    data = json.loads((PRESETS / name).read_text(encoding="utf-8"))
    data.update(output_dir=f"{tmp_path}/pout", train_data_dir=f"{tmp_path}/dogs", sdxl=True,
                pretrained_model_name_or_path="stabilityai/stable-diffusion-xl-base-1.0")
    config = tmp_path / "config.json"
    config.write_text(json.dumps(data), encoding="utf-8")
    predicted = json.loads(json.dumps(gui_run(load_gui_config(config).values).toml).replace(str(tmp_path), "<WORK>"))
    assert predicted == json.loads(PRINTED.read_text(encoding="utf-8"))[name]


FAMILY_PRINTED = REPO / "tests" / "fixtures" / "kohya_gui_printed" / "family-presets.json"


@pytest.mark.parametrize("name", sorted(json.loads(FAMILY_PRINTED.read_text(encoding="utf-8"))))
def test_lorakit_predicts_the_toml_the_real_gui_printed_for_flux_and_sd15(tmp_path, name):
    """The real GUI's Print for its shipped FLUX.1 and SD 1.5 presets (see the fixture's README)."""
    from lorakit.kohya_gui.families import gui_script
    from lorakit.kohya_gui.load import load_gui_config

    make_folder(tmp_path / "dogs" / "10_sks dog", [(64, 64)] * 10)
    data = json.loads((PRESETS / "families" / name).read_text(encoding="utf-8"))
    flux = data.get("flux1_checkbox") is True
    data.update(output_dir=f"{tmp_path}/pout", train_data_dir=f"{tmp_path}/dogs",
                pretrained_model_name_or_path=f"{tmp_path}/flux1-dev.safetensors" if flux else "runwayml/stable-diffusion-v1-5")
    config = tmp_path / "config.json"
    config.write_text(json.dumps(data), encoding="utf-8")
    values = load_gui_config(config).values
    predicted = json.loads(json.dumps(gui_run(values).toml).replace(str(tmp_path), "<WORK>"))
    assert predicted == json.loads(FAMILY_PRINTED.read_text(encoding="utf-8"))[name]
    assert gui_script(values) == ("flux_train_network.py" if flux else "train_network.py")
