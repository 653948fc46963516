"""`lorakit batch`: plans for every combination, a manifest, runs, status, report, Slurm."""

from __future__ import annotations

import json
import tomllib

from lorakit.cli import cli


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
    manifest = json.loads((out / "batch.json").read_text())
    fake_python = tmp_path / "python"
    fake_python.write_text("#!/bin/sh\nprintf '%s\\n' \"$@\"\n")
    fake_python.chmod(0o755)
    patched = text.replace(text.split("exec ", 1)[1].split(" ", 1)[0], str(fake_python), 1)
    (tmp_path / "patched.sbatch").write_text(patched)
    for task, run in enumerate(manifest["runs"]):
        done = subprocess.run(["bash", str(tmp_path / "patched.sbatch")], capture_output=True, text=True,
                              env={**os.environ, "SLURM_ARRAY_TASK_ID": str(task)}, check=True)
        assert done.stdout.splitlines() == ["-m", "lorakit", "launch", run["plan_dir"]]


def test_slurm_export_refuses_to_overwrite_and_bad_directives(runner, character_dataset, tmp_path):
    out = tmp_path / "batch"
    batch_plan(runner, character_dataset, out, "--sweep", "network_dim=16,32")
    script = tmp_path / "s.sbatch"
    script.write_text("mine")
    again = runner.invoke(cli, ["batch", "export-slurm", str(out), "-o", str(script)])
    assert again.exit_code == 2 and script.read_text() == "mine"
    bad = runner.invoke(cli, ["batch", "export-slurm", str(out), "-o", str(tmp_path / "t.sbatch"), "--partition", "gpu; rm -rf /"])
    assert bad.exit_code == 2 and "#SBATCH" in bad.output
