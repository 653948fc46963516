"""`lorakit plan` finds models in a Hub cache laid out in a temporary HF_HOME, without network or huggingface_hub."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import tomllib
from hubgen import (
    COMMIT,
    SDXL,
    SDXL_FILE,
    cache_files,
    cache_sdxl,
    diffusers_files,
    fake_checkpoint,
    fake_lora,
    write_safetensors,
)

from lorakit.cli.main import cli
from lorakit.models.source import human_bytes


def plan(runner, dataset: Path, out: Path, *args: str):
    return runner.invoke(cli, ["plan", str(dataset), "--target-gpu", "rtx4090", "--out", str(out), *args],
                         catch_exceptions=False, env={"COLUMNS": "400"})


def plan_json(out: Path) -> dict:
    return json.loads((out / "plan.json").read_text(encoding="utf-8"))


def config_value(out: Path, key: str):
    config = tomllib.loads((out / "config.toml").read_text(encoding="utf-8"))
    return next(table[key] for table in config.values() if key in table)


def codes(out: Path) -> set[str]:
    return {f["code"] for f in plan_json(out)["findings"]}


def loads_like_sd_scripts(path: str) -> bool:
    """sdxl_train_util._load_target_model: one readlink, then a file with a .safetensors name or a folder."""
    name = os.readlink(path) if os.path.islink(path) else path
    return os.path.isfile(name) and name.endswith(".safetensors") or os.path.isdir(name)


def test_the_default_base_model_is_cached_at_its_snapshot(runner, character_dataset, tmp_path, cached_sdxl):
    out = tmp_path / "plan"
    result = plan(runner, character_dataset, out)
    assert result.exit_code == 0, result.output
    snapshot_file = cached_sdxl / SDXL_FILE
    size = snapshot_file.stat().st_size
    assert f"cached at {snapshot_file} ({human_bytes(size)})" in result.output
    base = plan_json(out)["model"]["base"]
    assert (base["repo_id"], base["revision"], base["filename"], base["commit"]) == (SDXL, "main", SDXL_FILE, COMMIT)
    assert plan_json(out)["values"]["pretrained_model_name_or_path"]["value"] == SDXL  # plan.json keeps the id


def test_sd_scripts_gets_a_path_it_can_load_not_the_relative_snapshot_link(runner, character_dataset, tmp_path, cached_sdxl):
    snapshot = cached_sdxl
    out = tmp_path / "plan"
    plan(runner, character_dataset, out)
    given = config_value(out, "pretrained_model_name_or_path")
    assert not loads_like_sd_scripts(str(snapshot / SDXL_FILE))  # why lorakit needs its own link
    assert loads_like_sd_scripts(given)
    assert Path(given).name == SDXL_FILE
    assert os.path.realpath(given) == os.path.realpath(snapshot / SDXL_FILE)


def test_not_cached_will_be_downloaded_with_the_size_lorakit_knows(runner, character_dataset, tmp_path):
    out = tmp_path / "plan"
    result = plan(runner, character_dataset, out)
    assert f"{SDXL}@main:{SDXL_FILE} — will be downloaded at launch (about 6.94 GB)" in result.output
    base = plan_json(out)["model"]["base"]
    assert (base["status"], base["bytes"], base["bytes_exact"], base["path"]) == ("download", 6_940_000_000, False, None)
    assert "model/offline-not-cached" not in codes(out)


def test_hf_hub_cache_wins_over_hf_home(runner, character_dataset, tmp_path, monkeypatch):
    cache = tmp_path / "elsewhere"
    cache_sdxl(cache)
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    out = tmp_path / "plan"
    assert "cached at " + str(cache) in plan(runner, character_dataset, out).output
    assert plan_json(out)["model"]["hub_cache"] == str(cache)


def test_a_revision_resolves_through_its_ref_and_a_commit_directly(runner, character_dataset, tmp_path, isolated_hub):
    cache_files(isolated_hub / "hub", "me/model", {"m.safetensors": fake_checkpoint()}, revision="v2")
    for value in ("me/model@v2:m.safetensors", f"me/model@{COMMIT}:m.safetensors"):
        out = tmp_path / value.replace("/", "_").replace(":", "_")
        plan(runner, character_dataset, out, "--set", f"pretrained_model_name_or_path={value}")
        assert plan_json(out)["model"]["base"]["status"] == "cached", value
    out = tmp_path / "other-branch"
    plan(runner, character_dataset, out, "--set", "pretrained_model_name_or_path=me/model@dev:m.safetensors")
    assert plan_json(out)["model"]["base"]["status"] == "download"


def test_a_hub_id_without_a_file_is_a_diffusers_folder(runner, character_dataset, tmp_path, isolated_hub):
    files = diffusers_files()
    snapshot = cache_files(isolated_hub / "hub", "me/sdxl-diffusers", files)
    out = tmp_path / "plan"
    result = plan(runner, character_dataset, out, "--set", "pretrained_model_name_or_path=me/sdxl-diffusers")
    base = plan_json(out)["model"]["base"]
    assert (base["layout"], base["status"], base["path"]) == ("diffusers", "cached", str(snapshot))
    assert base["bytes"] == sum(len(data) for data in files.values())
    assert loads_like_sd_scripts(config_value(out, "pretrained_model_name_or_path"))
    assert "me/sdxl-diffusers@main — cached at" in result.output


def test_an_incomplete_diffusers_snapshot_is_not_cached(runner, character_dataset, tmp_path, isolated_hub):
    files = diffusers_files()
    del files["unet/diffusion_pytorch_model.safetensors"]
    cache_files(isolated_hub / "hub", "me/sdxl-diffusers", files)
    out = tmp_path / "plan"
    result = plan(runner, character_dataset, out, "--set", "pretrained_model_name_or_path=me/sdxl-diffusers")
    assert "will be downloaded at launch (size unknown until then)" in result.output


def test_a_vae_from_the_hub_is_resolved_too(runner, character_dataset, tmp_path, isolated_hub):
    vae = {"config.json": b"{}", "diffusion_pytorch_model.safetensors": fake_checkpoint(4)}
    cache_files(isolated_hub / "hub", "madebyollin/sdxl-vae-fp16-fix", vae)
    out = tmp_path / "plan"
    result = plan(runner, character_dataset, out, "--set", "vae=madebyollin/sdxl-vae-fp16-fix")
    assert "VAE: madebyollin/sdxl-vae-fp16-fix@main — cached at" in result.output
    assert plan_json(out)["model"]["vae"]["layout"] == "diffusers-vae"
    assert os.path.isdir(config_value(out, "vae"))


def test_offline_and_not_cached_warns_with_the_commands_that_fetch_it(runner, character_dataset, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    out = tmp_path / "my plan"
    result = plan(runner, character_dataset, out)
    assert result.exit_code == 0, result.output  # the plan may be for another machine; launch stops
    base = next(f for f in plan_json(out)["findings"] if f["code"] == "model/offline-not-cached" and f["key"])
    assert base["level"] == "warning" and base["gate"] == 4
    assert f"lorakit fetch-model '{out}'" in base["fix"]
    assert f"hf download {SDXL} {SDXL_FILE}" in base["fix"]


def test_offline_warns_about_sd_scripts_tokenizers_until_they_are_cached(runner, character_dataset, tmp_path, isolated_hub,
                                                                          monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    cache_sdxl(isolated_hub / "hub", tokenizers=False)
    out = tmp_path / "plan"
    plan(runner, character_dataset, out)
    assert sum(f["code"] == "model/offline-not-cached" for f in plan_json(out)["findings"]) == 2
    cache_sdxl(isolated_hub / "hub")
    plan(runner, character_dataset, out, "--force")
    assert "model/offline-not-cached" not in codes(out)


def test_a_local_checkpoint_is_given_to_sd_scripts_as_an_absolute_path(runner, character_dataset, tmp_path, monkeypatch):
    model = tmp_path / "models" / "pony v6 ‘xl’.safetensors"
    model.parent.mkdir()
    model.write_bytes(fake_checkpoint())
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "plan"
    result = plan(runner, character_dataset, out, "--set", "pretrained_model_name_or_path=models/pony v6 ‘xl’.safetensors")
    assert "base model: models/pony v6 ‘xl’.safetensors — local file" in result.output
    assert config_value(out, "pretrained_model_name_or_path") == str(model)
    assert plan_json(out)["values"]["pretrained_model_name_or_path"]["source"] == "set"


def test_a_copied_snapshot_path_gets_a_link_sd_scripts_can_follow(runner, character_dataset, tmp_path, cached_sdxl):
    snapshot = cached_sdxl
    out = tmp_path / "plan"
    plan(runner, character_dataset, out, "--set", f"pretrained_model_name_or_path={snapshot / SDXL_FILE}")
    given = config_value(out, "pretrained_model_name_or_path")
    assert given != str(snapshot / SDXL_FILE) and loads_like_sd_scripts(given)


def test_a_missing_local_model_warns_and_the_plan_is_still_written(runner, character_dataset, tmp_path):
    out = tmp_path / "plan"
    result = plan(runner, character_dataset, out, "--set", "pretrained_model_name_or_path=/models/absent.safetensors")
    assert result.exit_code == 0
    assert "model/not-found" in codes(out)
    assert config_value(out, "pretrained_model_name_or_path") == "/models/absent.safetensors"


@pytest.mark.parametrize(("make", "code"), [
    (lambda p: p.write_bytes(fake_checkpoint()[:-10]), "model/unreadable"),
    (lambda p: p.write_bytes(fake_lora()), "model/lora-as-base"),
])
def test_a_broken_or_wrong_local_file_is_an_error(runner, character_dataset, tmp_path, make, code):
    model = tmp_path / "model.safetensors"
    make(model)
    out = tmp_path / "plan"
    result = plan(runner, character_dataset, out, "--set", f"pretrained_model_name_or_path={model}")
    assert result.exit_code == 1
    assert code in result.output and not out.exists()


def test_a_folder_that_is_not_a_diffusers_pipeline_is_an_error(runner, character_dataset, tmp_path):
    folder = tmp_path / "not-diffusers"
    write_safetensors(folder / "unet" / "diffusion_pytorch_model.safetensors", {"w": 4})
    result = plan(runner, character_dataset, tmp_path / "plan", "--set", f"pretrained_model_name_or_path={folder}")
    assert result.exit_code == 1
    assert "model/incomplete-folder" in result.output and "model_index.json" in result.output


def test_a_download_larger_than_the_free_space_warns(runner, character_dataset, tmp_path, monkeypatch):
    monkeypatch.setattr("lorakit.models.gate._free_bytes", lambda path: 10**9)
    out = tmp_path / "plan"
    plan(runner, character_dataset, out)
    warning = next(f for f in plan_json(out)["findings"] if f["code"] == "model/disk-space")
    assert "needs about 6.94 GB" in warning["message"] and "has 1.00 GB free" in warning["message"]


def test_no_base_model_at_all_is_an_error(runner, character_dataset, tmp_path):
    result = plan(runner, character_dataset, tmp_path / "plan", "--set", "pretrained_model_name_or_path=none")
    assert result.exit_code == 1
    assert "model/not-set" in result.output
