"""`lorakit push`: the model card rendered and parsed back, and the upload checked against a mocked HfApi (no network)."""

from __future__ import annotations

import json
from pathlib import Path
from unittest import mock

import huggingface_hub
import pytest
import yaml
from conftest import make_folder
from hubgen import fake_lora, write_safetensors
from imagegen import write_png

from lorakit.cli.main import cli
from lorakit.models.source import human_bytes
from lorakit.plan.build import PlanRequest, load_plan, make_plan, write_plan

SDXL = "stabilityai/stable-diffusion-xl-base-1.0"
TOKEN = "hf_secretTOKENvalue123"


def make_trained_plan(dataset: Path, out: Path, *overrides: str, samples: bool = True) -> Path:
    write_plan(make_plan(PlanRequest(dataset=dataset, target_gpu="rtx4090", out=out, overrides=list(overrides))))
    plan = load_plan(out)
    output = Path(plan.value_set["output_dir"])
    final = next(s.file for s in plan.saves if s.kind == "final")
    (output / final).parent.mkdir(parents=True, exist_ok=True)
    (output / final).write_bytes(fake_lora(plan.total_steps))
    if samples:
        for when, stamp in (("e000006", "20240101110000"), ("e000012", "20240101120000")):
            for index in (0, 1):
                write_png(output / "sample" / f"{plan.value_set['output_name']}_{when}_{index:02d}_{stamp}_42.png", 8, 8)
    return out


@pytest.fixture
def trained(character_dataset, tmp_path) -> Path:
    return make_trained_plan(character_dataset, tmp_path / "plan")


def front_matter(card: str) -> dict:
    assert card.startswith("---\n")
    header, _, _ = card[4:].partition("\n---\n")
    return yaml.safe_load(header)


def dry_run(runner, plan_dir: Path, *args: str):
    result = runner.invoke(cli, ["push", str(plan_dir), "--repo", "me/sks-dog", "--dry-run", *args], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    card = result.output[: result.output.index("\nWould upload")]
    return card, result.output


@pytest.fixture
def api(monkeypatch):
    """huggingface_hub.HfApi replaced by an autospec mock: calls are checked against the real signatures."""
    instance = mock.create_autospec(huggingface_hub.HfApi, instance=True)
    instance.create_repo.return_value = huggingface_hub.RepoUrl("https://huggingface.co/me/sks-dog")
    instance.create_commit.return_value = mock.Mock(commit_url="https://huggingface.co/me/sks-dog/commit/abc")
    factory = mock.Mock(return_value=instance)
    monkeypatch.setattr(huggingface_hub, "HfApi", factory)
    monkeypatch.setenv("HF_TOKEN", TOKEN)
    return factory


def test_the_card_header_makes_the_hub_show_an_sdxl_lora(runner, trained):
    card, _ = dry_run(runner, trained)
    meta = front_matter(card)
    assert meta["base_model"] == SDXL and meta["base_model_relation"] == "adapter"
    assert meta["license"] == "openrail++"
    assert {"lora", "stable-diffusion-xl", "text-to-image", "template:sd-lora"} <= set(meta["tags"])
    assert meta["instance_prompt"] == "sks dog"
    lines = (trained / "sample_prompts.txt").read_text().splitlines()
    prompts = [line.split(" --")[0] for line in lines if line and not line.startswith("#")]
    assert [w["text"] for w in meta["widget"]] == prompts[:2]
    assert [w["output"]["url"] for w in meta["widget"]] == [
        f"samples/dogs_e000012_{i:02d}_20240101120000_42.png" for i in (0, 1)]


def test_the_card_body_names_trigger_settings_steps_and_file(runner, trained):
    card, _ = dry_run(runner, trained)
    plan = load_plan(trained)
    assert "Put `sks` in your prompt" in card
    assert "- `dogs.safetensors`: " in card and f"{plan.total_steps} steps, 12 epoch(s)" in card
    assert "| `network_dim` | `16` |" in card
    assert "weight_name='dogs.safetensors'" in card and f"from_pretrained('{SDXL}'" in card


def test_a_dry_run_lists_the_lora_the_card_and_the_latest_samples_only(runner, trained):
    _, output = dry_run(runner, trained)
    uploads = [line.split()[2] for line in output.splitlines() if line.startswith("Would upload")]
    assert uploads == ["dogs.safetensors", "README.md", "samples/dogs_e000012_00_20240101120000_42.png",
                       "samples/dogs_e000012_01_20240101120000_42.png"]


def test_push_creates_the_repo_and_uploads_one_commit(runner, trained, api):
    result = runner.invoke(cli, ["push", str(trained), "--repo", "me/sks-dog", "--private"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    api.assert_called_once_with(token=TOKEN)
    hub = api.return_value
    hub.create_repo.assert_called_once_with("me/sks-dog", private=True, repo_type="model", exist_ok=True)
    (repo, operations), kwargs = hub.create_commit.call_args
    assert repo == "me/sks-dog" and kwargs["repo_type"] == "model"
    by_path = {op.path_in_repo: op for op in operations}
    assert list(by_path) == ["dogs.safetensors", "README.md", "samples/dogs_e000012_00_20240101120000_42.png",
                             "samples/dogs_e000012_01_20240101120000_42.png"]
    assert by_path["dogs.safetensors"].path_or_fileobj == str(trained / "output" / "dogs.safetensors")
    card = by_path["README.md"].path_or_fileobj.decode("utf-8")
    assert front_matter(card)["base_model"] == SDXL
    assert "Pushed to https://huggingface.co/me/sks-dog" in result.output


def test_the_token_is_never_printed_or_written(runner, trained, api, tmp_path):
    api.return_value.create_commit.side_effect = huggingface_hub.errors.HfHubHTTPError(
        "403 Forbidden: you cannot write", response=mock.Mock(status_code=403, headers={}))
    result = runner.invoke(cli, ["push", str(trained), "--repo", "me/sks-dog"])
    assert result.exit_code == 2
    assert "may not write to me/sks-dog" in result.output and "Traceback" not in result.output
    assert TOKEN not in result.output
    assert not [p for p in tmp_path.rglob("*") if p.is_file() and TOKEN.encode() in p.read_bytes()]


def test_without_a_token_push_says_how_to_get_one(runner, trained, monkeypatch):
    monkeypatch.setattr(huggingface_hub, "HfApi", mock.Mock(side_effect=AssertionError("no upload without a token")))
    result = runner.invoke(cli, ["push", str(trained), "--repo", "me/sks-dog"])
    assert result.exit_code == 2
    assert "needs a Hugging Face token" in result.output and "HF_TOKEN" in result.output


def test_the_lora_comes_from_run_json_when_launch_wrote_one(runner, trained):
    other = write_safetensors(trained / "output" / "elsewhere" / "dogs.safetensors", {"lora_unet_x.lora_down.weight": 4})
    (trained / "run.json").write_text(json.dumps({"state": "succeeded", "outputs": [
        {"path": str(other), "bytes": other.stat().st_size, "metadata": {}}]}))
    _, output = dry_run(runner, trained)
    assert f"Would upload dogs.safetensors ({human_bytes(other.stat().st_size)})" in output


def test_a_run_that_ended_without_its_final_lora_is_refused(runner, trained):
    (trained / "run.json").write_text(json.dumps({"state": "interrupted", "outputs": [
        {"path": str(trained / "output" / "dogs-000006.safetensors"), "bytes": 1, "metadata": {}}]}))
    result = runner.invoke(cli, ["push", str(trained), "--repo", "me/sks-dog", "--dry-run"])
    assert result.exit_code == 2
    assert "ended 'interrupted' without the final LoRA dogs.safetensors" in result.output
    assert "dogs-000006.safetensors" in result.output and "--file" in result.output


def test_a_plan_not_trained_yet_is_refused(runner, character_dataset, tmp_path):
    out = tmp_path / "plan"
    write_plan(make_plan(PlanRequest(dataset=character_dataset, target_gpu="rtx4090", out=out)))
    result = runner.invoke(cli, ["push", str(out), "--repo", "me/sks-dog", "--dry-run"])
    assert result.exit_code == 2 and f"lorakit launch {out}" in result.output


def test_a_local_base_model_needs_base_model_to_be_linked(runner, character_dataset, tmp_path):
    model = tmp_path / "pony.safetensors"
    write_safetensors(model, {"model.diffusion_model.x": 4})
    out = make_trained_plan(character_dataset, tmp_path / "plan", f"pretrained_model_name_or_path={model}", samples=False)
    card, output = dry_run(runner, out)
    assert "base_model" not in front_matter(card) and "license" not in front_matter(card)
    assert "pass --base-model REPO_ID" in output and "pass --license" in output
    published = card.split("\nnote:")[0]
    assert "pony.safetensors" in published and str(tmp_path) not in published  # the trainer's folders stay private
    card, _ = dry_run(runner, out, "--base-model", "someone/pony-xl", "--license", "other")
    assert (front_matter(card)["base_model"], front_matter(card)["license"]) == ("someone/pony-xl", "other")
    assert "widget" not in front_matter(card)


def test_awkward_class_tokens_survive_the_card(runner, tmp_path):
    tokens = 'zk: "robot" `x` ü #1'
    dataset = tmp_path / "data"
    make_folder(dataset / f"10_{tokens}", [(1024, 1024)] * 4)
    out = make_trained_plan(dataset, tmp_path / "plan", samples=False)
    card, _ = dry_run(runner, out)
    assert front_matter(card)["instance_prompt"] == tokens
    assert "``zk: \"robot\" `x` ü #1``" in card


def test_a_bad_repo_name_is_refused(runner, trained):
    result = runner.invoke(cli, ["push", str(trained), "--repo", "not a repo", "--dry-run"])
    assert result.exit_code == 2 and "--repo 'not a repo' is not a Hub repo id" in result.output


@pytest.mark.parametrize("name", ["some.png", "renamed.ckpt", "picture.safetensors"])
def test_a_file_that_is_not_a_lora_is_refused_before_anything_is_uploaded(runner, trained, api, tmp_path, name):
    picture = write_png(tmp_path / "picture.png", 8, 8)
    other = tmp_path / name
    other.write_bytes(picture.read_bytes())
    result = runner.invoke(cli, ["push", str(trained), "--repo", "me/sks-dog", "--file", str(other)])
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert "LoRA" in result.output and "--file" in result.output
    api.return_value.create_commit.assert_not_called()


def test_a_torch_save_lora_is_accepted(runner, trained, tmp_path):
    saved = tmp_path / "dogs.ckpt"
    saved.write_bytes(b"PK\x03\x04" + b"\0" * 60)  # torch.save's zip archive
    _, output = dry_run(runner, trained, "--file", str(saved))
    assert "Would upload dogs.ckpt" in output
