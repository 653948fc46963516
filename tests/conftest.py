"""Shared test helpers: tiny real PNG files, dataset folders, and an isolated preset folder."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from hubgen import cache_sdxl
from imagegen import write_png

REPO = Path(__file__).resolve().parents[1]
SHARED_DOCS = REPO.parent / "shared" / "docs"


def make_folder(folder: Path, sizes: list[tuple[int, int]], caption: str | None = "{name}", stem: str = "img") -> Path:
    """Images of the given sizes with captions ({name} is replaced by the folder's class tokens)."""
    tokens = folder.name.partition("_")[2] or folder.name
    for i, (w, h) in enumerate(sizes):
        image = write_png(folder / f"{stem}{i:04d}.png", w, h)
        if caption is not None:
            image.with_suffix(".txt").write_text(caption.replace("{name}", tokens) + ", a photo\n", encoding="utf-8")
    return folder


@pytest.fixture(autouse=True)
def isolated_user_presets(tmp_path_factory, monkeypatch):
    """Keep the developer's own ~/.config/lorakit presets and calibration, and fake GPUs, out of every test."""
    monkeypatch.setenv("LORAKIT_PRESETS_DIR", str(tmp_path_factory.mktemp("user-presets")))
    monkeypatch.setenv("LORAKIT_CALIBRATION", str(tmp_path_factory.mktemp("calibration") / "calibration.toml"))
    monkeypatch.delenv("LORAKIT_FAKE_GPU", raising=False)
    monkeypatch.delenv("LORAKIT_SD_SCRIPTS", raising=False)
    monkeypatch.delenv("LORAKIT_PYTHON", raising=False)


@pytest.fixture(autouse=True)
def isolated_hub(tmp_path_factory, monkeypatch) -> Path:
    """An empty Hugging Face cache and lorakit cache, online, with no token: never the developer's own."""
    home = tmp_path_factory.mktemp("hf-home")
    monkeypatch.setenv("HF_HOME", str(home))
    monkeypatch.setenv("LORAKIT_CACHE_DIR", str(tmp_path_factory.mktemp("lorakit-cache")))
    for name in ("HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE", "HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_TOKEN",
                 "HUGGING_FACE_HUB_TOKEN", "HF_TOKEN_PATH"):
        monkeypatch.delenv(name, raising=False)
    # huggingface_hub reads its token file's path from the environment once, at import.
    constants = sys.modules.get("huggingface_hub.constants")
    if constants is not None:
        monkeypatch.setattr(constants, "HF_TOKEN_PATH", str(home / "token"))
        monkeypatch.setattr(constants, "HF_STORED_TOKENS_PATH", str(home / "stored_tokens"))
    return home


@pytest.fixture
def cached_sdxl(isolated_hub) -> Path:
    """The default base model and sd-scripts' tokenizers in the test's Hub cache, so nothing is downloaded."""
    return cache_sdxl(isolated_hub / "hub")


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner()


@pytest.fixture
def character_dataset(tmp_path: Path) -> Path:
    """A Kohya folder: 20 images in `10_sks dog` at three SDXL bucket sizes."""
    root = tmp_path / "dogs"
    make_folder(root / "10_sks dog", [(1024, 1024), (832, 1216), (1216, 832), (1024, 1024)] * 5)
    return root
