"""Shared test helpers: tiny real PNG files, dataset folders, and an isolated preset folder."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

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
    """Keep the developer's own ~/.config/lorakit presets and fake GPUs out of every test."""
    monkeypatch.setenv("LORAKIT_PRESETS_DIR", str(tmp_path_factory.mktemp("user-presets")))
    monkeypatch.delenv("LORAKIT_FAKE_GPU", raising=False)
    monkeypatch.delenv("LORAKIT_SD_SCRIPTS", raising=False)
    monkeypatch.delenv("LORAKIT_PYTHON", raising=False)


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
def fake_trainer(monkeypatch) -> Path:
    """The fake sd-scripts checkout, started through a fake accelerate and answering the doctor with a fake torch.

    No CUDA (LORAKIT_FAKE_GPU=none), so launches pass --cpu; FAKE_SDSCRIPTS_* variables steer the fake.
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
    from lorakit.cli import cli

    dataset = tmp_path / "robot data"
    if not dataset.exists():
        make_folder(dataset / "5_zk robot", [(1024, 1024)] * images)
    model = tmp_path / "base model ü.safetensors"
    model.write_bytes(b"not really a model")
    out = out or tmp_path / "plan"
    sets = [f"pretrained_model_name_or_path={model}", "max_train_steps=6", "mixed_precision=bf16",
            "sample_every_n_steps=none", *overrides]
    result = runner.invoke(cli, ["plan", str(dataset), "--target-gpu", "rtx4090", "--out", str(out),
                                 *[word for s in sets for word in ("--set", s)]])
    assert result.exit_code == 0, result.output
    return out
