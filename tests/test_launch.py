"""`lorakit launch` end to end with the fake sd-scripts: the record, the log, TensorBoard, failures, stopping."""

from __future__ import annotations

import errno
import hashlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from conftest import make_plan
from hubgen import fake_checkpoint

from lorakit.cli.main import cli
from lorakit.run.launch import LaunchOptions, run_plan
from lorakit.run.process import Stopper
from lorakit.watch.events import GpuSample, Step


def launch(runner, plan: Path, *args: str):
    return runner.invoke(cli, ["launch", str(plan), "--every", "0", *args])


def record(plan: Path) -> dict:
    return json.loads((plan / "run.json").read_text(encoding="utf-8"))


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return Path(f"/proc/{pid}").exists() and "Z" not in Path(f"/proc/{pid}/stat").read_text().split(")")[-1][:3]


def has_open(pid: int, path: Path) -> bool:
    """Whether process `pid` has the file `path` open."""
    wanted = os.path.realpath(path)
    try:
        fds = list(Path(f"/proc/{pid}/fd").iterdir())
    except OSError:
        return False
    for fd in fds:
        try:
            if os.readlink(fd) == wanted:
                return True
        except OSError:  # closed while we looked
            pass
    return False


def stopping_quickly(**options) -> LaunchOptions:
    """Options for tests that stop runs: what outlives the trainer gets 0.1 s, not the 2 s a real run gives it."""
    return LaunchOptions(tensorboard=False, pipe_grace_s=0.1, group_grace_s=0.1, **options)


def test_a_successful_run_is_recorded_truly(runner, tmp_path, fake_trainer):
    plan = make_plan(runner, tmp_path, "save_every_n_steps=3")
    result = launch(runner, plan)
    assert result.exit_code == 0, result.output
    assert "succeeded" in result.output and "model saved." in result.output
    data = record(plan)
    assert (data["state"], data["exit_code"], data["problem"], data["diagnosis"]) == ("succeeded", 0, None, None)
    assert data["steps_done"] == data["total_steps"] == data["planned_steps"] == 6
    assert data["last_loss"] == data["min_loss"] == 0.241  # the fake's avr_loss after 6 steps
    assert data["seconds_per_step"] > 0 and data["it_per_s"] == pytest.approx(1 / data["seconds_per_step"])
    assert [Path(o["path"]).name for o in data["outputs"]] == [
        "robot data-step00000003.safetensors", "robot data-000001.safetensors", "robot data-step00000006.safetensors",
        "robot data.safetensors"]
    final = data["outputs"][-1]
    assert final["bytes"] == Path(final["path"]).stat().st_size
    assert final["metadata"]["ss_output_name"] == "robot data" and final["metadata"]["ss_steps"] == "6"
    assert data["command"][:4] == [sys.executable, "-m", "accelerate.commands.launch", "--cpu"]
    assert data["command"][-2:] == ["--config_file", "config.toml"]  # the trainer runs in the plan folder
    assert data["plan_dir"] == str(plan.resolve())
    assert data["gpu"] == "cpu" and data["cpu"] is True and data["sd_scripts_commit"] == "unknown"
    assert data["sd_scripts_checked_by"] == "sd-scripts commit unknown's own parser (196 arguments)"  # Gate 4 asked it
    assert isinstance(data["pid"], int) and data["started"] <= data["ended"]
    assert data["environment"]["PYTHONUNBUFFERED"] == "1"
    assert data["base_model"] == f"{tmp_path / 'base model ü.safetensors'}: local file (768 bytes)"
    assert data["models"]["base"]["sha256"] == hashlib.sha256(fake_checkpoint()).hexdigest()
    log = (plan / "logs" / "train.log").read_bytes().decode("utf-8")  # raw: the bar's \r kept
    assert "\r" in log and "running training / 学習開始" in log and "model saved." in log


def test_tensorboard_gets_lorakit_series_and_the_plan_as_hparams(runner, tmp_path, fake_trainer):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    plan = make_plan(runner, tmp_path)
    assert launch(runner, plan).exit_code == 0
    data = record(plan)
    assert Path(data["tensorboard"]).parent.parent == plan / "tensorboard"
    events = EventAccumulator(data["tensorboard"])
    events.Reload()
    assert [(s.step, round(s.value, 3)) for s in events.Scalars("train/avr_loss")][-1] == (6, 0.241)
    assert {"train/it_per_s", "train/epoch"} <= set(events.Tags()["scalars"])
    assert "_hparams_/session_start_info" in events.PluginTagToContent("hparams")
    config = (plan / "config.toml").read_text()
    # sd-scripts' own events beside, relative to the plan folder the trainer starts in
    assert 'logging_dir = "tensorboard/sd-scripts"' in config


def test_peak_gpu_memory_comes_from_the_monitor(runner, tmp_path, fake_trainer):
    class FakeMonitor:
        def __init__(self):
            self.readings = iter([10.5, 12.25, 11.0])

        def sample(self):
            value = next(self.readings, 11.0)
            return GpuSample(value, 97.0)

        def close(self):
            pass

    plan = make_plan(runner, tmp_path)
    os.environ["FAKE_SDSCRIPTS_STEP_SECONDS"] = "0.05"
    seen = []
    result = run_plan(plan, LaunchOptions(gpu_every_s=0.0, tensorboard=False), on_event=seen.append, monitor=FakeMonitor())
    assert result.state == "succeeded"
    assert result.peak_vram_gib == 12.25 == record(plan)["peak_vram_gib"]
    assert any(isinstance(e, GpuSample) for e in seen)


def test_dry_run_prints_the_command_and_environment_and_starts_nothing(runner, tmp_path, fake_trainer):
    plan = make_plan(runner, tmp_path)
    result = launch(runner, plan, "--dry-run")
    assert result.exit_code == 0, result.output
    assert "PYTHONUNBUFFERED=1" in result.output and "COLUMNS=200" in result.output
    assert "accelerate.commands.launch" in result.output and "--cpu" in result.output
    assert "NO CUDA DEVICE" in result.output
    assert not (plan / "run.json").exists() and not (plan / "logs").exists()


def test_multi_gpu_and_multi_node_flags_come_from_the_plan(runner, tmp_path, fake_trainer, monkeypatch):
    monkeypatch.setenv("LORAKIT_FAKE_GPU", "rtx4090,rtx4090")
    plan = make_plan(runner, tmp_path, "num_processes=2", "gpu_ids=0,1", "num_machines=2", "machine_rank=1",
                     "main_process_ip=10.0.0.1", "main_process_port=29500")
    text = " ".join(launch(runner, plan, "--dry-run").output.split())
    for flags in ("--multi_gpu", "--num_processes 2", "--num_machines 2", "--gpu_ids 0,1", "--machine_rank 1",
                  "--main_process_ip 10.0.0.1", "--main_process_port 29500", "--num_cpu_threads_per_process 1"):
        assert flags in text
    assert "--cpu" not in text


def test_gpus_option_picks_the_cards(runner, tmp_path, fake_trainer, monkeypatch):
    monkeypatch.setenv("LORAKIT_FAKE_GPU", "rtx4090,rtx4090")
    plan = make_plan(runner, tmp_path)
    text = " ".join(launch(runner, plan, "--dry-run", "--gpus", "1").output.split())
    assert "--gpu_ids 1" in text and "--cpu" not in text


@pytest.mark.parametrize(("fail", "problem", "advice"), [
    ("oom", "out-of-memory", "--set gradient_checkpointing"),
    ("crash", "crash", "logs/train.log"),
    ("killed", "killed", "out-of-memory killer"),
    ("nan", "nan-loss", "--set learning_rate=5e-05"),
])
def test_failures_get_a_diagnosis_and_a_next_step(runner, tmp_path, fake_trainer, monkeypatch, fail, problem, advice):
    plan = make_plan(runner, tmp_path, "gradient_checkpointing=false", "train_batch_size=1")
    monkeypatch.setenv("FAKE_SDSCRIPTS_FAIL", fail)
    result = launch(runner, plan)
    assert result.exit_code == 1
    assert "training failed" in result.output and "Last lines of the trainer's output" in result.output
    assert "Traceback (most recent call last)" not in result.output.split("Last lines")[0]
    data = record(plan)
    assert (data["state"], data["problem"]) == ("failed", problem)
    assert advice in data["diagnosis"] + " " + data["suggestion"]
    assert data["steps_done"] >= 1


def test_exit_code_zero_without_a_lora_file_is_a_failure(runner, tmp_path, fake_trainer, monkeypatch):
    plan = make_plan(runner, tmp_path)
    monkeypatch.setenv("FAKE_SDSCRIPTS_NO_OUTPUT", "1")
    assert launch(runner, plan).exit_code == 1
    data = record(plan)
    assert (data["state"], data["exit_code"], data["problem"]) == ("failed", 0, "no-output")


def test_no_data_found_exits_zero_and_is_still_a_failure(runner, tmp_path, fake_trainer):
    plan = make_plan(runner, tmp_path)
    for image in (tmp_path / "robot data" / "5_zk robot").glob("*.png"):
        image.unlink()
    assert launch(runner, plan).exit_code == 1
    data = record(plan)
    assert (data["exit_code"], data["problem"]) == (0, "no-data")
    assert "lorakit dataset check" in data["suggestion"]


def test_a_missing_optimizer_package_stops_the_launch_before_the_start(runner, tmp_path, fake_trainer):
    plan = make_plan(runner, tmp_path, "optimizer_type=Lion", "learning_rate=3e-5")
    result = launch(runner, plan)
    assert result.exit_code == 1 and "the trainer was not started" in result.output
    assert "optimizer_type = Lion" in result.output
    assert f"{sys.executable} -m pip install lion-pytorch" in result.output
    assert not (plan / "run.json").exists()


def test_an_sd_scripts_without_lorakits_arguments_is_refused_before_the_start(runner, tmp_path, fake_trainer, monkeypatch):
    plan = make_plan(runner, tmp_path)
    monkeypatch.setenv("FAKE_SDSCRIPTS_DROP_ARGS", "config_file")  # its own parser, asked by Gate 4, lacks it
    result = launch(runner, plan)
    assert result.exit_code == 1 and "the trainer was not started" in result.output
    assert "env/unknown-argument" in result.output and "--config_file" in result.output
    assert "checkout 48d368fa" in " ".join(result.output.split())
    assert not (plan / "run.json").exists()


def test_a_different_step_count_than_planned_is_warned_about(runner, tmp_path, fake_trainer, monkeypatch):
    plan = make_plan(runner, tmp_path)
    monkeypatch.setenv("FAKE_SDSCRIPTS_EXTRA_STEPS", "2")
    result = launch(runner, plan)
    assert result.exit_code == 0
    assert "total steps 8 (plan: 6)" in " ".join(result.output.split())
    assert any("total steps 8 (plan: 6)" in w for w in record(plan)["warnings"])


def test_outputs_of_an_earlier_run_are_never_trained_over(runner, tmp_path, fake_trainer):
    plan = make_plan(runner, tmp_path, "save_state=true")
    assert launch(runner, plan).exit_code == 0
    before = {p.name: p.stat().st_mtime_ns for p in (plan / "output").iterdir()}
    again = launch(runner, plan)
    assert again.exit_code == 2
    assert "already has the outputs" in again.output and "--resume" in again.output and "--fresh" in again.output
    assert {p.name: p.stat().st_mtime_ns for p in (plan / "output").iterdir()} == before


def test_fresh_start_keeps_the_old_outputs_aside(runner, tmp_path, fake_trainer):
    plan = make_plan(runner, tmp_path)
    assert launch(runner, plan).exit_code == 0
    first = record(plan)
    assert launch(runner, plan, "--fresh").exit_code == 0
    (kept,) = (plan / "previous").iterdir()
    assert json.loads((kept / "run.json").read_text())["started"] == first["started"]
    assert (kept / "output" / "robot data.safetensors").is_file() and (kept / "train.log").is_file()
    assert record(plan)["pid"] != first["pid"]
    runs = json.loads(runner.invoke(cli, ["runs", str(plan), "--json"]).output)
    assert [r["state"] for r in runs] == ["succeeded", "succeeded"]


def test_resume_continues_from_the_newest_state(runner, tmp_path, fake_trainer, monkeypatch):
    plan = make_plan(runner, tmp_path, "save_state=true", "save_every_n_steps=2")
    monkeypatch.setenv("FAKE_SDSCRIPTS_FAIL", "crash")
    monkeypatch.setenv("FAKE_SDSCRIPTS_FAIL_AT", "5")  # after the state of step 4
    assert launch(runner, plan).exit_code == 1
    monkeypatch.delenv("FAKE_SDSCRIPTS_FAIL")
    result = launch(runner, plan, "--resume")
    assert result.exit_code == 0, result.output
    data = record(plan)
    assert data["resumed_from"] == str(plan / "output" / "robot data-step00000004-state")
    assert data["command"][-3:] == ["--resume", data["resumed_from"], "--skip_until_initial_step"]
    assert (plan / "previous").is_dir() and (plan / "output" / "robot data.safetensors").is_file()


def test_a_resumed_run_counts_from_the_saved_step(runner, tmp_path, fake_trainer, monkeypatch):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    plan = make_plan(runner, tmp_path, "save_state=true", "save_every_n_steps=3")
    monkeypatch.setenv("FAKE_SDSCRIPTS_FAIL", "crash")
    monkeypatch.setenv("FAKE_SDSCRIPTS_FAIL_AT", "4")  # after the state of step 3
    assert launch(runner, plan, "--no-tensorboard").exit_code == 1
    monkeypatch.delenv("FAKE_SDSCRIPTS_FAIL")
    seen: list[Step] = []
    resumed = run_plan(plan, LaunchOptions(resume=True), on_event=lambda e: seen.append(e) if isinstance(e, Step) else None)
    assert resumed.state == "succeeded"
    assert resumed.steps_done == resumed.total_steps == resumed.planned_steps == 6
    assert [(s.step, s.total) for s in seen] == [(4, 6), (5, 6), (6, 6)]  # the fake's bar said 1/3 .. 3/3
    events = EventAccumulator(resumed.tensorboard)
    events.Reload()
    assert [s.step for s in events.Scalars("train/avr_loss")] == [4, 5, 6]
    runs = json.loads(runner.invoke(cli, ["runs", str(plan), "--json"]).output)
    assert (runs[-1]["steps_done"], runs[-1]["total_steps"]) == (6, 6)


def test_resume_if_possible_starts_a_plan_that_never_ran(runner, tmp_path, fake_trainer):
    plan = make_plan(runner, tmp_path, "save_state=true")
    result = launch(runner, plan, "--resume-if-possible")
    assert result.exit_code == 0, result.output
    data = record(plan)
    assert data["resumed_from"] is None and "--resume" not in data["command"] and data["steps_done"] == 6


def test_resume_if_possible_resumes_from_the_newest_state(runner, tmp_path, fake_trainer, monkeypatch):
    plan = make_plan(runner, tmp_path, "save_state=true", "save_every_n_steps=2")
    monkeypatch.setenv("FAKE_SDSCRIPTS_FAIL", "killed")  # as a preempted job's trainer
    monkeypatch.setenv("FAKE_SDSCRIPTS_FAIL_AT", "5")
    assert launch(runner, plan).exit_code != 0
    monkeypatch.delenv("FAKE_SDSCRIPTS_FAIL")
    result = launch(runner, plan, "--resume-if-possible")
    assert result.exit_code == 0, result.output
    data = record(plan)
    assert data["resumed_from"] == str(plan / "output" / "robot data-step00000004-state")
    assert data["steps_done"] == data["total_steps"] == 6


def test_resume_if_possible_does_not_train_over_lora_files_without_a_state(runner, tmp_path, fake_trainer):
    plan = make_plan(runner, tmp_path)
    assert launch(runner, plan).exit_code == 0
    before = {p.name: p.stat().st_mtime_ns for p in (plan / "output").iterdir()}
    result = launch(runner, plan, "--resume-if-possible")
    assert result.exit_code == 2
    assert "no saved state" in result.output and "--fresh" in result.output
    assert {p.name: p.stat().st_mtime_ns for p in (plan / "output").iterdir()} == before


def test_resume_if_possible_starts_again_when_the_last_run_saved_nothing(runner, tmp_path, fake_trainer, monkeypatch):
    plan = make_plan(runner, tmp_path, "save_state=true")
    monkeypatch.setenv("FAKE_SDSCRIPTS_FAIL", "crash")
    monkeypatch.setenv("FAKE_SDSCRIPTS_FAIL_AT", "1")  # before any save
    assert launch(runner, plan).exit_code == 1
    first = record(plan)
    monkeypatch.delenv("FAKE_SDSCRIPTS_FAIL")
    result = launch(runner, plan, "--resume-if-possible")
    assert result.exit_code == 0, result.output
    assert "starts again" in " ".join(result.output.split())
    (kept,) = (plan / "previous").iterdir()
    assert json.loads((kept / "run.json").read_text())["started"] == first["started"]
    assert record(plan)["state"] == "succeeded" and record(plan)["resumed_from"] is None


def test_a_copied_plan_resumes_from_the_state_in_its_copy(runner, tmp_path, fake_trainer, monkeypatch):
    import shutil

    plan = make_plan(runner, tmp_path, "save_state=true", "save_every_n_steps=3")
    monkeypatch.setenv("FAKE_SDSCRIPTS_FAIL", "crash")
    monkeypatch.setenv("FAKE_SDSCRIPTS_FAIL_AT", "4")
    assert launch(runner, plan).exit_code == 1
    monkeypatch.delenv("FAKE_SDSCRIPTS_FAIL")
    copy = tmp_path / "other machine" / "plan"
    shutil.copytree(plan, copy)
    original = {p.name: p.stat().st_mtime_ns for p in (plan / "output").iterdir()}
    result = launch(runner, copy, "--resume-if-possible")
    assert result.exit_code == 0, result.output
    data = record(copy)
    assert data["resumed_from"] == str(copy / "output" / "robot data-step00000003-state")
    assert data["steps_done"] == 6 and (copy / "output" / "robot data.safetensors").is_file()
    assert {p.name: p.stat().st_mtime_ns for p in (plan / "output").iterdir()} == original  # the original is untouched


def test_a_finished_run_has_nothing_to_resume(runner, tmp_path, fake_trainer):
    plan = make_plan(runner, tmp_path, "save_state=true")
    assert launch(runner, plan).exit_code == 0
    result = launch(runner, plan, "--resume")
    assert result.exit_code == 2 and "already trained all 6 steps" in result.output and "--fresh" in result.output


def test_resume_without_a_saved_state_says_how_to_get_one(runner, tmp_path, fake_trainer):
    plan = make_plan(runner, tmp_path)
    result = launch(runner, plan, "--resume")
    assert result.exit_code == 2
    assert "no saved state" in result.output and "save_state=true" in result.output


def test_a_plan_that_is_still_training_is_not_started_twice(runner, tmp_path, fake_trainer):
    plan = make_plan(runner, tmp_path)
    (plan / "run.json").write_text(json.dumps({"state": "running", "plan": "x", "plan_dir": str(plan), "pid": os.getpid()}))
    result = launch(runner, plan)
    assert result.exit_code == 1 and f"still going (pid {os.getpid()}" in result.output


def test_ctrl_c_stops_the_trainer_and_exits_130(runner, tmp_path, fake_trainer):
    plan = make_plan(runner, tmp_path, "max_train_steps=100")
    env = os.environ | {"FAKE_SDSCRIPTS_STEP_SECONDS": "0.2"}
    process = subprocess.Popen([sys.executable, "-m", "lorakit", "launch", str(plan), "--plain", "--every", "0"],
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    log = plan / "logs" / "train.log"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and not (log.exists() and "| 2/100" in log.read_text(errors="replace")):
        time.sleep(0.05)
    process.send_signal(signal.SIGINT)
    output, _ = process.communicate(timeout=60)
    assert process.returncode == 130, output
    data = record(plan)
    assert data["state"] == "interrupted" and 2 <= data["steps_done"] < 100
    assert "interrupted" in output
    assert not alive(data["pid"])


def test_a_launch_under_nohup_outlives_the_terminal(runner, tmp_path, fake_trainer):
    plan = make_plan(runner, tmp_path, "max_train_steps=20")
    env = os.environ | {"FAKE_SDSCRIPTS_STEP_SECONDS": "0.1", "PYTHONUNBUFFERED": "1"}
    # as `nohup lorakit launch PLAN` starts it: SIGHUP ignored
    process = subprocess.Popen([sys.executable, "-m", "lorakit", "launch", str(plan), "--plain", "--every", "0"],
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
                               preexec_fn=lambda: signal.signal(signal.SIGHUP, signal.SIG_IGN))
    assert process.stdout is not None
    seen = []
    while not (seen and seen[-1].startswith("step 2/20")):
        seen.append(process.stdout.readline())
        assert seen[-1], "".join(seen)
    process.send_signal(signal.SIGHUP)  # the terminal closes
    output, _ = process.communicate(timeout=60)
    assert process.returncode == 0, "".join(seen) + output
    assert record(plan)["state"] == "succeeded" and record(plan)["steps_done"] == 20


class FullDisk:
    """Makes run.json writes fail with ENOSPC, as a full disk does, from write number `from_write` on
    (`final_too`: also the record that closes the run); counts the writes."""

    def __init__(self, monkeypatch, from_write: int, *, final_too: bool = True):
        import lorakit.run.record as record_module

        self.writes, self.from_write, self.final_too = 0, from_write, final_too
        self.real = record_module.write_text_atomic
        monkeypatch.setattr(record_module, "write_text_atomic", self)

    def __call__(self, path, text):
        self.writes += 1
        final = '"state": "running"' not in text
        if self.writes >= self.from_write and (self.final_too or not final):
            raise OSError(errno.ENOSPC, "No space left on device", str(path))
        self.real(path, text)


def started_trainers(monkeypatch) -> list:
    import lorakit.run.launch as launch_module

    started = []
    real = launch_module.start_group
    monkeypatch.setattr(launch_module, "start_group", lambda *a, **k: started.append(real(*a, **k)) or started[-1])
    return started


def test_a_full_disk_at_the_start_stops_the_trainer_at_once_and_says_what_to_do(runner, tmp_path, fake_trainer, monkeypatch):
    plan = make_plan(runner, tmp_path, "max_train_steps=100")
    monkeypatch.setenv("FAKE_SDSCRIPTS_STEP_SECONDS", "0.2")
    FullDisk(monkeypatch, from_write=1)
    trainers = started_trainers(monkeypatch)
    result = launch(runner, plan)
    assert result.exit_code == 1
    assert f"its record {plan / 'run.json'} could not be written: the disk is full (" in result.output
    assert " free there) [No space left on device]" in result.output and "Fix: free space on that disk" in result.output
    assert "stopped as soon as it started" in result.output
    assert trainers[0].poll() is not None and not (plan / "run.json").exists()
    assert not [p for p in plan.iterdir() if p.name.endswith(".tmp")]


def test_a_disk_that_fills_up_during_the_run_stops_it_with_a_final_record(tmp_path, runner, fake_trainer, monkeypatch):
    plan = make_plan(runner, tmp_path, "max_train_steps=100")
    monkeypatch.setenv("FAKE_SDSCRIPTS_STEP_SECONDS", "0.05")
    disk = FullDisk(monkeypatch, from_write=3, final_too=False)  # the start and one update are written
    result = run_plan(plan, stopping_quickly(record_every_s=0.2))
    assert disk.writes > 3
    data = record(plan)
    assert (data["state"], data["problem"]) == ("failed", "disk-full") and data["steps_done"] < 100
    assert f"lorakit cannot write {plan / 'run.json'}: the disk is full (" in data["diagnosis"]
    assert data["suggestion"].startswith("free space on that disk") and "--fresh" in data["suggestion"]
    assert result.state == "failed" and not alive(data["pid"])


def test_a_full_disk_at_the_end_says_how_the_run_ended_and_that_its_record_is_not_written(runner, tmp_path, fake_trainer,
                                                                                           monkeypatch):
    plan = make_plan(runner, tmp_path)
    FullDisk(monkeypatch, from_write=2)
    result = launch(runner, plan)
    assert result.exit_code == 1
    assert f"lorakit: the run ended as succeeded, but its record {plan / 'run.json'} could not be written: the disk is full" \
        in result.output
    assert record(plan)["state"] == "running"  # what the start wrote; `lorakit runs` shows it stale once lorakit ended
    assert (plan / "output" / "robot data.safetensors").is_file()


def test_a_trainer_that_fills_the_disk_is_diagnosed_as_a_full_disk(runner, tmp_path, fake_trainer, monkeypatch):
    plan = make_plan(runner, tmp_path)
    monkeypatch.setenv("FAKE_SDSCRIPTS_FAIL", "disk-full")
    result = launch(runner, plan)
    assert result.exit_code == 1
    data = record(plan)
    assert data["problem"] == "disk-full" and "No space left on device" in data["diagnosis"]
    assert "free space on that disk" in data["suggestion"]


def test_a_stopped_run_leaves_no_process_behind(runner, tmp_path, fake_trainer, monkeypatch):
    plan = make_plan(runner, tmp_path, "max_train_steps=100")
    pidfile = tmp_path / "worker.pid"
    # a worker that ignores SIGINT and SIGTERM and keeps the trainer's pipes open after the trainer exits
    monkeypatch.setenv("FAKE_SDSCRIPTS_STEP_SECONDS", "0.2")
    monkeypatch.setenv("FAKE_SDSCRIPTS_WORKER_PIDFILE", str(pidfile))
    stopper = Stopper()
    stopped_at = []

    def stop_at_step_two(event):
        if isinstance(event, Step) and event.step >= 2 and not stopper.stopped.is_set():
            stopped_at.append(time.monotonic())
            stopper.stop()

    result = run_plan(plan, stopping_quickly(), on_event=stop_at_step_two, stopper=stopper)
    assert result.state == "interrupted" and 2 <= result.steps_done < 100
    assert not alive(result.pid) and not alive(int(pidfile.read_text()))
    # the pipe and group waits are the options' 0.1 s: with 2 s each the worker would take over 4 s to go
    assert time.monotonic() - stopped_at[0] < 3


def test_a_trainer_that_ignores_sigint_gets_sigterm(runner, tmp_path, fake_trainer, monkeypatch):
    plan = make_plan(runner, tmp_path, "max_train_steps=100")
    monkeypatch.setenv("FAKE_SDSCRIPTS_STEP_SECONDS", "0.2")
    monkeypatch.setenv("FAKE_SDSCRIPTS_IGNORE_SIGINT", "1")
    stopper = Stopper()

    def stop_after_first_step(event):
        if isinstance(event, Step) and not stopper.stopped.is_set():
            stopper.stop()

    start = time.monotonic()
    result = run_plan(plan, stopping_quickly(sigint_grace_s=0.5), on_event=stop_after_first_step,
                      stopper=stopper)
    assert result.state == "interrupted" and result.steps_done < 100
    assert time.monotonic() - start < 15
    assert not alive(result.pid)


def test_one_stopper_serves_launches_running_in_threads(runner, tmp_path, fake_trainer, monkeypatch):
    plans = [make_plan(runner, tmp_path / name, "max_train_steps=100") for name in ("a", "b")]
    monkeypatch.setenv("FAKE_SDSCRIPTS_STEP_SECONDS", "0.1")
    stopper = Stopper()
    results = {}
    threads = [threading.Thread(target=lambda p=p: results.__setitem__(p, run_plan(p, stopping_quickly(), stopper=stopper)))
               for p in plans]
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and not all((p / "logs" / "train.log").exists() and "| 1/100" in
                                                  (p / "logs" / "train.log").read_text(errors="replace") for p in plans):
        time.sleep(0.05)
    stopper.stop()
    for thread in threads:
        thread.join(timeout=60)
    assert [results[p].state for p in plans] == ["interrupted", "interrupted"]


def test_a_plain_display_prints_progress_lines(runner, tmp_path, fake_trainer):
    plan = make_plan(runner, tmp_path)
    result = launch(runner, plan, "--plain")
    assert "step 6/6 (100%)  loss 0.2410" in result.output
    assert "epoch 1/2" in result.output and "saved " in result.output


def test_through_the_real_accelerate_launch(runner, tmp_path, fake_trainer, monkeypatch):
    pytest.importorskip("torch")
    pytest.importorskip("accelerate")
    monkeypatch.delenv("PYTHONPATH")
    plan = make_plan(runner, tmp_path)
    result = launch(runner, plan)
    assert result.exit_code == 0, result.output
    log = (plan / "logs" / "train.log").read_text(encoding="utf-8")
    assert "accelerator device: cpu" in log  # accelerate --cpu reached the script
    assert "were not passed to `accelerate launch`" not in log  # lorakit passes every flag it asks for
    assert record(plan)["state"] == "succeeded"



def test_a_record_left_running_by_a_killed_lorakit_is_closed(runner, tmp_path, fake_trainer):
    plan = make_plan(runner, tmp_path)
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    (plan / "run.json").write_text(json.dumps({"state": "running", "plan": "x", "plan_dir": str(plan), "pid": gone.pid}))
    result = launch(runner, plan)
    assert result.exit_code == 2 and "already has the outputs" in result.output
    assert record(plan)["state"] == "interrupted"


def test_a_failing_consumer_still_ends_the_trainer_and_closes_the_record(runner, tmp_path, fake_trainer, monkeypatch):
    plan = make_plan(runner, tmp_path, "max_train_steps=100")
    monkeypatch.setenv("FAKE_SDSCRIPTS_STEP_SECONDS", "0.05")

    def broken(event):
        if isinstance(event, Step):
            raise RuntimeError("the display broke")

    with pytest.raises(RuntimeError):
        run_plan(plan, stopping_quickly(), on_event=broken)
    data = record(plan)
    assert (data["state"], data["problem"]) == ("failed", "crash") and "the display broke" in data["diagnosis"]
    assert not alive(data["pid"])


def test_a_run_that_saved_its_lora_succeeded_despite_a_printed_traceback(runner, tmp_path, fake_trainer, monkeypatch):
    plan = make_plan(runner, tmp_path)
    monkeypatch.setenv("FAKE_SDSCRIPTS_OPTIONAL_IMPORT", "1")
    result = launch(runner, plan)
    assert result.exit_code == 0, result.output
    data = record(plan)
    assert (data["state"], data["problem"]) == ("succeeded", None)
    assert "triton_does_not_exist" in data["diagnosis"]


def test_ctrl_c_before_the_trainer_starts_starts_nothing(runner, tmp_path, fake_trainer):
    plan = make_plan(runner, tmp_path)
    model = tmp_path / "base model ü.safetensors"
    with open(model, "r+b") as f:
        f.truncate(4 * 1024**3)  # a sparse 4 GB checkpoint: hashing it keeps launch busy before the trainer
    process = subprocess.Popen([sys.executable, "-m", "lorakit", "launch", str(plan), "--plain"],
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and process.poll() is None and not has_open(process.pid, model):
        time.sleep(0.01)
    process.send_signal(signal.SIGINT)
    output, _ = process.communicate(timeout=20)
    assert process.returncode == 130, output
    assert "interrupted" in output and "Traceback" not in output
    assert not (plan / "run.json").exists() and "trainer started" not in output


def test_plans_sharing_an_output_dir_leave_each_others_files_alone(runner, tmp_path, fake_trainer):
    shared = tmp_path / "shared out"
    one = make_plan(runner, tmp_path, f"output_dir={shared}", "output_name=one", out=tmp_path / "one")
    two = make_plan(runner, tmp_path, f"output_dir={shared}", "output_name=two", out=tmp_path / "two")
    assert launch(runner, one).exit_code == 0
    assert launch(runner, two).exit_code == 0, "another plan's files are not this plan's outputs"
    assert launch(runner, two, "--fresh").exit_code == 0
    assert (shared / "one.safetensors").is_file() and (shared / "two.safetensors").is_file()
    assert {p.name for p in (two / "previous").glob("*/output/*.safetensors")} == {"two.safetensors", "two-000001.safetensors"}


def test_a_damaged_run_record_needs_fresh_and_fresh_moves_it_aside(runner, tmp_path, fake_trainer):
    plan = make_plan(runner, tmp_path)
    (plan / "run.json").write_text('{"state": "runn')
    refused = launch(runner, plan)
    assert refused.exit_code == 2 and "damaged" in refused.output and "--fresh" in refused.output
    assert launch(runner, plan, "--fresh").exit_code == 0
    assert record(plan)["state"] == "succeeded"
    assert [p.read_text() for p in (plan / "previous").glob("*/run.json")] == ['{"state": "runn']


def test_a_group_of_zombies_counts_as_ended(tmp_path):
    from lorakit.run.process import process_alive

    # a finished child not yet reaped: a zombie, as orphans stay where PID 1 does not reap them
    child = subprocess.Popen(["true"], start_new_session=True)
    stat = Path(f"/proc/{child.pid}/stat")
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and stat.read_text().rsplit(")", 1)[1].split()[0] != "Z":
        time.sleep(0.01)
    try:
        assert not process_alive(child.pid, group=True)
    finally:
        child.wait()


def recording_python(folder: Path) -> Path:
    """A trainer "Python" that answers launch.sh's questions (`-c CODE`) as Python does and prints any other command."""
    recorder = folder / "trainer python"
    recorder.write_text(f"#!{sys.executable}\nimport json, sys\nif sys.argv[1] == '-c':\n    exec(sys.argv[2])\n"
                        "else:\n    print(json.dumps(sys.argv))\n")
    recorder.chmod(0o755)
    return recorder


def test_launch_sh_runs_what_launch_runs_on_a_machine_without_cuda(runner, tmp_path, fake_trainer, monkeypatch):
    from lorakit.run.launch import prepare_launch

    monkeypatch.setenv("LORAKIT_PYTHON", str(recording_python(tmp_path)))
    plan = make_plan(runner, tmp_path)
    monkeypatch.delenv("LORAKIT_PYTHON")
    # the fake torch on PYTHONPATH sees no CUDA device, so `lorakit launch` trains on the CPU
    launched = prepare_launch(plan, LaunchOptions(python=sys.executable)).command
    assert "--cpu" in launched
    script = subprocess.run(["bash", str(plan / "launch.sh")], capture_output=True, text=True, check=True)
    assert json.loads(script.stdout)[1:] == launched[1:]


def test_launch_sh_uses_cuda_where_the_trainer_sees_it_unless_told_cpu(runner, tmp_path, fake_trainer, monkeypatch):
    from lorakit.run.launch import prepare_launch

    monkeypatch.setenv("LORAKIT_PYTHON", str(recording_python(tmp_path)))
    plan = make_plan(runner, tmp_path)
    monkeypatch.delenv("LORAKIT_PYTHON")
    gpu_torch = tmp_path / "gpu torch" / "torch"
    gpu_torch.mkdir(parents=True)
    (gpu_torch / "__init__.py").write_text("class cuda:\n    @staticmethod\n    def device_count():\n        return 1\n")
    env = os.environ | {"PYTHONPATH": str(gpu_torch.parent)}
    on_gpu = subprocess.run(["bash", str(plan / "launch.sh")], capture_output=True, text=True, check=True, env=env)
    assert json.loads(on_gpu.stdout) == json.loads((plan / "plan.json").read_text(encoding="utf-8"))["command"]
    assert "--cpu" not in on_gpu.stdout
    forced = subprocess.run(["bash", str(plan / "launch.sh"), "--cpu"], capture_output=True, text=True, check=True, env=env)
    assert json.loads(forced.stdout)[1:] == prepare_launch(plan, LaunchOptions(python=sys.executable, cpu=True)).command[1:]
