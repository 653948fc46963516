"""Shared test helpers: tiny real PNG files, dataset folders, and an isolated preset folder."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from click.testing import CliRunner
from hubgen import cache_sdxl, fake_checkpoint
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


FAKE_SD_SCRIPTS = REPO / "tests" / "fake_sdscripts"
FAKE_TRAINER_ENV = REPO / "tests" / "fake_trainer_env"


@pytest.fixture
def fake_trainer(monkeypatch, cached_sdxl) -> Path:
    """The fake sd-scripts checkout, started through a fake accelerate and answering the doctor with a fake torch.

    No CUDA (LORAKIT_FAKE_GPU=none), so launches pass --cpu; FAKE_SDSCRIPTS_* variables steer the fake. sd-scripts'
    tokenizers (and the default base model) are in the test's Hub cache, so launch downloads nothing.
    """
    import os

    monkeypatch.setenv("LORAKIT_SD_SCRIPTS", str(FAKE_SD_SCRIPTS))
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(FAKE_TRAINER_ENV), os.environ.get("PYTHONPATH")])))
    monkeypatch.setenv("LORAKIT_FAKE_GPU", "none")
    for key in [k for k in os.environ if k.startswith("FAKE_SDSCRIPTS_")]:
        monkeypatch.delenv(key)
    return FAKE_SD_SCRIPTS


def make_plan(runner, tmp_path: Path, *overrides: str, out: Path | None = None, images: int = 4) -> Path:
    """A small plan for the fake trainer: 4 images × 5 repeats at batch 4 = 5 steps per epoch, 6 steps in all."""
    from lorakit.cli.main import cli

    dataset = tmp_path / "robot data"
    if not dataset.exists():
        make_folder(dataset / "5_zk robot", [(1024, 1024)] * images)
    model = tmp_path / "base model ü.safetensors"
    model.write_bytes(fake_checkpoint())
    out = out or tmp_path / "plan"
    sets = [f"pretrained_model_name_or_path={model}", "max_train_steps=6", "train_batch_size=4", "mixed_precision=bf16",
            "sample_every_n_steps=none", *overrides]
    result = runner.invoke(cli, ["plan", str(dataset), "--target-gpu", "rtx4090", "--out", str(out),
                                 *[word for s in sets for word in ("--set", s)]])
    assert result.exit_code == 0, result.output
    return out


def builtin_preset_cases() -> list[str]:
    """Every built-in preset on the default family's base (base presets alone), then every preset made for each
    other family on that family's base: `flux1-dev+character` (split on "+" for PlanRequest.presets)."""
    from lorakit.config.family import DEFAULT_FAMILY, FAMILIES
    from lorakit.config.presets import PresetRegistry

    registry = PresetRegistry(include_user_dir=False)
    builtin = [registry.get(name) for name in registry.names() if registry.get(name).builtin]
    cases = [p.name for p in builtin if p.family == DEFAULT_FAMILY]
    for family in FAMILIES.values():
        if family.name == DEFAULT_FAMILY:
            continue
        for p in builtin:
            if p.header.kind == "base":
                cases += [p.name] if p.header.family == family.name else []
            elif p.made_for(family.name):
                cases.append(f"{family.base_preset}+{p.name}")
    return cases
