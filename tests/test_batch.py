"""`lorakit batch`: plans for every combination, a manifest, runs, status, report, Slurm."""

from __future__ import annotations

import json

import tomllib

from lorakit.cli.main import cli


def batch_plan(runner, dataset, out, *args):
    return runner.invoke(cli, ["batch", "plan", str(dataset), "--out", str(out), "--target-gpu", "rtx4090", *args],
                         catch_exceptions=False)


def test_batch_plan_writes_one_plan_per_combination(runner, character_dataset, tmp_path):
    out = tmp_path / "batch"
    result = batch_plan(runner, character_dataset, out, "--preset", "character", "--preset", "style",
                        "--sweep", "network_dim=16,32")
    assert result.exit_code == 0, result.output
    manifest = json.loads((out / "batch.json").read_text())
    ids = [run["id"] for run in manifest["runs"]]
    assert ids == ["01-character-network_dim=16", "02-character-network_dim=32",
                   "03-style-network_dim=16", "04-style-network_dim=32"]
    for run in manifest["runs"]:
        config = tomllib.loads((out / run["id"] / "config.toml").read_text())
        assert config["network"]["network_dim"] == int(run["sweep"]["network_dim"])
        plan = json.loads((out / run["id"] / "plan.json").read_text())
        assert plan["values"]["network_dim"]["source"] == "set"
        assert plan["name"] == f"dogs-{run['id']}"


def test_combined_presets_and_several_sweeps(runner, character_dataset, tmp_path):
    out = tmp_path / "batch"
    batch_plan(runner, character_dataset, out, "--preset", "character+prodigy", "--sweep", "network_dim=8,16",
               "--sweep", "max_train_epochs=10|12")
    manifest = json.loads((out / "batch.json").read_text())
    assert len(manifest["runs"]) == 4
    assert manifest["runs"][0]["presets"] == ["character", "prodigy"]
    plan = json.loads((out / manifest["runs"][3]["id"] / "plan.json").read_text())
    assert (plan["values"]["optimizer_type"]["value"], plan["epochs"]) == ("Prodigy", 12)


def test_combinations_with_gate_errors_are_skipped_with_their_findings(runner, character_dataset, tmp_path):
    out = tmp_path / "batch"
    result = batch_plan(runner, character_dataset, out, "--sweep", "bucket_reso_steps=64,48")
    assert result.exit_code == 0, result.output
    runs = json.loads((out / "batch.json").read_text())["runs"]
    assert [r["status"] for r in runs] == ["planned", "skipped"]
    assert runs[1]["findings"][0]["code"] == "params/bucket-steps"
    assert not (out / runs[1]["id"]).exists()
    assert "skipped" in result.output
    forced = batch_plan(runner, character_dataset, out, "--sweep", "bucket_reso_steps=64,48", "--force")
    assert [r["status"] for r in json.loads((out / "batch.json").read_text())["runs"]] == ["planned", "planned"]
    assert forced.exit_code == 0


def test_bad_sweeps_are_reported_together(runner, character_dataset, tmp_path):
    result = runner.invoke(cli, ["batch", "plan", str(character_dataset), "--out", str(tmp_path / "b"),
                                 "--sweep", "network_dim=16,big", "--sweep", "network_dimm=1", "--sweep", "oops"])
    assert result.exit_code == 2
    assert "3 problem(s)" in result.output and "big" in result.output and "Did you mean network_dim" in result.output
    assert not (tmp_path / "b").exists()


def test_every_run_is_the_shared_request_with_its_presets_and_sweep(character_dataset, tmp_path):
    from lorakit.batch.manifest import BatchRequest, plan_batch
    from lorakit.plan.build import PlanRequest

    shared = PlanRequest(dataset=character_dataset, overrides=["network_alpha=4"], target_gpu="rtx4090", name="pup",
                         presets=["ignored"], out=tmp_path / "ignored")
    manifest = plan_batch(BatchRequest(plan=shared, out=tmp_path / "b", presets=["character", "style"],
                                       sweeps=["network_dim=8"]))
    assert [(run.id, run.presets) for run in manifest.runs] == [("01-character-network_dim=8", ["character"]),
                                                                ("02-style-network_dim=8", ["style"])]
    plan = json.loads((tmp_path / "b" / manifest.runs[1].id / "plan.json").read_text())
    assert (plan["name"], plan["values"]["network_alpha"]["value"], plan["values"]["network_dim"]["value"]) == \
        ("pup-02-style-network_dim=8", 4, 8)
    assert manifest.overrides == ["network_alpha=4"] and not (tmp_path / "ignored").exists()


def test_existing_batch_is_not_replanned_without_force(runner, character_dataset, tmp_path):
    out = tmp_path / "batch"
    batch_plan(runner, character_dataset, out, "--sweep", "network_dim=16,32")
    again = runner.invoke(cli, ["batch", "plan", str(character_dataset), "--out", str(out), "--target-gpu", "rtx4090"])
    assert again.exit_code == 2 and "already holds a batch" in again.output


def test_slurm_script_runs_each_plan_as_an_array_task(runner, character_dataset, tmp_path):
    import os
    import subprocess

    out = tmp_path / "batch dir"
    batch_plan(runner, character_dataset, out, "--preset", "character", "--preset", "style", "--sweep", "network_dim=16,32")
    script = tmp_path / "train.sbatch"
    result = runner.invoke(cli, ["batch", "export-slurm", str(out), "-o", str(script), "--partition", "gpu",
                                 "--gpus-per-task", "2", "--time", "12:00:00"])
    assert result.exit_code == 0, result.output
    text = script.read_text()
    assert subprocess.run(["bash", "-n", str(script)]).returncode == 0
    assert "#SBATCH --array=0-3" in text and "#SBATCH --gpus-per-task=2" in text and "#SBATCH --partition=gpu" in text
    assert "#SBATCH --requeue" in text  # a preempted task comes back, and --resume-if-possible continues it
    manifest = json.loads((out / "batch.json").read_text())
    fake_python = tmp_path / "python"
    fake_python.write_text("#!/bin/sh\nprintf '%s\\n' \"$@\"\n")
    fake_python.chmod(0o755)
    patched = text.replace(text.split("exec ", 1)[1].split(" ", 1)[0], str(fake_python), 1)
    (tmp_path / "patched.sbatch").write_text(patched)
    for task, run in enumerate(manifest["runs"]):
        done = subprocess.run(["bash", str(tmp_path / "patched.sbatch")], capture_output=True, text=True,
                              env={**os.environ, "SLURM_ARRAY_TASK_ID": str(task)}, check=True)
        assert done.stdout.splitlines() == ["-m", "lorakit", "launch", "--resume-if-possible", run["plan_dir"]]


def test_slurm_export_refuses_to_overwrite_and_bad_directives(runner, character_dataset, tmp_path):
    out = tmp_path / "batch"
    batch_plan(runner, character_dataset, out, "--sweep", "network_dim=16,32")
    script = tmp_path / "s.sbatch"
    script.write_text("mine")
    again = runner.invoke(cli, ["batch", "export-slurm", str(out), "-o", str(script)])
    assert again.exit_code == 2 and script.read_text() == "mine"
    bad = runner.invoke(cli, ["batch", "export-slurm", str(out), "-o", str(tmp_path / "t.sbatch"), "--partition", "gpu; rm -rf /"])
    assert bad.exit_code == 2 and "#SBATCH" in bad.output


# --- running a batch with the fake trainer ------------------------------------------------------------

import os  # noqa: E402
import threading  # noqa: E402
from html.parser import HTMLParser  # noqa: E402
from pathlib import Path  # noqa: E402

from hubgen import fake_checkpoint  # noqa: E402

from lorakit.batch.run import LOCK_FILE, BatchRunOptions, run_batch  # noqa: E402
from lorakit.run.process import Stopper  # noqa: E402
from lorakit.watch.events import Step  # noqa: E402

FAST = ["max_train_steps=6", "mixed_precision=bf16", "sample_every_n_steps=3"]


def trainable_batch(runner, tmp_path, *args: str, sets=FAST) -> Path:
    """A batch for the fake trainer (CPU, bf16, 6 steps, samples at steps 3 and 6)."""
    from conftest import make_folder

    dataset = tmp_path / "robot data"
    make_folder(dataset / "5_zk robot", [(1024, 1024)] * 4)
    model = tmp_path / "base.safetensors"
    model.write_bytes(fake_checkpoint())
    out = tmp_path / "batch"
    words = [w for s in [f"pretrained_model_name_or_path={model}", *sets] for w in ("--set", s)]
    result = runner.invoke(cli, ["batch", "plan", str(dataset), "--out", str(out), "--target-gpu", "rtx4090",
                                 *words, *args], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return out


def record(plan_dir) -> dict:
    return json.loads((Path(plan_dir) / "run.json").read_text())


def test_a_failed_run_does_not_stop_the_others_and_status_says_why(runner, tmp_path, fake_trainer):
    presets = tmp_path / "mine"
    presets.mkdir()
    (presets / "lion.toml").write_text('[preset]\nkind = "optimizer"\n[values]\noptimizer_type = "Lion"\nlearning_rate = 3e-5\n')
    out = trainable_batch(runner, tmp_path, "--preset", "character", "--preset", "style", "--preset", "object",
                          "--preset", "character+lion", "--presets-dir", str(presets))
    result = runner.invoke(cli, ["batch", "run", str(out)])
    assert result.exit_code == 1, result.output
    states = {r["id"]: r["state"] for r in json.loads(runner.invoke(cli, ["batch", "status", str(out), "--json"]).output)}
    # Gate 4 refuses the Lion run before its start: the trainer's Python lacks lion_pytorch, which Lion imports
    assert states == {"01-character": "succeeded", "02-style": "succeeded", "03-object": "succeeded",
                      "04-character+lion": "not-started"}
    rows = json.loads(runner.invoke(cli, ["batch", "status", str(out), "--json"]).output)
    refused = next(r for r in rows if r["state"] == "not-started")
    assert "lion" in refused["why"].lower(), refused
    assert rows[-1]["id"] == "04-character+lion"  # failures sort after the finished runs
    text = runner.invoke(cli, ["batch", "status", str(out)]).output
    assert "★" in text and "not-started" in text


def test_status_formats_and_the_best_run(runner, tmp_path, fake_trainer):
    out = trainable_batch(runner, tmp_path, "--sweep", "network_dim=8,32")
    assert runner.invoke(cli, ["batch", "run", str(out)]).exit_code == 0
    rows = json.loads(runner.invoke(cli, ["batch", "status", str(out), "--json"]).output)
    assert [r["id"] for r in rows] == ["02-network_dim=32", "01-network_dim=8"]  # lower final loss first
    assert rows[0]["best"] and not rows[1]["best"]
    assert rows[0]["final_loss"] < rows[1]["final_loss"]
    assert rows[0]["output"].endswith("dogs-02-network_dim=32.safetensors") or rows[0]["output"].endswith(".safetensors")
    csv_text = runner.invoke(cli, ["batch", "status", str(out), "--csv"]).output
    assert csv_text.splitlines()[0].startswith("best,id,family,presets,sweep,state,steps,final_loss")
    assert "network_dim=32" in csv_text.splitlines()[1] and csv_text.splitlines()[1].startswith("★")
    markdown = runner.invoke(cli, ["batch", "status", str(out), "--markdown"]).output
    assert markdown.splitlines()[1].startswith("|---|") and "| ★ | 02-network_dim=32 |" in markdown


def test_an_interrupted_batch_resumes_without_repeating_finished_runs(runner, tmp_path, fake_trainer, monkeypatch):
    out = trainable_batch(runner, tmp_path, "--sweep", "network_dim=8,16,32",
                          sets=["max_train_steps=12", "mixed_precision=bf16", "save_state=true", "save_every_n_steps=2"])
    monkeypatch.setenv("FAKE_SDSCRIPTS_STEP_SECONDS", "0.05")
    stopper = Stopper()

    def stop_in_the_second_run(run_id, event):
        if run_id == "02-network_dim=16" and isinstance(event, Step) and event.step >= 5:
            stopper.stop()

    first = run_batch(out, BatchRunOptions(tensorboard=False), stopper=stopper, on_event=stop_in_the_second_run)
    assert [(o.run, o.state) for o in first.outcomes] == [("01-network_dim=8", "succeeded"),
                                                          ("02-network_dim=16", "interrupted")]
    assert first.stopped
    done_at = record(out / "01-network_dim=8")["ended"]
    second = run_batch(out, BatchRunOptions(tensorboard=False))
    actions = {o.run: (o.action, o.state) for o in second.outcomes}
    assert actions == {"01-network_dim=8": ("skip", "succeeded"), "02-network_dim=16": ("resume", "succeeded"),
                       "03-network_dim=32": ("start", "succeeded")}
    assert record(out / "01-network_dim=8")["ended"] == done_at  # not run again
    resumed = record(out / "02-network_dim=16")
    assert resumed["command"][-3:] == ["--resume", resumed["resumed_from"], "--skip_until_initial_step"]
    assert resumed["steps_done"] == resumed["total_steps"] == 12  # counted on from the saved step, not from 0


def test_failed_runs_rerun_only_when_asked(runner, tmp_path, fake_trainer, monkeypatch):
    out = trainable_batch(runner, tmp_path, "--sweep", "network_dim=8,16")
    monkeypatch.setenv("FAKE_SDSCRIPTS_FAIL", "crash")
    assert runner.invoke(cli, ["batch", "run", str(out)]).exit_code == 1
    monkeypatch.delenv("FAKE_SDSCRIPTS_FAIL")
    again = runner.invoke(cli, ["batch", "run", str(out)])
    assert again.output.count("skipped: failed before") == 2
    assert again.exit_code == 1  # the batch still holds failed runs
    retried = runner.invoke(cli, ["batch", "run", str(out), "--retry-failed"])
    assert retried.exit_code == 0, retried.output
    assert all(record(out / r)["state"] == "succeeded" for r in ("01-network_dim=8", "02-network_dim=16"))
    assert list((out / "01-network_dim=8" / "previous").iterdir())  # the failed attempt kept aside


def test_stop_on_failure_starts_no_new_run(runner, tmp_path, fake_trainer, monkeypatch):
    out = trainable_batch(runner, tmp_path, "--sweep", "network_dim=8,16,32")
    monkeypatch.setenv("FAKE_SDSCRIPTS_FAIL", "crash")
    result = runner.invoke(cli, ["batch", "run", str(out), "--stop-on-failure"])
    assert result.exit_code == 1
    assert "3 run(s): 0 succeeded, 1 failed or could not start, 0 interrupted, 2 not started." in result.output
    assert (out / "01-network_dim=8" / "run.json").is_file()
    assert not (out / "02-network_dim=16" / "run.json").exists()


def test_two_gpus_run_two_plans_at_once_each_on_its_own_card(runner, tmp_path, fake_trainer, monkeypatch):
    out = trainable_batch(runner, tmp_path, "--sweep", "network_dim=4,8,16,32")
    monkeypatch.setenv("FAKE_SDSCRIPTS_STEP_SECONDS", "0.15")
    running: set[str] = set()
    most = 0
    lock = threading.Lock()

    def watch(run_id, event):
        nonlocal most
        from lorakit.watch.events import Exited, Started
        with lock:
            if isinstance(event, Started):
                running.add(run_id)
                most = max(most, len(running))
            elif isinstance(event, Exited):
                running.discard(run_id)

    result = run_batch(out, BatchRunOptions(gpus=["0", "1"], tensorboard=False), on_event=watch)
    assert all(o.state == "succeeded" for o in result.outcomes)
    assert most == 2
    cards = {o.run: o.slot for o in result.outcomes}
    assert set(cards.values()) == {"0", "1"}
    for run_id, slot in cards.items():
        assert record(out / run_id)["environment"]["CUDA_VISIBLE_DEVICES"] == slot


def test_a_second_runner_is_refused_and_a_stale_lock_is_taken_over(runner, tmp_path, fake_trainer):
    out = trainable_batch(runner, tmp_path, "--sweep", "network_dim=8")
    import socket

    (out / LOCK_FILE).write_text(json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "started": "now"}))
    refused = runner.invoke(cli, ["batch", "run", str(out)])
    assert refused.exit_code == 1 and f"pid {os.getpid()}" in refused.output  # busy, not bad input
    assert not (out / "01-network_dim=8" / "run.json").exists()
    dead = subprocess_pid_that_exited()
    (out / LOCK_FILE).write_text(json.dumps({"pid": dead, "host": socket.gethostname(), "started": "then"}))
    taken = runner.invoke(cli, ["batch", "run", str(out)])
    assert taken.exit_code == 0, taken.output
    assert not (out / LOCK_FILE).exists()


def subprocess_pid_that_exited() -> int:
    import subprocess
    import sys

    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


class _Page(HTMLParser):
    def __init__(self):
        super().__init__()
        self.rows, self.lines, self.images = [], [], []

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "tr" and "data-run" in attrs:
            self.rows.append(attrs["data-run"])
        elif tag == "polyline":
            self.lines.append((attrs["data-run"], attrs["points"]))
        elif tag == "img":
            self.images.append((attrs["data-run"], attrs["src"]))


def test_report_shows_every_run_curve_and_sample(runner, tmp_path, fake_trainer):
    out = trainable_batch(runner, tmp_path, "--preset", "character", "--preset", "style", "--sweep", "network_dim=8,16")
    assert runner.invoke(cli, ["batch", "run", str(out)]).exit_code == 0
    result = runner.invoke(cli, ["batch", "report", str(out)])
    assert result.exit_code == 0, result.output
    page = _Page()
    page.feed((out / "report.html").read_text(encoding="utf-8"))
    ids = [r["id"] for r in json.loads((out / "batch.json").read_text())["runs"]]
    assert sorted(page.rows) == sorted(ids)
    assert sorted(run for run, _ in page.lines) == sorted(ids)
    assert all(len(points.split()) == 6 for _, points in page.lines)  # one point per step
    prompts = 3  # the character and style presets each have three prompt templates
    assert len(page.images) == len(ids) * prompts * 2  # samples at steps 3 and 6
    assert all(src.startswith("data:image/png;base64,") for _, src in page.images)
    assert {run for run, _ in page.images} == set(ids)


def test_tensorboard_sees_the_batch_as_one_hparams_experiment(runner, tmp_path, fake_trainer):
    import pytest

    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from tensorboard.plugins.hparams import plugin_data_pb2

    out = trainable_batch(runner, tmp_path, "--preset", "character", "--preset", "style", "--sweep", "network_dim=8,16")
    assert runner.invoke(cli, ["batch", "run", str(out)]).exit_code == 0
    experiment = EventAccumulator(str(out / "hparams"))
    experiment.Reload()
    content = experiment.PluginTagToContent("hparams")["_hparams_/experiment"]
    names = [info.name for info in plugin_data_pb2.HParamsPluginData.FromString(content).experiment.hparam_infos]
    assert names[0] == "network_dim"  # the swept key first, then what else differs
    assert {"task", "network_alpha"} <= set(names) and "seed" not in names  # what differs between the runs, only
    for run_id in ("01-character-network_dim=8", "04-style-network_dim=16"):
        (folder,) = (out / run_id / "tensorboard" / "lorakit").iterdir()
        events = EventAccumulator(str(folder))
        events.Reload()
        tags = events.PluginTagToContent("hparams")
        assert "_hparams_/session_start_info" in tags and "_hparams_/experiment" not in tags


def test_a_replanned_batch_trains_its_new_plans(runner, tmp_path, fake_trainer):
    out = trainable_batch(runner, tmp_path, "--sweep", "network_dim=8")
    assert runner.invoke(cli, ["batch", "run", str(out)]).exit_code == 0
    assert record(out / "01-network_dim=8")["steps_done"] == 6
    dataset, model = tmp_path / "robot data", tmp_path / "base.safetensors"
    replanned = runner.invoke(cli, ["batch", "plan", str(dataset), "--out", str(out), "--target-gpu", "rtx4090", "--force",
                                    "--sweep", "network_dim=8", "--set", f"pretrained_model_name_or_path={model}",
                                    "--set", "max_train_steps=8", "--set", "mixed_precision=bf16"])
    assert replanned.exit_code == 0, replanned.output
    again = runner.invoke(cli, ["batch", "run", str(out)])
    assert again.exit_code == 0, again.output
    assert "started again" in again.output
    assert record(out / "01-network_dim=8")["steps_done"] == 8


def test_without_tensorboard_a_batch_still_runs_and_says_so(runner, tmp_path, fake_trainer, monkeypatch):
    from lorakit.errors import UserError

    def missing(*args, **kwargs):
        raise UserError("TensorBoard summaries need the tensorboard package, which is not installed.",
                        fix="pip install 'lorakit[tensorboard]'")

    monkeypatch.setattr("lorakit.watch.tbwriter.write_experiment", missing)
    out = trainable_batch(runner, tmp_path, "--sweep", "network_dim=8")
    result = runner.invoke(cli, ["batch", "run", str(out), "--no-tensorboard"])
    assert result.exit_code == 0
    result = run_batch(out, BatchRunOptions(retry_failed=True))
    assert result.warnings and "tensorboard" in result.warnings[0]


def test_a_long_swept_value_gives_a_short_unique_run_id(runner, tmp_path):
    from lorakit.batch.manifest import run_id

    long_a, long_b = "/models/" + "a" * 150 + ".safetensors", "/models/" + "a" * 150 + "b.safetensors"
    ids = {run_id(1, "", {"pretrained_model_name_or_path": v}) for v in (long_a, long_b)}
    assert len(ids) == 2 and all(len(i) <= 63 for i in ids)


def test_report_never_overwrites_another_file(runner, tmp_path, fake_trainer):
    out = trainable_batch(runner, tmp_path, "--sweep", "network_dim=8")
    mine = tmp_path / "mine.html"
    mine.write_text("precious")
    refused = runner.invoke(cli, ["batch", "report", str(out), "-o", str(mine)])
    assert refused.exit_code == 2 and mine.read_text() == "precious"
    assert runner.invoke(cli, ["batch", "report", str(out), "-o", str(mine), "--force"]).exit_code == 0


def test_a_missing_plan_folder_is_skipped_with_the_fix(runner, tmp_path, fake_trainer):
    import shutil

    out = trainable_batch(runner, tmp_path, "--sweep", "network_dim=8,16")
    shutil.rmtree(out / "02-network_dim=16")
    result = runner.invoke(cli, ["batch", "run", str(out)])
    assert "plan folder" in result.output and "is missing" in result.output
    assert record(out / "01-network_dim=8")["state"] == "succeeded"
    assert runner.invoke(cli, ["batch", "report", str(out)]).exit_code == 0


def test_a_damaged_progress_file_is_reported_by_status(runner, character_dataset, tmp_path):
    from lorakit.batch.status import batch_status

    out = tmp_path / "batch"
    batch_plan(runner, character_dataset, out, "--sweep", "network_dim=16,32")
    assert batch_status(out).warnings == []  # never run: no progress file, nothing to say
    (out / "batch-run.json").write_text('{"runs": {"01-network_dim=16": ')
    status = batch_status(out)
    assert [row.state for row in status.rows] == ["planned", "planned"]
    assert len(status.warnings) == 1 and "cannot read" in status.warnings[0] and "batch-run.json" in status.warnings[0]


def test_a_damaged_progress_file_is_reported_by_batch_run_and_written_anew(runner, tmp_path, fake_trainer):
    out = trainable_batch(runner, tmp_path, "--sweep", "network_dim=8")
    (out / "batch-run.json").write_text("not json")
    result = runner.invoke(cli, ["batch", "run", str(out), "--no-tensorboard"])
    assert result.exit_code == 0, result.output
    assert "warning: cannot read" in result.output and "batch-run.json" in result.output
    assert "01-network_dim=8" in json.loads((out / "batch-run.json").read_text())["runs"]


def test_the_summary_counts_each_run_once():
    from lorakit.batch.run import BatchCounts, BatchResult, Outcome

    result = BatchResult(total=7, outcomes=[
        Outcome("a", "start", "", state="succeeded"), Outcome("b", "resume", "", state="succeeded"),
        Outcome("c", "start", "", state="failed"), Outcome("d", "start", "", error="Gate 4 failed"),
        Outcome("e", "restart", "", state="interrupted"), Outcome("f", "skip", "failed before"),
    ])
    assert result.counts() == BatchCounts(succeeded=2, failed=2, interrupted=1, not_started=2)  # f skipped, g not reached


def test_batch_status_prints_a_damaged_progress_file_as_a_warning(runner, character_dataset, tmp_path):
    out = tmp_path / "batch"
    batch_plan(runner, character_dataset, out, "--sweep", "network_dim=16,32")
    (out / "batch-run.json").write_text("not json")
    result = runner.invoke(cli, ["batch", "status", str(out), "--json"])
    assert result.exit_code == 0
    assert "warning: cannot read" in result.stderr and "batch-run.json" in result.stderr
    assert [row["state"] for row in json.loads(result.stdout)] == ["planned", "planned"]


def test_a_batch_compares_families_side_by_side(runner, character_dataset, tmp_path):
    out = tmp_path / "batch"
    result = batch_plan(runner, character_dataset, out, "--preset", "sdxl-base+character",
                        "--preset", "flux1-dev+character", "--sweep", "network_dim=16,32")
    assert result.exit_code == 0, result.output
    manifest = json.loads((out / "batch.json").read_text())
    assert [(r["id"], r["family"]) for r in manifest["runs"]] == [
        ("01-sdxl-base+character-network_dim=16", "sdxl"), ("02-sdxl-base+character-network_dim=32", "sdxl"),
        ("03-flux1-dev+character-network_dim=16", "flux1"), ("04-flux1-dev+character-network_dim=32", "flux1")]
    scripts = {json.loads((out / r["id"] / "plan.json").read_text())["script"] for r in manifest["runs"]}
    assert scripts == {"sdxl_train_network.py", "flux_train_network.py"}
    rows = json.loads(runner.invoke(cli, ["batch", "status", str(out), "--json"]).output)
    assert sorted(r["family"] for r in rows) == ["flux1", "flux1", "sdxl", "sdxl"]
    csv_lines = runner.invoke(cli, ["batch", "status", str(out), "--csv"]).output.splitlines()
    assert ",flux1,flux1-dev+character," in csv_lines[-1] or any(",flux1,flux1-dev+character," in line for line in csv_lines)
    report = runner.invoke(cli, ["batch", "report", str(out)])
    assert report.exit_code == 0, report.output
    html = (out / "report.html").read_text()
    assert "flux1-dev+character" in html and "sdxl-base+character" in html and ">flux1<" in html


def test_a_sweep_of_one_familys_key_is_typed_by_that_family(runner, character_dataset, tmp_path):
    flux = batch_plan(runner, character_dataset, tmp_path / "flux", "--preset", "flux1-dev+character",
                      "--sweep", "guidance_scale=1.0,2.0")
    assert flux.exit_code == 0, flux.output
    mixed = runner.invoke(cli, ["batch", "plan", str(character_dataset), "--out", str(tmp_path / "mixed"),
                                "--target-gpu", "rtx4090", "--preset", "sdxl-base", "--preset", "flux1-dev",
                                "--sweep", "guidance_scale=1.0,2.0"])
    assert mixed.exit_code == 2 and "not an argument of sdxl_train_network.py" in mixed.output
    assert not (tmp_path / "mixed").exists()
