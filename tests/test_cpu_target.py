"""`--target-gpu cpu`: a smoke run planned honestly for this machine's CPU, and launched with accelerate's --cpu."""

from __future__ import annotations

import json
from collections import namedtuple
from pathlib import Path

import pytest
from conftest import make_folder

from lorakit.cli.main import cli

GIB = 1024**3
Memory = namedtuple("Memory", "total available")


@pytest.fixture
def ram(monkeypatch):
    """This machine's RAM as the probe reads it (psutil), so budgets do not depend on the test machine."""
    def set_ram(gib: float) -> None:
        monkeypatch.setattr("psutil.virtual_memory", lambda: Memory(int(gib * GIB), int(gib * GIB)))
    set_ram(64)
    return set_ram


def plan_cpu(runner, dataset: Path, out: Path, *args: str):
    return runner.invoke(cli, ["plan", str(dataset), "--target-gpu", "cpu", "--out", str(out), *args])


def test_a_machine_without_gpu_offers_the_cpu_target(runner, character_dataset, tmp_path, monkeypatch):
    monkeypatch.setenv("LORAKIT_FAKE_GPU", "none")
    result = runner.invoke(cli, ["plan", str(character_dataset), "--out", str(tmp_path / "p")])
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert "--target-gpu rtx4090" in result.output and "--target-gpu cpu" in result.output


def test_the_cpu_plan_is_a_smoke_run_with_its_sources(runner, character_dataset, tmp_path, ram, monkeypatch):
    monkeypatch.setenv("LORAKIT_FAKE_GPU", "none")
    result = plan_cpu(runner, character_dataset, tmp_path / "p", "--preset", "character")
    assert result.exit_code == 0, result.output
    assert "SMOKE RUN of 10 steps" in result.output and "trains on the CPU (accelerate --cpu)" in result.output
    plan = json.loads((tmp_path / "p" / "plan.json").read_text())
    values = plan["values"]
    for key, value in {"max_train_steps": 10, "resolution": "512,512"}.items():
        assert (values[key]["value"], values[key]["source"]) == (value, "auto:cpu-smoke")
    assert values["train_batch_size"]["value"] == 1
    assert values["max_train_epochs"]["value"] is None  # the character preset's epochs would win over the steps
    assert plan["total_steps"] == 10 and plan["sample_steps"] == []
    assert not (tmp_path / "p" / "sample_prompts.txt").exists()
    assert values["mixed_precision"]["value"] == "bf16"
    assert plan["target"]["device"] == "cpu" and plan["target"]["source"] == "cpu"
    assert plan["vram"]["budget_gib"] == pytest.approx(64 * 0.8) and plan["vram"]["estimate_gib"] >= 13.5
    assert plan["time"]["seconds_per_step"] > 0 and "rough CPU figure" in plan["time"]["efficiency_source"]
    assert "--cpu" in (tmp_path / "p" / "launch.sh").read_text()


def test_the_cpu_eta_scales_the_measured_step_by_pixels_and_cores():
    from lorakit.plan.cpu import seconds_per_step
    from lorakit.plan.estimate import TrainingSetup

    assert seconds_per_step(TrainingSetup(width=256, height=256, mixed_precision="bf16"), 2) == pytest.approx(3.7)
    assert seconds_per_step(TrainingSetup(width=512, height=512, mixed_precision="bf16"), 4) == pytest.approx(7.4)
    assert seconds_per_step(TrainingSetup(width=256, height=256, mixed_precision="no"), 2) == pytest.approx(12.5)


def test_a_presets_fp16_becomes_bf16_on_the_cpu(runner, character_dataset, tmp_path, ram):
    result = plan_cpu(runner, character_dataset, tmp_path / "p", "--preset", "lowvram-8gb")
    assert result.exit_code == 0, result.output
    values = json.loads((tmp_path / "p" / "plan.json").read_text())["values"]
    assert (values["mixed_precision"]["value"], values["mixed_precision"]["source"]) == ("bf16", "auto:cpu-smoke")


def test_fp16_you_set_is_refused_on_the_cpu(runner, character_dataset, tmp_path, ram):
    result = plan_cpu(runner, character_dataset, tmp_path / "p", "--set", "mixed_precision=fp16",
                      "--set", "no_half_vae=true")
    assert result.exit_code == 1 and "hardware/fp16-on-cpu" in result.output


def test_values_you_set_are_kept_on_the_cpu(runner, character_dataset, tmp_path, ram):
    result = plan_cpu(runner, character_dataset, tmp_path / "p", "--set", "max_train_steps=3", "--set", "resolution=768")
    assert result.exit_code == 0, result.output
    values = json.loads((tmp_path / "p" / "plan.json").read_text())["values"]
    assert (values["max_train_steps"]["value"], values["max_train_steps"]["source"]) == (3, "set")
    assert values["resolution"]["value"] == "768,768"


def test_a_machine_with_too_little_ram_fails_gate_3(runner, character_dataset, tmp_path, ram):
    ram(8)
    result = plan_cpu(runner, character_dataset, tmp_path / "p")
    assert result.exit_code == 1 and "hardware/ram-over-budget" in result.output
    assert "6.4 GiB budget (8.0 GiB RAM" in result.output


def test_launching_a_cpu_plan_passes_accelerates_cpu_even_with_a_gpu_present(runner, tmp_path, ram, fake_trainer,
                                                                             monkeypatch):
    from hubgen import fake_checkpoint

    dataset = tmp_path / "robot"
    make_folder(dataset / "5_zk robot", [(512, 512)] * 4)
    model = tmp_path / "base.safetensors"
    model.write_bytes(fake_checkpoint())
    result = plan_cpu(runner, dataset, tmp_path / "p", "--set", f"pretrained_model_name_or_path={model}")
    assert result.exit_code == 0, result.output
    monkeypatch.setenv("LORAKIT_FAKE_GPU", "rtx4090")  # the doctor sees a CUDA device; the plan is for the CPU
    dry = runner.invoke(cli, ["launch", str(tmp_path / "p"), "--dry-run"])
    assert dry.exit_code == 0, dry.output
    assert "--cpu" in dry.output.split()
    run = runner.invoke(cli, ["launch", str(tmp_path / "p"), "--plain"])
    assert run.exit_code == 0, run.output
    record = json.loads((tmp_path / "p" / "run.json").read_text())
    assert record["cpu"] is True and "--cpu" in record["command"] and record["steps_done"] == 10
