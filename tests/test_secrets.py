"""Secrets (huggingface_token, wandb_api_key) never reach a file lorakit writes or a line it prints: they are
refused as --set and preset values, dropped from GUI configs with a warning, and left to the environment the
trainer inherits (HF_TOKEN, WANDB_API_KEY)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import make_folder

from lorakit.cli.main import cli
from lorakit.config.schema import settable_keys

TOKEN = "hf_SeCrEtToKeN1234567890"
# The secret arguments of sdxl_train_network.py (sd-scripts filters the same two from its logged config).
SECRET_KEYS = {"huggingface_token": "HF_TOKEN", "wandb_api_key": "WANDB_API_KEY"}


@pytest.fixture
def dataset(tmp_path) -> Path:
    root = tmp_path / "dogs"
    make_folder(root / "10_sks dog", [(1024, 1024)] * 8)
    return root


def all_text(folder: Path) -> str:
    return "\n".join(p.read_text(encoding="utf-8", errors="replace") for p in folder.rglob("*") if p.is_file())


def plan_args(dataset: Path, out: Path, *extra: str) -> list[str]:
    return ["plan", str(dataset), "--target-gpu", "rtx4090", "--out", str(out), *extra]


@pytest.mark.parametrize("key", sorted(SECRET_KEYS))
def test_a_secret_given_with_set_is_refused_and_never_printed(runner, dataset, tmp_path, key):
    out = tmp_path / "p"
    result = runner.invoke(cli, plan_args(dataset, out, "--set", f"{key}={TOKEN}", "--explain"))
    assert result.exit_code == 2, result.output
    assert TOKEN not in result.output
    assert SECRET_KEYS[key] in result.output and "never writes it" in result.output
    assert not out.exists()


def test_a_secret_in_a_sweep_is_refused_without_its_value(runner, dataset, tmp_path):
    result = runner.invoke(cli, ["batch", "plan", str(dataset), "--target-gpu", "rtx4090", "--out", str(tmp_path / "b"),
                                 "--sweep", f"huggingface_token={TOKEN},other"])
    assert result.exit_code == 2 and TOKEN not in result.output and "HF_TOKEN" in result.output


def test_a_secret_in_a_preset_is_refused_without_its_value(runner, dataset, tmp_path):
    preset = tmp_path / "mine.toml"
    preset.write_text(f'[values]\nnetwork_dim = 32\nwandb_api_key = "{TOKEN}"\n', encoding="utf-8")
    out = tmp_path / "p"
    result = runner.invoke(cli, plan_args(dataset, out, "--preset", str(preset)))
    assert result.exit_code == 2, result.output
    assert TOKEN not in result.output and "WANDB_API_KEY" in result.output
    assert not out.exists()


def test_secret_keys_are_not_offered_by_lorakit_keys():
    assert not {spec.name for spec in settable_keys()} & set(SECRET_KEYS)


def gui_config_with_secrets(tmp_path: Path) -> Path:
    config = tmp_path / "gui.json"
    config.write_text(json.dumps({
        "sdxl": True, "pretrained_model_name_or_path": "stabilityai/stable-diffusion-xl-base-1.0",
        "huggingface_repo_id": "me/my-lora", "huggingface_token": TOKEN, "log_with": "wandb",
        "wandb_api_key": TOKEN + "w", "additional_parameters": f"--huggingface_token {TOKEN}x",
        "max_train_epochs": 2, "max_resolution": "1024,1024"}), encoding="utf-8")
    return config


def test_importing_a_gui_config_drops_its_secrets_with_a_warning(runner, tmp_path):
    preset = tmp_path / "presets" / "mine.toml"
    result = runner.invoke(cli, ["import", "kohya-gui", str(gui_config_with_secrets(tmp_path)), "-o", str(preset)])
    assert result.exit_code == 0, result.output
    assert TOKEN not in result.output and TOKEN not in preset.read_text(encoding="utf-8")
    assert "huggingface_token" in result.output and "HF_TOKEN" in result.output
    assert "huggingface_repo_id" in preset.read_text(encoding="utf-8"), "the rest of the upload settings are kept"


def test_a_plan_from_a_gui_config_with_secrets_holds_none_and_prints_none(runner, dataset, tmp_path):
    out = tmp_path / "p"
    config = gui_config_with_secrets(tmp_path)
    result = runner.invoke(cli, plan_args(dataset, out, "--from-kohya-gui", str(config), "--explain"))
    assert result.exit_code == 0, result.output
    assert TOKEN not in result.output and TOKEN not in all_text(out)
    plan = json.loads((out / "plan.json").read_text(encoding="utf-8"))
    assert plan["values"]["huggingface_repo_id"]["value"] == "me/my-lora"
    assert "gui/secret-dropped" in {f["code"] for f in plan["findings"]}
    exported = runner.invoke(cli, ["export", "kohya-gui", str(out)])
    assert exported.exit_code == 0, exported.output
    assert TOKEN not in exported.output and TOKEN not in all_text(out)


def test_an_older_plan_holding_a_secret_is_exported_without_it(runner, dataset, tmp_path):
    out = tmp_path / "p"
    assert runner.invoke(cli, plan_args(dataset, out)).exit_code == 0
    plan_json = out / "plan.json"
    data = json.loads(plan_json.read_text(encoding="utf-8"))
    data["values"]["huggingface_token"] = {"value": TOKEN, "source": "set"}  # as plans made before the fix held it
    plan_json.write_text(json.dumps(data), encoding="utf-8")
    result = runner.invoke(cli, ["export", "kohya-gui", str(out), "-o", str(tmp_path / "gui.json")])
    assert result.exit_code == 0, result.output
    text = (tmp_path / "gui.json").read_text(encoding="utf-8")
    assert TOKEN not in text and json.loads(text)["huggingface_token"] == ""
