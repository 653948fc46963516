"""`lorakit runs` (a table of run records) and `lorakit logs` (any saved sd-scripts log → summary, TensorBoard)."""

from __future__ import annotations

import json
import os
import struct
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import make_plan
from hubgen import fake_checkpoint

from lorakit.cli.main import cli
from lorakit.run.outputs import list_outputs, safetensors_metadata
from lorakit.run.record import RunRecord


def test_runs_lists_every_plan_with_its_outcome(runner, tmp_path, fake_trainer, monkeypatch):
    good = make_plan(runner, tmp_path / "plans" / "good")
    bad = make_plan(runner, tmp_path / "plans" / "bad")
    assert runner.invoke(cli, ["launch", str(good)]).exit_code == 0
    monkeypatch.setenv("FAKE_SDSCRIPTS_FAIL", "oom")
    assert runner.invoke(cli, ["launch", str(bad)]).exit_code == 1
    table = runner.invoke(cli, ["runs", str(tmp_path / "plans")])
    assert table.exit_code == 0
    assert "succeeded" in table.output and "failed" in table.output and "out-of-memory" in table.output
    rows = json.loads(runner.invoke(cli, ["runs", str(tmp_path / "plans"), "--json"]).output)
    assert {(r["plan_dir"], r["state"]) for r in rows} == {(str(good), "succeeded"), (str(bad), "failed")}
    assert all(r["record"].endswith("run.json") for r in rows)
    assert all(list(r)[0] == "record" for r in rows)  # the file first, then the record as run.json holds it
    assert {RunRecord.model_validate({k: v for k, v in r.items() if k != "record"}).state for r in rows} == {"succeeded", "failed"}


def test_runs_without_any_run(runner, tmp_path):
    assert "No runs under" in runner.invoke(cli, ["runs", str(tmp_path)]).output
    missing = runner.invoke(cli, ["runs", str(tmp_path / "nowhere")])
    assert missing.exit_code == 2 and "does not exist" in missing.output


def write_run(plan_dir: Path, **fields) -> Path:
    from lorakit.run.record import write_record

    plan_dir.mkdir(parents=True, exist_ok=True)
    values = {"state": "succeeded", "plan": "robot", "plan_dir": str(plan_dir), "started": "2026-12-01T10:00:00+00:00"}
    write_record(plan_dir, RunRecord.model_validate(values | fields))
    return plan_dir / "run.json"


def test_a_run_whose_lorakit_was_killed_is_stale_in_the_table_and_in_json(runner, tmp_path):
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    write_run(tmp_path / "plans" / "robot", state="running", pid=gone.pid)
    table = runner.invoke(cli, ["runs", str(tmp_path / "plans")])
    assert "stale" in table.output and "running" not in table.output
    (row,) = json.loads(runner.invoke(cli, ["runs", str(tmp_path / "plans"), "--json"]).output)
    assert row["state"] == "stale"


def test_damaged_run_records_are_listed_with_what_is_wrong(runner, tmp_path):
    plans = tmp_path / "plans"
    write_run(plans / "good")
    (plans / "cut").mkdir()
    (plans / "cut" / "run.json").write_text('{"state": "succ', encoding="utf-8")  # a disk that filled up mid-write
    (plans / "edited").mkdir()
    (plans / "edited" / "run.json").write_text(json.dumps({"state": "done", "plan": "x", "plan_dir": "x", "steps_done": "many"}))
    (plans / "latin1").mkdir()
    (plans / "latin1" / "run.json").write_bytes('{"plan": "caf\xe9"}'.encode("latin-1"))
    rows = {Path(r["record"]).parent.name: r for r in json.loads(runner.invoke(cli, ["runs", str(plans), "--json"]).output)}
    assert rows["good"]["state"] == "succeeded"
    assert {name: rows[name]["state"] for name in ("cut", "edited", "latin1")} == dict.fromkeys(("cut", "edited", "latin1"), "damaged")
    assert rows["cut"]["damage"].startswith("unreadable JSON")
    assert rows["edited"]["damage"].startswith("invalid fields: state (") and "steps_done (" in rows["edited"]["damage"]
    assert rows["latin1"]["damage"].startswith("not UTF-8")
    result = runner.invoke(cli, ["runs", str(plans)])
    assert result.exit_code == 0
    assert result.output.count("damaged") >= 3 and "unreadable JSON" in result.output and "--fresh" in result.output


def test_plans_of_one_name_are_told_apart_by_their_folder(runner, tmp_path):
    plans = tmp_path / "plans"
    write_run(plans / "robot-a")
    write_run(plans / "tries" / "robot-b", state="failed")
    result = runner.invoke(cli, ["runs", str(plans)], terminal_width=200)
    rows = [line for line in result.output.splitlines() if line.startswith("robot ")]
    assert [row.split()[2] for row in rows] == ["robot-a", "tries/robot-b"]


def gui_style_log(fake_trainer, plan, log, *, check: bool = True):
    """Run the fake trainer on the plan as a GUI does: no COLUMNS (Rich wraps at 80), stdout and stderr in one file."""
    env = {k: v for k, v in os.environ.items() if k != "COLUMNS"}
    with open(log, "wb") as f:
        subprocess.run([sys.executable, str(fake_trainer / "sdxl_train_network.py"), "--config_file", str(plan / "config.toml")],
                       stdout=f, stderr=subprocess.STDOUT, env=env, check=check, cwd=plan)  # the plan's paths are relative to it
    return log


def test_logs_reads_a_gui_style_log_at_80_columns(runner, tmp_path, fake_trainer):
    plan = make_plan(runner, tmp_path)
    log = gui_style_log(fake_trainer, plan, tmp_path / "gui console.log")
    result = runner.invoke(cli, ["logs", str(log)])
    assert result.exit_code == 0, result.output
    assert f"{log}: 6/6 steps, epoch 2/2, final loss 0.2410" in result.output  # piped: one unbroken line
    assert "2 checkpoint(s) saved; model saved." in result.output


def test_a_saved_log_reads_the_losses_the_live_launch_recorded(runner, tmp_path, fake_trainer, monkeypatch):
    # steps slow enough that tqdm draws both redraws of each step; a GUI's log keeps the checkpoint line between them
    monkeypatch.setenv("FAKE_SDSCRIPTS_STEP_SECONDS", "0.12")
    plan = make_plan(runner, tmp_path, "save_every_n_steps=3")
    assert runner.invoke(cli, ["launch", str(plan), "--no-tensorboard"]).exit_code == 0
    live = json.loads((plan / "run.json").read_text(encoding="utf-8"))
    for log in (plan / "logs" / "train.log", gui_style_log(fake_trainer, plan, tmp_path / "gui console.log")):
        report = json.loads(runner.invoke(cli, ["logs", str(log), "--json"]).output)
        assert (report["steps_done"], report["last_loss"], report["min_loss"]) == (6, live["last_loss"], live["min_loss"]) == (6, 0.241, 0.241)


def path_of_length(folder: Path, name: str, length: int) -> Path:
    """`folder/<padding>/name`, exactly `length` characters long whatever `folder` is."""
    padding = length - len(str(folder / "p" / name)) + 1
    assert padding >= 1, f"{folder} is too long for a path of {length} characters"
    return folder / ("p" * padding) / name


@pytest.mark.parametrize("length", [150, 145])
def test_logs_of_a_gui_style_log_name_a_missing_model_in_whole_words(runner, tmp_path, fake_trainer, length):
    # Where Rich breaks the message's lines depends on the model path's length, so pytest's tmp path
    # must not set it. At 145 characters (or 120, 95, 70, ... with the 25-column message column at 80)
    # the path's first word is cut into pieces that fill the column, the last one right before the
    # space, and Rich starts the next line with that space.
    model = path_of_length(tmp_path, "base model ü.safetensors", length)
    model.parent.mkdir()
    model.write_bytes(fake_checkpoint())
    plan = make_plan(runner, tmp_path, f"pretrained_model_name_or_path={model}")
    model.unlink()
    log = gui_style_log(fake_trainer, plan, tmp_path / "gui console.log", check=False)
    assert "model is not found as a file or in Hugging Face" not in log.read_text(encoding="utf-8"), "wrapped"
    report = json.loads(runner.invoke(cli, ["logs", str(log), "--json"]).output)
    missing = next(p for p in report["problems"] if p["kind"] == "model-missing")
    assert missing["message"] == f"model is not found as a file or in Hugging Face, perhaps file name is wrong?: {model}"
    assert missing["detail"] == str(model)
    assert report["errors"][0].startswith("ERROR: model is not found as a file or in Hugging Face, perhaps file name")


def test_logs_writes_tensorboard_summaries(runner, tmp_path, fake_trainer):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    plan = make_plan(runner, tmp_path)
    assert runner.invoke(cli, ["launch", str(plan), "--no-tensorboard"]).exit_code == 0
    assert not (plan / "tensorboard" / "lorakit").exists()
    out = tmp_path / "tb from log"
    result = runner.invoke(cli, ["logs", str(plan / "logs" / "train.log"), "--tensorboard", str(out), "--json"])
    report = json.loads(result.output)
    assert (report["steps_done"], report["last_loss"], report["model_saved"]) == (6, 0.241, True)
    events = EventAccumulator(str(out))
    events.Reload()
    assert [s.step for s in events.Scalars("train/avr_loss")] == [1, 2, 3, 4, 5, 6]


def test_logs_of_a_failed_run_name_the_problem(runner, tmp_path, fake_trainer, monkeypatch):
    plan = make_plan(runner, tmp_path)
    monkeypatch.setenv("FAKE_SDSCRIPTS_FAIL", "crash")
    runner.invoke(cli, ["launch", str(plan)])
    result = runner.invoke(cli, ["logs", str(plan / "logs" / "train.log")])
    assert "crash: ValueError: fake failure in the training loop" in result.output
    assert "no 'model saved.'" in result.output


def test_logs_of_a_missing_file(runner, tmp_path):
    result = runner.invoke(cli, ["logs", str(tmp_path / "none.log")])
    assert result.exit_code == 2 and "is not a file" in result.output


def test_safetensors_metadata_comes_from_the_header(tmp_path):
    header = json.dumps({"__metadata__": {"ss_network_dim": "32"}, "w": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}})
    good = tmp_path / "a.safetensors"
    good.write_bytes(struct.pack("<Q", len(header)) + header.encode() + b"\0\0\0\0")
    damaged = tmp_path / "b.safetensors"
    damaged.write_bytes(struct.pack("<Q", 10**12) + b"{")
    (tmp_path / "c.ckpt").write_bytes(b"pickle")
    assert safetensors_metadata(good) == {"ss_network_dim": "32"}
    assert safetensors_metadata(damaged) == {}
    outputs = list_outputs(tmp_path)
    assert sorted((o.path.rsplit("/", 1)[1], o.bytes, o.metadata) for o in outputs) == [
        ("a.safetensors", good.stat().st_size, {"ss_network_dim": "32"}), ("b.safetensors", 9, {}), ("c.ckpt", 6, {})]
