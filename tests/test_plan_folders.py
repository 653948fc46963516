"""Plan folders travel and hold one run at a time: a copied or moved plan trains into its own folder,
user paths mean the same from any directory, and a second launch of a running plan is refused."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import tomllib
from conftest import make_plan
from sdscripts_rules import config_problems, dataset_problems

from lorakit.cli.main import cli
from lorakit.errors import UserError
from lorakit.kohya_gui.export import export_plan
from lorakit.plan.build import load_plan
from lorakit.run.earlier import plan_lock
from lorakit.run.launch import LaunchOptions, run_plan

LORA = "robot data.safetensors"


def launch(runner, plan: Path, *args: str):
    return runner.invoke(cli, ["launch", str(plan), "--every", "0", *args])


def record(plan: Path) -> dict:
    return json.loads((plan / "run.json").read_text(encoding="utf-8"))


def files_of(folder: Path) -> dict[str, int]:
    return {str(p.relative_to(folder)): p.stat().st_mtime_ns for p in folder.rglob("*") if p.is_file()}


def hold(plan: Path, pid: int | None = None, host: str | None = None) -> None:
    """A run.lock as a running lorakit leaves it (this test's own process: alive)."""
    (plan / "run.lock").write_text(json.dumps({"pid": pid or os.getpid(), "host": host or socket.gethostname(),
                                               "started": "2025-01-01T10:00:00", "path": str(plan / "run.lock")}))


def dead_pid() -> int:
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


# --- copied and moved plans -------------------------------------------------------------------------

def test_the_plan_folders_own_paths_are_relative_to_it(runner, tmp_path, fake_trainer):
    plan = make_plan(runner, tmp_path, "sample_every_n_steps=3")
    config = tomllib.loads((plan / "config.toml").read_text(encoding="utf-8"))
    flat = {k: v for table in config.values() for k, v in table.items()}
    assert (flat["output_dir"], flat["logging_dir"], flat["dataset_config"], flat["sample_prompts"]) == (
        "output", "tensorboard/sd-scripts", "dataset.toml", "sample_prompts.txt")
    assert str(plan) not in (plan / "config.toml").read_text(encoding="utf-8")
    assert str(plan) not in (plan / "launch.sh").read_text(encoding="utf-8")


def test_a_copied_plan_trains_into_its_own_folder(runner, tmp_path, fake_trainer):
    original = make_plan(runner, tmp_path)
    copy = tmp_path / "copy"
    shutil.copytree(original, copy)
    result = launch(runner, copy)
    assert result.exit_code == 0, result.output
    assert (copy / "output" / LORA).is_file()
    assert not (original / "output").exists() and not (original / "run.json").exists()
    data = record(copy)
    assert data["plan_dir"] == str(copy) and data["log"] == str(copy / "logs" / "train.log")
    assert all(Path(o["path"]).parent == copy / "output" for o in data["outputs"])


def test_fresh_on_a_copy_leaves_the_original_alone(runner, tmp_path, fake_trainer):
    original = make_plan(runner, tmp_path)
    assert launch(runner, original).exit_code == 0
    before = files_of(original)
    copy = tmp_path / "copy"
    shutil.copytree(original, copy)
    result = launch(runner, copy, "--fresh")
    assert result.exit_code == 0, result.output
    assert files_of(original) == before and not (original / "previous").exists()
    (kept,) = (copy / "previous").iterdir()
    assert (kept / "output" / LORA).is_file() and (copy / "output" / LORA).is_file()


def test_a_moved_plan_launches_where_it_is_and_its_fixes_name_the_new_place(runner, tmp_path, fake_trainer):
    planned = make_plan(runner, tmp_path)
    moved = tmp_path / "elsewhere" / "moved plan ü"
    moved.parent.mkdir()
    shutil.move(planned, moved)
    assert launch(runner, moved).exit_code == 0
    assert (moved / "output" / LORA).is_file() and not planned.exists()
    with pytest.raises(UserError) as again:
        run_plan(moved, LaunchOptions(tensorboard=False))
    said = again.value.render()
    assert "already has the outputs" in said and str(moved) in said and str(planned) not in said
    assert load_plan(moved).plan_dir == str(moved)


def test_launch_sh_runs_the_plan_it_sits_in_from_any_directory(runner, tmp_path, fake_trainer):
    copy = tmp_path / "it's a copy"
    shutil.copytree(make_plan(runner, tmp_path), copy)
    elsewhere = tmp_path / "somewhere else"
    elsewhere.mkdir()
    done = subprocess.run(["bash", str(copy / "launch.sh")], cwd=elsewhere, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert (copy / "output" / LORA).is_file()
    assert not (tmp_path / "plan" / "output").exists() and not list(elsewhere.iterdir())


def test_a_relocated_plan_still_gives_sd_scripts_valid_files_that_name_its_new_folder(runner, tmp_path, fake_trainer):
    moved = tmp_path / "moved"
    shutil.move(make_plan(runner, tmp_path, "sample_every_n_steps=3"), moved)
    config_text = (moved / "config.toml").read_text(encoding="utf-8")
    assert config_problems(config_text) == []
    assert dataset_problems((moved / "dataset.toml").read_text(encoding="utf-8")) == []
    flat = {k: v for table in tomllib.loads(config_text).values() for k, v in table.items()}
    for key in ("dataset_config", "sample_prompts"):  # opened by sd-scripts relative to the plan folder
        assert (moved / flat[key]).is_file()


def test_the_gui_export_of_a_copied_plan_names_the_copys_files(runner, tmp_path, fake_trainer):
    copy = tmp_path / "copy"
    shutil.copytree(make_plan(runner, tmp_path), copy)
    config = export_plan(load_plan(copy)).config
    assert config["dataset_config"] == str(copy / "dataset.toml")
    assert config["output_dir"] == str(copy / "output")
    assert config["logging_dir"] == str(copy / "tensorboard" / "sd-scripts")


# --- paths the user sets ----------------------------------------------------------------------------

def test_a_relative_output_dir_means_the_same_from_any_directory(runner, tmp_path, fake_trainer, monkeypatch):
    planned_in = tmp_path / "work"
    planned_in.mkdir()
    monkeypatch.chdir(planned_in)
    plan = make_plan(runner, tmp_path, "output_dir=my loras")
    value = json.loads((plan / "plan.json").read_text())["values"]["output_dir"]
    assert value["value"] == str(planned_in / "my loras") and value["source"] == "set"
    monkeypatch.chdir(tmp_path)
    assert launch(runner, plan).exit_code == 0
    assert (planned_in / "my loras" / LORA).is_file()
    other = tmp_path / "other"
    other.mkdir()
    monkeypatch.chdir(other)
    refused = launch(runner, plan)
    assert refused.exit_code == 2 and "already has the outputs" in refused.output
    assert launch(runner, plan, "--fresh").exit_code == 0
    assert LORA in [p.name for p in (plan / "previous").glob("*/output/*.safetensors")]
    assert not (other / "my loras").exists() and not (plan / "my loras").exists()


def test_a_user_path_inside_the_plan_folder_travels_with_it(runner, tmp_path, fake_trainer):
    plan = tmp_path / "plan"
    plan = make_plan(runner, tmp_path, f"output_dir={plan / 'loras'}", out=plan)
    assert json.loads((plan / "plan.json").read_text())["values"]["output_dir"]["value"] == "loras"
    copy = tmp_path / "copy"
    shutil.copytree(plan, copy)
    assert launch(runner, copy).exit_code == 0
    assert (copy / "loras" / LORA).is_file() and not (plan / "loras").exists()


def test_other_user_paths_are_made_absolute_at_plan_time(runner, tmp_path, fake_trainer, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "prompts.txt").write_text("a zk robot\n")
    plan = make_plan(runner, tmp_path, "sample_prompts=prompts.txt", "network_weights=~/start.safetensors",
                     "base_weights=a.safetensors b.safetensors", "metadata_thumbnail=data:image/png;base64,AAAA")
    values = {k: v["value"] for k, v in json.loads((plan / "plan.json").read_text())["values"].items()}
    assert values["sample_prompts"] == str(tmp_path / "prompts.txt")
    assert values["network_weights"] == str(Path.home() / "start.safetensors")
    assert values["base_weights"] == [str(tmp_path / "a.safetensors"), str(tmp_path / "b.safetensors")]
    assert values["metadata_thumbnail"] == "data:image/png;base64,AAAA"


# --- one run per plan -------------------------------------------------------------------------------

def test_a_second_launch_of_a_running_plan_is_refused_and_the_first_is_unharmed(runner, tmp_path, fake_trainer):
    plan = make_plan(runner, tmp_path, "max_train_steps=12", "save_every_n_steps=4")
    env = os.environ | {"FAKE_SDSCRIPTS_STEP_SECONDS": "0.25"}
    first = subprocess.Popen([sys.executable, "-m", "lorakit", "launch", str(plan), "--plain", "--every", "0"],
                             env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not (plan / "run.json").is_file():
        time.sleep(0.05)
    assert (plan / "run.json").is_file(), "the first launch did not start its trainer"
    for args in ([], ["--fresh"], ["--resume"]):
        second = launch(runner, plan, *args)
        assert second.exit_code == 1, second.output
        text = " ".join(second.output.split())
        assert f"pid {first.pid} on {socket.gethostname()}" in text and "already training" in text
        assert f"kill -INT {first.pid}" in text
        assert not (plan / "previous").exists()
    output, _ = first.communicate(timeout=120)
    assert first.returncode == 0, output
    data = record(plan)
    assert (data["state"], data["steps_done"]) == ("succeeded", 12)
    assert [Path(o["path"]).name for o in data["outputs"]][-1] == LORA
    assert (plan / "output" / LORA).is_file() and not (plan / "run.lock").exists()


def test_the_plan_lock_is_released_when_a_run_fails(runner, tmp_path, fake_trainer, monkeypatch):
    plan = make_plan(runner, tmp_path)
    monkeypatch.setenv("FAKE_SDSCRIPTS_FAIL", "crash")
    assert launch(runner, plan).exit_code == 1
    assert not (plan / "run.lock").exists()
    monkeypatch.delenv("FAKE_SDSCRIPTS_FAIL")
    assert launch(runner, plan, "--fresh").exit_code == 0


def test_a_lock_left_by_a_dead_lorakit_is_taken_over(runner, tmp_path, fake_trainer):
    plan = make_plan(runner, tmp_path)
    hold(plan, pid=dead_pid())
    assert launch(runner, plan).exit_code == 0
    assert not (plan / "run.lock").exists()


def test_a_lock_copied_along_with_a_running_plan_does_not_hold_the_copy(runner, tmp_path, fake_trainer):
    original = make_plan(runner, tmp_path)
    hold(original)
    copy = tmp_path / "copy"
    shutil.copytree(original, copy)
    result = launch(runner, copy)
    assert result.exit_code == 0, result.output
    assert launch(runner, original).exit_code == 1  # the original is still held


def test_a_lock_held_on_another_host_is_respected_and_named(runner, tmp_path, fake_trainer):
    plan = make_plan(runner, tmp_path)
    hold(plan, pid=4242, host="gpu-box-7")
    result = launch(runner, plan)
    text = " ".join(result.output.split())
    assert result.exit_code == 1 and "pid 4242 on gpu-box-7" in text and "delete" in text
    assert not (plan / "run.json").exists()


def test_batch_run_and_launch_share_the_plan_lock(runner, tmp_path, fake_trainer):
    from test_batch import trainable_batch

    batch = trainable_batch(runner, tmp_path, "--sweep", "network_dim=4,8")
    held, free = sorted(p for p in batch.iterdir() if (p / "plan.json").is_file())
    hold(held)
    result = runner.invoke(cli, ["batch", "run", str(batch)])
    assert result.exit_code == 1
    assert "already training" in " ".join(result.output.split()) and not (held / "run.json").exists()
    assert record(free)["state"] == "succeeded"


# --- records moved by --fresh -----------------------------------------------------------------------

def test_a_run_moved_aside_by_fresh_names_where_its_files_are_now(runner, tmp_path, fake_trainer):
    plan = make_plan(runner, tmp_path)
    assert launch(runner, plan).exit_code == 0
    assert launch(runner, plan, "--fresh").exit_code == 0
    (kept,) = (plan / "previous").iterdir()
    old = json.loads((kept / "run.json").read_text(encoding="utf-8"))
    assert old["log"] == str(kept / "train.log") and Path(old["log"]).is_file()
    assert old["outputs"] and all(Path(o["path"]).parent == kept / "output" for o in old["outputs"])
    assert all(Path(o["path"]).is_file() for o in old["outputs"])
    new = record(plan)
    assert {o["path"] for o in new["outputs"]}.isdisjoint(o["path"] for o in old["outputs"])


def test_a_moved_plan_of_an_older_lorakit_is_refused_with_a_replan_here(runner, tmp_path, fake_trainer):
    planned = make_plan(runner, tmp_path)
    data = json.loads((planned / "plan.json").read_text())
    data["values"]["output_dir"]["value"] = str(planned / "output")  # as plans were written before
    (planned / "plan.json").write_text(json.dumps(data))
    moved = tmp_path / "moved"
    shutil.move(planned, moved)
    with pytest.raises(UserError) as refused:
        run_plan(moved, LaunchOptions(tensorboard=False))
    said = refused.value.render()
    assert "has been copied or moved" in said and "output_dir" in said
    assert f"--out {moved} --force" in refused.value.fix
    assert not (moved / "run.json").exists() and not planned.exists()


def test_a_copied_batch_runs_its_own_plans(runner, tmp_path, fake_trainer):
    from test_batch import trainable_batch

    original = trainable_batch(runner, tmp_path, "--sweep", "network_dim=8")
    copy = tmp_path / "batch copy"
    shutil.copytree(original, copy)
    result = runner.invoke(cli, ["batch", "run", str(copy)])
    assert result.exit_code == 0, result.output
    assert [record(run.parent)["state"] for run in copy.glob("*/run.json")] == ["succeeded"]
    assert not list(original.glob("*/run.json")) and not list(original.glob("*/output"))


def test_every_path_key_is_an_sd_scripts_argument():
    from lorakit.config.schema import PATH_KEYS, registry

    assert PATH_KEYS <= set(registry())


def test_dry_run_says_the_command_runs_in_the_plan_folder(runner, tmp_path, fake_trainer):
    copy = tmp_path / "copy"
    shutil.copytree(make_plan(runner, tmp_path), copy)
    result = launch(runner, copy, "--dry-run")
    assert result.exit_code == 0, result.output
    assert f"in folder (the plan's paths are relative to it): {copy}" in result.output


def test_force_does_not_replace_the_files_of_a_plan_that_is_training(runner, tmp_path, fake_trainer):
    plan = make_plan(runner, tmp_path)
    with plan_lock(plan):  # a launch holds the plan
        result = runner.invoke(cli, ["plan", str(tmp_path / "robot data"), "--target-gpu", "rtx4090", "--out", str(plan),
                                     "--force"])
    assert result.exit_code == 1 and "already training" in result.output and "kill -INT" in result.output
    assert not (plan / ".lorakit-history").exists()
