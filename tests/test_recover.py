"""Out-of-memory recovery (lorakit.run.recover) with the fake sd-scripts that runs out of memory above a batch size."""

from __future__ import annotations

import json
import os
from pathlib import Path

from conftest import make_folder
from hubgen import fake_checkpoint

from lorakit.cli.main import cli

PRESET = """[preset]
kind = "user"
extends = ["sdxl-base"]
description = "batch 4 chosen by a preset, not by you: out-of-memory recovery may change it"

[values]
train_batch_size = { value = 4, from = "tests" }
"""


def oom_plan(runner, tmp_path: Path, *overrides: str, images: int = 4) -> Path:
    """A plan whose batch 4 comes from a preset; 6 steps (max_train_steps is yours, so the batch stays at 4)."""
    (Path(os.environ["LORAKIT_PRESETS_DIR"]) / "batch4.toml").write_text(PRESET, encoding="utf-8")
    dataset = tmp_path / "robot data"
    if not dataset.exists():
        make_folder(dataset / "5_zk robot", [(1024, 1024)] * images)
    model = tmp_path / "base.safetensors"
    model.write_bytes(fake_checkpoint())
    out = tmp_path / "plan"
    sets = [f"pretrained_model_name_or_path={model}", "max_train_steps=6", "mixed_precision=bf16",
            "sample_every_n_steps=none", *overrides]
    result = runner.invoke(cli, ["plan", str(dataset), "--preset", "batch4", "--target-gpu", "rtx4090", "--out", str(out),
                                 *[word for s in sets for word in ("--set", s)]])
    assert result.exit_code == 0, result.output
    return out


def launch(runner, plan: Path, *args: str):
    return runner.invoke(cli, ["launch", str(plan), "--every", "0", *args])


def record(plan: Path) -> dict:
    return json.loads((plan / "run.json").read_text(encoding="utf-8"))


def test_must_show_out_of_memory_at_batch_4_finishes_at_batch_2_times_accumulation_2(runner, tmp_path, fake_trainer, monkeypatch):
    plan = oom_plan(runner, tmp_path)
    planned = json.loads((plan / "plan.json").read_text())
    assert planned["values"]["train_batch_size"]["value"] == 4
    monkeypatch.setenv("FAKE_SDSCRIPTS_OOM_ABOVE_BATCH", "2")
    result = launch(runner, plan)
    assert result.exit_code == 0, result.output
    data = record(plan)
    print(result.output)
    print(json.dumps(data["attempts"], indent=1))
    assert data["state"] == "succeeded"
    assert [a["number"] for a in data["attempts"]] == [1, 2]
    assert data["steps_done"] == planned["total_steps"] == 6
