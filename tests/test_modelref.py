"""Model values: a local file, a local diffusers folder, or REPO_ID[@REVISION][:FILENAME] on the Hub."""

from __future__ import annotations

import pytest

from lorakit.models.ref import parse_model_ref


@pytest.mark.parametrize(("value", "repo", "revision", "filename"), [
    ("stabilityai/stable-diffusion-xl-base-1.0", "stabilityai/stable-diffusion-xl-base-1.0", None, None),
    ("stabilityai/stable-diffusion-xl-base-1.0@v1.0", "stabilityai/stable-diffusion-xl-base-1.0", "v1.0", None),
    ("owner/name:sd_xl_base_1.0.safetensors", "owner/name", None, "sd_xl_base_1.0.safetensors"),
    ("owner/name@refs/pr/3:unet/model.safetensors", "owner/name", "refs/pr/3", "unet/model.safetensors"),
    ("Owner_1/my.model@0123456789abcdef0123456789abcdef01234567:x.ckpt", "Owner_1/my.model",
     "0123456789abcdef0123456789abcdef01234567", "x.ckpt"),
])
def test_hub_references(tmp_path, value, repo, revision, filename):
    ref = parse_model_ref(value, tmp_path)
    assert (ref.kind, ref.repo_id, ref.revision, ref.filename) == ("hub", repo, revision, filename)


def test_the_default_revision_is_main(tmp_path):
    assert parse_model_ref("owner/name", tmp_path).hub_revision == "main"


@pytest.mark.parametrize("value", [
    "/models/pony.safetensors", "./models/x", "~/sdxl", "owner/model.safetensors", "single-name",
    "owner/name@", "owner/name:", "owner/name:../escape.safetensors", "owner--x/name", "a/b/c", "owner/name@rev@rev2",
])
def test_values_that_are_no_hub_reference_are_local_paths_missing_here(tmp_path, value):
    ref = parse_model_ref(value, tmp_path)
    assert ref.kind == "missing"
    assert ref.path is not None and ref.path.is_absolute()


def test_an_existing_local_path_wins_over_a_hub_reading(tmp_path):
    (tmp_path / "models" / "sdxl").mkdir(parents=True)
    (tmp_path / "models" / "pony v6 – ü.safetensors").write_bytes(b"x")
    folder = parse_model_ref("models/sdxl", tmp_path)
    assert (folder.kind, folder.path) == ("folder", tmp_path / "models" / "sdxl")
    assert parse_model_ref("models/pony v6 – ü.safetensors", tmp_path).kind == "file"


def test_home_is_expanded(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    (tmp_path / "m.safetensors").write_bytes(b"x")
    ref = parse_model_ref("~/m.safetensors")
    assert (ref.kind, ref.path) == ("file", tmp_path / "m.safetensors")
