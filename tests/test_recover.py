"""Out-of-memory recovery (lorakit.run.recover) with the fake sd-scripts, which runs out of CUDA memory above a
batch size (FAKE_SDSCRIPTS_OOM_ABOVE_BATCH) with torch's own message, as sd-scripts does."""

from __future__ import annotations

import importlib.util
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import tomllib
from conftest import make_folder, make_plan
from hubgen import fake_checkpoint

from lorakit.cli.main import cli
from lorakit.machine.probe import choose_target
from lorakit.plan.assumptions import assumptions_for
from lorakit.plan.build import HISTORY_DIR
from lorakit.plan.estimate import setup_from_values, vram_gib
from lorakit.run.launch import LaunchOptions
from lorakit.run.process import Stopper
from lorakit.run.recover import RecoverOptions
from lorakit.run.recover import launch as launch_recovering

PRESET = """[preset]
kind = "user"
extends = ["sdxl-base"]
description = "batch 4 chosen by a preset, not by you: out-of-memory recovery may change it"

[values]
train_batch_size = { value = 4, from = "tests" }
"""


def oom_plan(runner, tmp_path: Path, *overrides: str) -> Path:
    """A plan whose batch 4 comes from a preset; max_train_steps=6 is yours, so the fit keeps batch 4."""
    (Path(os.environ["LORAKIT_PRESETS_DIR"]) / "batch4.toml").write_text(PRESET, encoding="utf-8")
    dataset = tmp_path / "robot data"
    if not dataset.exists():
        make_folder(dataset / "5_zk robot", [(1024, 1024)] * 4)
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


def plan_json(plan: Path) -> dict:
    return json.loads((plan / "plan.json").read_text(encoding="utf-8"))


def changes(attempt: dict) -> list[tuple]:
    return [(c["key"], c["old"], c["new"]) for c in attempt["changes"]]


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return "Z" not in Path(f"/proc/{pid}/stat").read_text().split(")")[-1][:3]


def test_out_of_memory_at_batch_4_finishes_at_batch_2_times_accumulation_2(runner, tmp_path, fake_trainer, monkeypatch):
    """The issue's "must show": launch exits 0, two attempts, the second 2 × 2, the plan's total steps done."""
    plan = oom_plan(runner, tmp_path)
    total = plan_json(plan)["total_steps"]
    monkeypatch.setenv("FAKE_SDSCRIPTS_OOM_ABOVE_BATCH", "2")
    result = launch(runner, plan)
    assert result.exit_code == 0, result.output
    data = record(plan)
    assert data["state"] == "succeeded" and data["steps_done"] == total == 6
    first, second = data["attempts"]
    assert (first["number"], first["state"], first["problem"]) == (1, "failed", "out-of-memory")
    assert (second["number"], second["state"]) == (2, "succeeded")
    assert changes(second) == [("train_batch_size", 4, 2), ("gradient_accumulation_steps", 1, 2)]
    assert "CUDA out of memory: recovering with attempt 2: train_batch_size 4 → 2" in result.output
    assert data["started"] == first["started"] and data["duration_s"] >= second["duration_s"]


def test_the_recovered_plan_is_a_revision_with_its_source_and_the_old_one_in_the_history(runner, tmp_path, fake_trainer,
                                                                                          monkeypatch):
    plan = oom_plan(runner, tmp_path)
    before = plan_json(plan)
    monkeypatch.setenv("FAKE_SDSCRIPTS_OOM_ABOVE_BATCH", "2")
    assert launch(runner, plan).exit_code == 0
    after = plan_json(plan)
    assert after["values"]["train_batch_size"]["source"] == "auto:oom-recovery"
    assert after["values"]["train_batch_size"]["replaced"][-1] == {"value": 4, "source": "preset:batch4"}
    assert after["values"]["learning_rate"] == before["values"]["learning_rate"]  # the recipe stays
    assert after["total_steps"] == before["total_steps"] and after["created"] != before["created"]
    config = (plan / "config.toml").read_text()
    assert "train_batch_size = 2" in config and "gradient_accumulation_steps = 2" in config
    kept = Path(record(plan)["attempts"][0]["plan_files"])
    assert kept.parent == plan / HISTORY_DIR and json.loads((kept / "plan.json").read_text())["created"] == before["created"]
    assert "train_batch_size = 4" in (kept / "config.toml").read_text()


def test_the_setup_that_ran_out_of_memory_is_over_the_budget_for_the_next_plan(runner, tmp_path, fake_trainer, monkeypatch):
    plan = oom_plan(runner, tmp_path)
    failed = setup_from_values(oom_values(plan))
    target = choose_target("rtx4090")
    assert vram_gib(failed, assumptions_for(target).overhead_gib) <= target.budget_gib  # it was chosen: it "fit"
    monkeypatch.setenv("FAKE_SDSCRIPTS_OOM_ABOVE_BATCH", "2")
    assert launch(runner, plan).exit_code == 0
    calibration = tomllib.loads(Path(os.environ["LORAKIT_CALIBRATION"]).read_text())
    point = calibration["gpus"]["rtx4090"]["out_of_memory"][0]
    assert point["setup"].startswith("batch 4 × accumulation 1, with gradient checkpointing, 1024×1024")
    assert vram_gib(failed, assumptions_for(target).overhead_gib) > target.budget_gib
    assert point["family"] == "sdxl"  # an SDXL run's point: FLUX plans for the card keep their own overhead
    assert assumptions_for(target, family="flux1").overhead_gib < assumptions_for(target).overhead_gib
    # and `lorakit calibrate` learns it again from run.json, e.g. for a calibration file made anew
    Path(os.environ["LORAKIT_CALIBRATION"]).unlink()
    assert runner.invoke(cli, ["calibrate", str(plan)]).exit_code == 0
    assert vram_gib(failed, assumptions_for(target).overhead_gib) > target.budget_gib


def oom_values(plan: Path):
    from lorakit.plan.build import load_plan

    return load_plan(plan).value_set


def test_a_recovery_that_keeps_the_step_count_resumes_from_the_newest_state(runner, tmp_path, fake_trainer, monkeypatch):
    plan = oom_plan(runner, tmp_path, "save_state=true", "save_every_n_steps=3")
    monkeypatch.setenv("FAKE_SDSCRIPTS_OOM_ABOVE_BATCH", "2")
    monkeypatch.setenv("FAKE_SDSCRIPTS_FAIL_AT", "4")  # after the state of step 3
    result = launch(runner, plan)
    assert result.exit_code == 0, result.output
    data = record(plan)
    state = str(plan / "output" / "robot data-step00000003-state")
    assert data["attempts"][1]["resumed_from"] == state and data["attempts"][1]["why"].startswith("resumed from")
    assert data["command"][-3:] == ["--resume", state, "--skip_until_initial_step"]
    assert (data["attempts"][0]["steps_done"], data["steps_done"], data["total_steps"]) == (3, 6, 6)
    assert not (plan / "previous").exists()  # one run, one record


def test_without_a_saved_state_the_next_attempt_starts_again_and_says_why(runner, tmp_path, fake_trainer, monkeypatch):
    plan = oom_plan(runner, tmp_path, "save_every_n_steps=3")  # a LoRA at step 3, but no state
    monkeypatch.setenv("FAKE_SDSCRIPTS_OOM_ABOVE_BATCH", "2")
    monkeypatch.setenv("FAKE_SDSCRIPTS_FAIL_AT", "4")
    assert launch(runner, plan).exit_code == 0
    why = record(plan)["attempts"][1]["why"]
    assert why.startswith("started again: the failed attempt saved no training state") and "moved to previous/" in why
    assert list((plan / "previous").glob("*/output/robot data-step00000003.safetensors"))
    assert (plan / "run.json").is_file() and not list((plan / "previous").glob("*/run.json"))


def test_recovery_stops_after_max_recoveries_with_a_verdict(runner, tmp_path, fake_trainer, monkeypatch):
    plan = oom_plan(runner, tmp_path, "gradient_checkpointing=true")
    monkeypatch.setenv("FAKE_SDSCRIPTS_OOM_ABOVE_BATCH", "0")  # not even batch 1 fits
    result = launch(runner, plan, "--max-recoveries", "1")
    assert result.exit_code == 1
    data = record(plan)
    assert data["state"] == "failed" and [a["state"] for a in data["attempts"]] == ["failed", "failed"]
    assert "Out-of-memory recovery stopped: it ran out of GPU memory in 2 attempts" in data["diagnosis"]
    assert "tried attempt 2: train_batch_size 4 → 2, gradient_accumulation_steps 1 → 2 (failed)" in data["diagnosis"]
    assert "--max-recoveries 3" in data["suggestion"] and "--recover quality" in data["suggestion"]


def test_when_only_your_own_values_are_left_recovery_names_them(runner, tmp_path, fake_trainer, monkeypatch):
    plan = make_plan(runner, tmp_path, "gradient_checkpointing=true")  # train_batch_size=4 is yours here
    monkeypatch.setenv("FAKE_SDSCRIPTS_OOM_ABOVE_BATCH", "2")
    result = launch(runner, plan)
    assert result.exit_code == 1
    data = record(plan)
    assert len(data["attempts"]) == 1
    assert "lorakit has no change left that it may make" in data["diagnosis"]
    assert "your own train_batch_size=4 (your --set)" in data["suggestion"]
    assert "--set train_batch_size=2 --set gradient_accumulation_steps=2" in data["suggestion"]
    assert plan_json(plan)["values"]["train_batch_size"]["value"] == 4  # yours: never changed


def test_no_recover_leaves_the_run_failed_as_before(runner, tmp_path, fake_trainer, monkeypatch):
    plan = oom_plan(runner, tmp_path)
    before = (plan / "plan.json").read_text()
    monkeypatch.setenv("FAKE_SDSCRIPTS_OOM_ABOVE_BATCH", "2")
    result = launch(runner, plan, "--no-recover")
    assert result.exit_code == 1
    data = record(plan)
    assert (data["state"], data["problem"], len(data["attempts"])) == ("failed", "out-of-memory", 1)
    assert "lorakit plan" in data["suggestion"]  # today's advice: the smaller plan's command
    assert (plan / "plan.json").read_text() == before and not (plan / HISTORY_DIR).exists()


@pytest.mark.parametrize(("setting", "env", "problem"), [
    (None, {"FAKE_SDSCRIPTS_FAIL": "nan"}, "nan-loss"),
    ("optimizer_type=Lion", {}, "missing-module"),
    (None, {"FAKE_SDSCRIPTS_FAIL": "crash"}, "crash"),
    (None, {"FAKE_SDSCRIPTS_DROP_ARGS": "config_file"}, "bad-arguments"),
])
def test_other_failures_are_never_recovered(runner, tmp_path, fake_trainer, monkeypatch, setting, env, problem):
    plan = oom_plan(runner, tmp_path, *([setting] if setting else []))
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    # Gate 4 would refuse the missing module and the unknown argument before the start: run past it to see the trainer's
    monkeypatch.setattr("lorakit.run.launch.run_doctor", doctor_without_errors)
    result = launch(runner, plan)
    assert result.exit_code == 1
    data = record(plan)
    assert (data["state"], data["problem"], len(data["attempts"])) == ("failed", problem, 1)
    assert not (plan / HISTORY_DIR).exists()


def doctor_without_errors(*args, **kwargs):
    from lorakit.run.doctor import run_doctor

    report = run_doctor(*args, **kwargs)
    report.findings = [f for f in report.findings if f.level != "error"]
    return report


def test_ctrl_c_while_re_planning_stops_the_run(runner, tmp_path, fake_trainer, monkeypatch):
    import lorakit.run.recover as recover_module

    plan = oom_plan(runner, tmp_path)
    monkeypatch.setenv("FAKE_SDSCRIPTS_OOM_ABOVE_BATCH", "2")
    stopper = Stopper()
    real = recover_module.revise

    def revise_and_press_ctrl_c(*args, **kwargs):
        stopper.stop()  # what stop_on_signals does on Ctrl-C while no trainer runs
        return real(*args, **kwargs)

    monkeypatch.setattr(recover_module, "revise", revise_and_press_ctrl_c)
    started = []
    result = launch_recovering(plan, LaunchOptions(tensorboard=False), RecoverOptions(), stopper=stopper,
                               on_event=lambda e: started.append(e) if type(e).__name__ == "Started" else None)
    assert result.state == "interrupted" == record(plan)["state"]
    assert len(started) == 1  # the second attempt never started
    assert "attempt 2 did not start" in result.diagnosis


def test_ctrl_c_during_the_second_attempt_stops_everything_with_130(runner, tmp_path, fake_trainer):
    plan = oom_plan(runner, tmp_path, "max_train_steps=100")
    env = os.environ | {"FAKE_SDSCRIPTS_OOM_ABOVE_BATCH": "2", "FAKE_SDSCRIPTS_STEP_SECONDS": "0.2"}
    process = subprocess.Popen([sys.executable, "-m", "lorakit", "launch", str(plan), "--plain", "--every", "0"],
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        data = record(plan) if (plan / "run.json").is_file() else {}
        if len(data.get("attempts", [])) == 2 and data["attempts"][1]["steps_done"] >= 1:
            break
        time.sleep(0.05)
    process.send_signal(signal.SIGINT)
    output, _ = process.communicate(timeout=60)
    assert process.returncode == 130, output
    data = record(plan)
    assert data["state"] == "interrupted" and [a["state"] for a in data["attempts"]] == ["failed", "interrupted"]
    assert not alive(data["pid"])


def test_runs_shows_the_attempts(runner, tmp_path, fake_trainer, monkeypatch):
    plan = oom_plan(runner, tmp_path)
    monkeypatch.setenv("FAKE_SDSCRIPTS_OOM_ABOVE_BATCH", "2")
    result = launch(runner, plan)
    assert "attempt 2: train_batch_size 4 → 2, gradient_accumulation_steps 1 → 2 — succeeded" in result.output
    table = runner.invoke(cli, ["runs", str(plan)], env={"COLUMNS": "250"}).output
    assert "succeeded (2 attempts)" in table
    listed = json.loads(runner.invoke(cli, ["runs", str(plan), "--json"]).output)
    assert [a["number"] for a in listed[0]["attempts"]] == [1, 2]


def test_batch_run_recovers_a_plan_and_status_and_report_show_the_attempts(runner, tmp_path, fake_trainer, monkeypatch):
    (Path(os.environ["LORAKIT_PRESETS_DIR"]) / "batch4.toml").write_text(PRESET, encoding="utf-8")
    dataset = tmp_path / "robot data"
    make_folder(dataset / "5_zk robot", [(1024, 1024)] * 4)
    model = tmp_path / "base.safetensors"
    model.write_bytes(fake_checkpoint())
    out = tmp_path / "batch"
    sets = [f"pretrained_model_name_or_path={model}", "max_train_steps=6", "mixed_precision=bf16", "sample_every_n_steps=none"]
    planned = runner.invoke(cli, ["batch", "plan", str(dataset), "--out", str(out), "--target-gpu", "rtx4090",
                                  "--preset", "batch4", "--sweep", "network_dim=8,16", *[w for s in sets for w in ("--set", s)]])
    assert planned.exit_code == 0, planned.output
    monkeypatch.setenv("FAKE_SDSCRIPTS_OOM_ABOVE_BATCH", "2")
    result = runner.invoke(cli, ["batch", "run", str(out)])
    assert result.exit_code == 0, result.output
    rows = json.loads(runner.invoke(cli, ["batch", "status", str(out), "--json"]).output)
    assert [(r["state"], r["attempts"], r["steps_done"]) for r in rows] == [("succeeded", 2, 6)] * 2
    assert rows[0]["recovered"] == "attempt 2: train_batch_size 4 → 2, gradient_accumulation_steps 1 → 2"
    csv_text = runner.invoke(cli, ["batch", "status", str(out), "--csv"]).output
    assert "2 (attempt 2: train_batch_size 4 → 2" in csv_text
    assert runner.invoke(cli, ["batch", "report", str(out)]).exit_code == 0
    assert "2 (attempt 2: train_batch_size 4 → 2" in (out / "report.html").read_text(encoding="utf-8")
    assert runner.invoke(cli, ["batch", "run", str(out)]).exit_code == 0  # rerun: the revised plans count as done
    assert "succeeded already" in runner.invoke(cli, ["batch", "run", str(out)]).output


def test_lorakit_logs_counts_a_resumed_start_from_its_saved_step(runner, tmp_path, fake_trainer, monkeypatch):
    plan = oom_plan(runner, tmp_path, "save_state=true", "save_every_n_steps=3")
    monkeypatch.setenv("FAKE_SDSCRIPTS_OOM_ABOVE_BATCH", "2")
    monkeypatch.setenv("FAKE_SDSCRIPTS_FAIL_AT", "4")
    assert launch(runner, plan).exit_code == 0
    # one log, two starts: steps 1-3 at batch 4, then "skipping 3 steps" and the bar's 1/3..3/3
    report = json.loads(runner.invoke(cli, ["logs", str(plan / "logs" / "train.log"), "--json"]).output)
    assert (report["steps_done"], report["total_steps"]) == (6, 6)


@pytest.mark.skipif(importlib.util.find_spec("accelerate") is None or importlib.util.find_spec("torch") is None,
                    reason="needs accelerate and torch in this Python")
def test_a_recovery_through_the_real_accelerate_launch(runner, tmp_path, fake_trainer, monkeypatch):
    monkeypatch.delenv("PYTHONPATH")
    plan = oom_plan(runner, tmp_path)
    monkeypatch.setenv("FAKE_SDSCRIPTS_OOM_ABOVE_BATCH", "2")
    result = launch(runner, plan)
    assert result.exit_code == 0, result.output
    data = record(plan)
    assert (data["state"], data["steps_done"], len(data["attempts"])) == ("succeeded", 6, 2)
    log = (plan / "logs" / "train.log").read_text(encoding="utf-8")
    assert "torch.OutOfMemoryError: CUDA out of memory" in log and "accelerator device: cpu" in log


def test_recover_quality_may_lower_quality_and_says_so_loudly(runner, tmp_path, fake_trainer, monkeypatch):
    plan = make_plan(runner, tmp_path, "gradient_checkpointing=true")  # batch 4 is yours: only quality is left
    monkeypatch.setenv("FAKE_SDSCRIPTS_OOM_ABOVE_BATCH", "2")  # and the fake keeps running out at batch 4
    result = launch(runner, plan, "--recover", "quality", "--max-recoveries", "1")
    assert result.exit_code == 1
    data = record(plan)
    second = data["attempts"][1]
    assert second["quality"] is True and second["changes"]
    assert "QUALITY LOWERED by out-of-memory recovery" in result.output
    assert any(w.startswith("QUALITY LOWERED") for w in data["warnings"])
    assert plan_json(plan)["values"]["train_batch_size"]["source"] == "set"  # yours stays


def test_no_recover_and_recover_quality_contradict_each_other(runner, tmp_path, fake_trainer):
    plan = oom_plan(runner, tmp_path)
    result = launch(runner, plan, "--no-recover", "--recover", "quality")
    assert result.exit_code == 2 and "contradict each other" in result.output
    assert not (plan / "run.json").exists()


def test_only_cuda_out_of_memory_is_recoverable():
    from lorakit.run.record import RunRecord
    from lorakit.run.recover import recoverable

    def failed(problem: str, diagnosis: str) -> RunRecord:
        return RunRecord(state="failed", plan="p", plan_dir="/p", problem=problem, diagnosis=diagnosis)

    assert recoverable(failed("out-of-memory", "the GPU ran out of memory: torch.OutOfMemoryError: CUDA out of memory"))
    assert not recoverable(failed("out-of-memory", "the machine ran out of RAM: DefaultCPUAllocator: can't allocate memory"))
    assert not recoverable(failed("killed", "the trainer was killed by SIGKILL, usually the kernel's out-of-memory killer"))


def test_a_recovery_that_changes_the_step_count_starts_again_although_a_state_exists(runner, tmp_path, fake_trainer,
                                                                                    monkeypatch):
    (Path(os.environ["LORAKIT_PRESETS_DIR"]) / "batch4.toml").write_text(PRESET, encoding="utf-8")
    dataset = tmp_path / "buckets"
    for folder, size in (("a", (1024, 1024)), ("b", (832, 1216)), ("c", (1216, 832))):  # one image per bucket
        make_folder(dataset / f"1_zk {folder}", [size])
    model = tmp_path / "base.safetensors"
    model.write_bytes(fake_checkpoint())
    sets = [f"pretrained_model_name_or_path={model}", "max_train_epochs=4", "mixed_precision=bf16",
            "sample_every_n_steps=none", "save_state=true", "save_every_n_steps=1"]
    out = tmp_path / "plan"
    # --fit off keeps the preset's batch 4: three buckets of one image are 3 steps an epoch at batch 4, 2 at 2 × 2
    planned = runner.invoke(cli, ["plan", str(dataset), "--preset", "batch4", "--target-gpu", "rtx4090", "--fit", "off",
                                  "--out", str(out), *[w for s in sets for w in ("--set", s)]])
    assert planned.exit_code == 0, planned.output
    before = plan_json(out)["total_steps"]
    monkeypatch.setenv("FAKE_SDSCRIPTS_OOM_ABOVE_BATCH", "2")
    launch(runner, out)
    data = record(out)
    second = data["attempts"][1]
    assert second["resumed_from"] is None and plan_json(out)["total_steps"] != before
    assert second["why"].startswith(f"started again: the change alters the step count ({before} → ")


def test_a_notch_gate_3_still_finds_over_budget_gets_the_next_one_added(monkeypatch):
    from types import SimpleNamespace

    import lorakit.run.recover as recover_module
    from lorakit.plan.revise import Notch

    over = SimpleNamespace(level="error", code="hardware/vram-over-budget", message="over by 0.1 GiB")
    other = SimpleNamespace(level="error", code="dataset/no-steps", message="no images")
    notches = [Notch("a", (("train_batch_size", 2, ""),)), Notch("b", (("gradient_checkpointing", True, ""),))]

    def revise_with(findings_by_count):
        return lambda plan, settings, note: SimpleNamespace(plan=SimpleNamespace(findings=findings_by_count[len(settings)]))

    monkeypatch.setattr(recover_module, "revise", revise_with({1: [over], 2: []}))
    _, chosen = recover_module._first_that_passes(None, notches, 2, RecoverOptions())
    assert [n.name for n in chosen] == ["a", "b"]
    monkeypatch.setattr(recover_module, "revise", revise_with({1: [over, other]}))
    with pytest.raises(recover_module.GiveUp, match="does not pass the gates: dataset/no-steps: no images"):
        recover_module._first_that_passes(None, notches, 2, RecoverOptions())


@pytest.mark.parametrize(("batch", "accumulation", "expected"), [(4, 1, (2, 2)), (6, 1, (3, 2)), (3, 1, (1, 3)),
                                                                  (4, 2, (2, 4)), (1, 1, None)])
def test_the_batch_split_keeps_the_images_per_optimizer_step(batch, accumulation, expected):
    from lorakit.config.values import Values
    from lorakit.plan.revise import batch_split

    values = Values()
    values.set("train_batch_size", batch, "preset:x")
    values.set("gradient_accumulation_steps", accumulation, "preset:x")
    split = batch_split(values)
    assert (tuple(value for _, value, _ in split.settings) if split else None) == expected


def test_the_notches_keep_the_recipe_first_and_never_touch_your_values():
    from lorakit.config.values import Values
    from lorakit.plan.revise import notches

    values = Values()
    values.set("resolution", "1024,1024", "default")
    values.set("mixed_precision", "bf16", "preset:x")
    values.set("train_batch_size", 4, "preset:x")
    values.set("gradient_checkpointing", False, "set")
    values.set("network_dim", 32, "preset:x")
    names = [n.name for n in notches(values, quality=False)]
    assert names[0] == "the same batch through gradient accumulation" and "gradient checkpointing" not in names
    assert names[-1] == "SDPA attention" and "rank 16, alpha 1" not in names
    with_quality = notches(values, quality=True)
    assert [n.name for n in with_quality][:len(names)] == names and all(n.quality for n in with_quality[len(names):])
    assert "rank 16, alpha 1" in [n.name for n in with_quality]


def test_a_flux_plan_recovers_by_swapping_blocks_before_anything_that_changes_the_recipe():
    from lorakit.config.presets import PresetRegistry
    from lorakit.config.resolve import resolve
    from lorakit.plan.revise import notches

    values = resolve(PresetRegistry(), ["flux1-dev", "character"], []).values
    values.set("blocks_to_swap", 10, "auto:fit-speed")
    free = notches(values, quality=False)
    swap = next(n for n in free if n.keys() == ["blocks_to_swap"])
    assert swap.settings[0][1] == 18 and not swap.quality
    assert not {"fp8_base", "optimizer_type", "network_dim", "resolution"} & {k for n in free for k in n.keys()}
    values.set("blocks_to_swap", 35, "auto:fit-speed")
    assert not [n for n in notches(values, quality=False) if n.keys() == ["blocks_to_swap"]]


def test_a_calibration_file_lorakit_cannot_write_does_not_stop_the_recovery(runner, tmp_path, fake_trainer, monkeypatch):
    blocker = tmp_path / "not a folder"
    blocker.write_text("a file where the calibration folder would be", encoding="utf-8")
    monkeypatch.setenv("LORAKIT_CALIBRATION", str(blocker / "calibration.toml"))
    plan = oom_plan(runner, tmp_path)
    monkeypatch.setenv("FAKE_SDSCRIPTS_OOM_ABOVE_BATCH", "2")
    result = launch(runner, plan)
    assert result.exit_code == 0, result.output
    data = record(plan)
    assert data["state"] == "succeeded" and len(data["attempts"]) == 2
    assert any("was not recorded in the calibration file" in w for w in data["warnings"])
    assert blocker.read_text(encoding="utf-8") == "a file where the calibration folder would be"
