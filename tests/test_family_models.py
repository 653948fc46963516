"""Models per family (docs/families.md "Models per family"): every model argument of FLUX.1, Chroma and SD 1.5
resolved as the base model is, from the test's own Hub cache (tests/hubgen.py) and the fake sd-scripts."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from unittest import mock

import huggingface_hub
import pytest
import tomllib
from conftest import make_folder
from hubgen import cache_files, safetensors_bytes, tokenizer_files, write_safetensors
from huggingface_hub import errors as hub_errors

from lorakit.cli.main import cli
from lorakit.models.content import recognize
from lorakit.models.fetch import LocalModels
from lorakit.models.source import ModelSection

FLUX = "black-forest-labs/FLUX.1-dev"
ENCODERS = "comfyanonymous/flux_text_encoders"
CHROMA = "lodestones/Chroma1-Base"
# Tensor names as the real files have them (a few each), tiny: what lorakit reads is the header.
TRANSFORMER = {"double_blocks.0.img_attn.proj.bias": 4, "single_blocks.0.modulation.lin.bias": 4,
               "guidance_in.in_layer.bias": 4}
AE = {"encoder.down.0.block.0.conv1.weight": 4, "decoder.up.0.block.0.conv1.weight": 4}
CLIP_L = {f"text_model.encoder.layers.{i}.mlp.fc1.weight": 2 for i in range(12)}
T5 = {"encoder.block.0.layer.0.SelfAttention.q.weight": 4, "shared.weight": 4}
FILES = {  # key → (repo, file, contents)
    "pretrained_model_name_or_path": (FLUX, "flux1-dev.safetensors", safetensors_bytes(TRANSFORMER)),
    "ae": (FLUX, "ae.safetensors", safetensors_bytes(AE)),
    "clip_l": (ENCODERS, "clip_l.safetensors", safetensors_bytes(CLIP_L)),
    "t5xxl": (ENCODERS, "t5xxl_fp16.safetensors", safetensors_bytes(T5)),
}
FLUX_TOKENIZERS = {"openai/clip-vit-large-patch14": tokenizer_files(),
                   "google/t5-v1_1-xxl": {"spiece.model": b"\x00sentencepiece", "tokenizer_config.json": b"{}"}}
ONE_STEP = ["--set", "max_train_steps=6", "--set", "train_batch_size=1", "--set", "sample_every_n_steps=none"]


def cache_flux(hf_home: Path, *, leave_out: tuple[str, ...] = ()) -> None:
    """FLUX.1 [dev]'s four files and sd-scripts' FLUX tokenizers in the test's Hub cache (but the keys left out)."""
    for key, (repo, name, data) in FILES.items():
        if key not in leave_out:
            cache_files(hf_home / "hub", repo, {name: data})
    for repo, files in FLUX_TOKENIZERS.items():
        cache_files(hf_home / "hub", repo, files)


def plan(runner, tmp_path: Path, *args: str, preset: str = "flux1-dev", out: str = "plan"):
    dataset = tmp_path / "robot data"
    if not dataset.exists():
        make_folder(dataset / "5_zk robot", [(1024, 1024)] * 4)
    return runner.invoke(cli, ["plan", str(dataset), "--preset", preset, "--target-gpu", "rtx4090",
                               "--out", str(tmp_path / out), *ONE_STEP, *args])


def findings(out: Path) -> dict[str, dict]:
    return {f["code"]: f for f in json.loads((out / "plan.json").read_text())["findings"]}


def test_a_cached_flux_plan_gives_sd_scripts_four_loadable_paths(runner, tmp_path, isolated_hub):
    cache_flux(isolated_hub)
    result = plan(runner, tmp_path)
    assert result.exit_code == 0, result.output
    config = tomllib.loads((tmp_path / "plan" / "config.toml").read_text())
    flat = {k: v for table in config.values() for k, v in (table.items() if isinstance(table, dict) else [])}
    for key, (_repo, name, data) in FILES.items():
        path = Path(flat[key])
        assert path.name == name and path.is_relative_to(os.environ["LORAKIT_CACHE_DIR"])  # lorakit's link
        assert os.path.isabs(os.readlink(path)) and path.read_bytes() == data
    assert result.output.count("cached at") == 4 and "T5-XXL text encoder: " + ENCODERS in result.output


def test_plan_json_records_every_role_and_the_familys_tokenizers(runner, tmp_path, isolated_hub):
    cache_flux(isolated_hub)
    assert plan(runner, tmp_path).exit_code == 0
    model = ModelSection.model_validate(json.loads((tmp_path / "plan" / "plan.json").read_text())["model"])
    assert model.family == "flux1" and model.vae is None
    assert [(s.key, s.repo_id, s.filename, s.status) for s in model.components] == [
        (key, repo, name, "cached") for key, (repo, name, _) in list(FILES.items())[1:]]
    assert [t.value for t in model.tokenizers] == list(FLUX_TOKENIZERS)


def test_an_older_plans_model_section_still_loads_as_sdxl():
    old = {"hub_cache": "/hf", "offline": False, "base": {"role": "base", "key": "pretrained_model_name_or_path",
                                                          "value": "/m.safetensors", "kind": "file", "layout": "checkpoint",
                                                          "rule": "a local file", "status": "local"}}
    section = ModelSection.model_validate(old)
    assert section.family == "sdxl" and section.components == [] and [s.key for s in section.files()] == [
        "pretrained_model_name_or_path"]


def test_doctor_lists_each_model_file(runner, tmp_path, isolated_hub, fake_trainer):
    cache_flux(isolated_hub)
    assert plan(runner, tmp_path).exit_code == 0
    result = runner.invoke(cli, ["doctor", str(tmp_path / "plan"), "--json"])
    report = json.loads(result.output)
    assert [line.split(":")[0] for line in report["model_files"]] == [
        "base model", "autoencoder (ae)", "CLIP-L text encoder", "T5-XXL text encoder"]
    assert all("cached at" in line for line in report["model_files"])


def test_a_flux_launch_hashes_every_model_file_in_run_json(runner, tmp_path, isolated_hub, fake_trainer):
    cache_flux(isolated_hub)
    assert plan(runner, tmp_path).exit_code == 0
    result = runner.invoke(cli, ["launch", str(tmp_path / "plan"), "--every", "0"])
    assert result.exit_code == 0, result.output
    models = LocalModels.model_validate(json.loads((tmp_path / "plan" / "run.json").read_text())["models"])
    assert {m.key: m.sha256 for m in models.files()} == {
        key: hashlib.sha256(data).hexdigest() for key, (_, _, data) in FILES.items()}
    assert [m.value for m in models.tokenizers] == list(FLUX_TOKENIZERS)


def test_the_fake_flux_trainer_stops_on_a_missing_text_encoder_as_sd_scripts_does(runner, tmp_path, isolated_hub,
                                                                                    fake_trainer):
    cache_flux(isolated_hub)
    assert plan(runner, tmp_path).exit_code == 0
    gone = tmp_path / "gone" / "t5xxl.safetensors"
    config = tmp_path / "plan" / "config.toml"  # edited by hand after planning: Gate 4 looked at plan.json's files
    config.write_text("\n".join(f't5xxl = "{gone}"' if line.startswith("t5xxl =") else line
                                for line in config.read_text().splitlines()))
    result = runner.invoke(cli, ["launch", str(tmp_path / "plan"), "--every", "0"])
    assert result.exit_code != 0
    assert f"No such file or directory: '{gone}' (--t5xxl)" in (tmp_path / "plan" / "logs" / "train.log").read_text()


def test_offline_a_role_missing_from_the_cache_warns_and_stops_the_launch(runner, tmp_path, isolated_hub, fake_trainer,
                                                                          monkeypatch):
    cache_flux(isolated_hub, leave_out=("t5xxl",))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    planned = plan(runner, tmp_path)
    assert planned.exit_code == 0
    assert "T5-XXL text encoder: comfyanonymous/flux_text_encoders@main:t5xxl_fp16.safetensors — not in the Hub cache, " \
           "and HF_HUB_OFFLINE is set" in planned.output
    warning = findings(tmp_path / "plan")["model/offline-not-cached"]
    assert warning["level"] == "warning" and warning["key"] == "t5xxl" and "T5-XXL text encoder" in warning["message"]
    result = runner.invoke(cli, ["launch", str(tmp_path / "plan"), "--every", "0"])
    assert result.exit_code != 0 and not (tmp_path / "plan" / "logs").exists()
    assert f"lorakit fetch-model {tmp_path / 'plan'}" in result.output
    assert f"hf download {ENCODERS} t5xxl_fp16.safetensors" in result.output


def test_a_gated_repo_to_download_is_announced_with_its_licence(runner, tmp_path, monkeypatch):
    assert plan(runner, tmp_path).exit_code == 0
    gated = findings(tmp_path / "plan")["model/gated"]
    assert gated["level"] == "warning" and "https://huggingface.co/black-forest-labs/FLUX.1-dev" in gated["message"]
    assert "flux1-dev.safetensors and ae.safetensors" in gated["message"] and "HF_TOKEN" in gated["fix"]
    monkeypatch.setenv("HF_TOKEN", "hf_test")
    assert plan(runner, tmp_path, out="again").exit_code == 0
    assert findings(tmp_path / "again")["model/gated"]["level"] == "info"


@pytest.mark.parametrize("status, expected", [(401, "FLUX.1-dev is a gated model"), (403, "accept the licence on")])
def test_the_hubs_refusal_of_a_gated_file_is_explained(runner, tmp_path, isolated_hub, monkeypatch, status, expected):
    cache_flux(isolated_hub, leave_out=("pretrained_model_name_or_path",))
    assert plan(runner, tmp_path).exit_code == 0
    error = (hub_errors.GatedRepoError if status == 401 else hub_errors.HfHubHTTPError)(
        f"{status} Client Error", response=mock.Mock(status_code=status, headers={}))
    monkeypatch.setattr(huggingface_hub, "hf_hub_download", mock.Mock(side_effect=error))
    result = runner.invoke(cli, ["fetch-model", str(tmp_path / "plan")])
    assert result.exit_code == 2 and expected in result.output and "Traceback" not in result.output
    assert "https://huggingface.co/black-forest-labs/FLUX.1-dev" in result.output


def test_fetch_model_only_fetches_the_role_asked_for(runner, tmp_path, isolated_hub, monkeypatch):
    cache_flux(isolated_hub, leave_out=("pretrained_model_name_or_path", "t5xxl"))
    assert plan(runner, tmp_path).exit_code == 0
    calls = []

    def download(repo_id, filename, *, revision=None, cache_dir=None, **_):
        calls.append((repo_id, filename))
        return str(cache_files(Path(cache_dir), repo_id, {filename: FILES["t5xxl"][2]}) / filename)

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", download)
    result = runner.invoke(cli, ["fetch-model", str(tmp_path / "plan"), "--only", "t5xxl"])
    assert result.exit_code == 0, result.output
    assert calls == [(ENCODERS, "t5xxl_fp16.safetensors")]
    assert "T5-XXL text encoder" in result.output and "sha256 " + hashlib.sha256(FILES["t5xxl"][2]).hexdigest() in result.output
    assert runner.invoke(cli, ["fetch-model", str(tmp_path / "plan"), "--only", "vae"]).exit_code == 2


def test_a_diffusers_folder_or_a_hub_id_without_its_file_is_refused_for_flux(runner, tmp_path):
    folder = tmp_path / "FLUX.1-dev"
    (folder / "transformer").mkdir(parents=True)
    (folder / "model_index.json").write_text("{}")
    result = plan(runner, tmp_path, "--set", f"pretrained_model_name_or_path={folder}", "--set", f"ae={FLUX}")
    assert result.exit_code == 1 and result.output.count("model/not-a-single-file") == 2
    assert "never a Diffusers folder" in result.output
    assert f"--set ae={FLUX}:ae.safetensors" in result.output  # the fix names the file lorakit knows


def test_a_file_of_another_role_is_recognized_from_its_header(runner, tmp_path):
    t5 = write_safetensors(tmp_path / "te.safetensors", T5)
    sdxl = write_safetensors(tmp_path / "sdxl.safetensors", {"conditioner.embedders.1.model.ln_final.weight": 4})
    result = plan(runner, tmp_path, "--set", f"clip_l={t5}", "--set", f"pretrained_model_name_or_path={sdxl}")
    assert result.exit_code == 1 and result.output.count("model/wrong-file") == 2
    assert "it holds a T5 text encoder" in result.output and "it holds an SDXL checkpoint" in result.output
    assert f"--set clip_l={ENCODERS}:clip_l.safetensors" in result.output


def test_a_known_hub_file_named_for_another_role_is_refused_before_any_download(runner, tmp_path):
    result = plan(runner, tmp_path, "--set", f"clip_l={ENCODERS}:t5xxl_fp16.safetensors")
    assert result.exit_code == 1 and "t5xxl_fp16.safetensors is the T5-XXL text encoder file" in result.output


def test_chroma_needs_no_clip_l(runner, tmp_path, isolated_hub):
    result = plan(runner, tmp_path, preset="chroma")
    assert result.exit_code == 0, result.output
    model = json.loads((tmp_path / "plan" / "plan.json").read_text())["model"]
    assert (model["base"]["repo_id"], model["base"]["filename"]) == (CHROMA, "Chroma.safetensors")
    assert [c["key"] for c in model["components"]] == ["ae", "t5xxl"]


def test_sd15s_bare_repo_id_means_its_single_file_checkpoint(runner, tmp_path):
    result = plan(runner, tmp_path, "--set", "resolution=512,512", preset="sd15")
    assert result.exit_code == 0, result.output
    base = json.loads((tmp_path / "plan" / "plan.json").read_text())["model"]["base"]
    assert (base["filename"], base["layout"]) == ("v1-5-pruned-emaonly.safetensors", "checkpoint")
    assert "v1-5-pruned-emaonly.safetensors — will be downloaded at launch (about 4.27 GB)" in result.output


@pytest.mark.parametrize("tensors, kind", [
    (TRANSFORMER, "flux"), ({"model.diffusion_model.double_blocks.0.x": 1, "model.diffusion_model.single_blocks.0.x": 1,
                             "model.diffusion_model.distilled_guidance_layer.in_proj.weight": 1}, "chroma"),
    (AE, "ae"), ({**AE, "quant_conv.weight": 1}, "vae"), (CLIP_L, "clip_l"),
    ({f"text_model.encoder.layers.{i}.x": 1 for i in range(32)}, "clip"), (T5, "t5xxl"),
    ({"cond_stage_model.transformer.text_model.x": 1}, "sd1"), ({"lora_unet_x.lora_down.weight": 1}, "lora"),
    ({"some.other.tensor": 1}, None),
])
def test_what_a_model_file_holds_is_told_by_its_tensor_names(tensors, kind):
    assert recognize(tensors) == kind


def test_an_unset_flux_role_is_an_error_naming_the_file_to_give(runner, tmp_path):
    result = plan(runner, tmp_path, "--set", "ae=none")
    assert result.exit_code == 1 and "model/not-set" in result.output
    assert f"--set ae={FLUX}:ae.safetensors" in result.output


def test_the_downloads_together_are_held_against_the_free_disk(runner, tmp_path, monkeypatch):
    monkeypatch.setattr("lorakit.models.gate._free_bytes", lambda path: 20 * 10**9)
    assert plan(runner, tmp_path).exit_code == 0
    warning = findings(tmp_path / "plan")["model/disk-space"]  # each file fits alone; the four together do not
    assert "need about 34.17 GB" in warning["message"] and "has 20.00 GB free" in warning["message"]
