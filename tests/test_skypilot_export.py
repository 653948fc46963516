"""`lorakit export skypilot`: a plan or a batch as SkyPilot managed jobs that SkyPilot's own loader reads."""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from conftest import make_plan

from lorakit.cli.main import cli


def export(runner, source: Path, output: Path, *args: str):
    return runner.invoke(cli, ["export", "skypilot", str(source), "-o", str(output), *args])


def test_a_plan_becomes_a_spot_managed_job_on_its_target_gpu(runner, tmp_path):
    plan = make_plan(runner, tmp_path)  # --target-gpu rtx4090; the dataset is "robot data"
    out = tmp_path / "job.yaml"
    result = export(runner, plan, out)
    assert result.exit_code == 0, result.output
    task = yaml.safe_load(out.read_text())
    assert task["name"] == "lorakit-robot-data"
    assert task["resources"]["accelerators"] == "RTX4090:1"
    assert task["resources"]["use_spot"] is True
    assert task["resources"]["job_recovery"]["max_restarts_on_errors"] == 2
    dataset = str(tmp_path / "robot data")
    model = str(tmp_path / "base model ü.safetensors")
    assert task["file_mounts"] == {str(plan): str(plan), dataset: dataset, model: model}
    assert task["setup"].endswith("&& lorakit setup") and task["setup"].startswith("pip install lorakit==")
    assert shlex.split(task["run"]) == ["lorakit", "launch", "--resume-if-possible", str(plan)]


def test_paths_with_quotes_and_spaces_survive_yaml_and_the_shell(runner, tmp_path):
    plan = make_plan(runner, tmp_path, out=tmp_path / "it's a \"plan\" $HOME")
    out = tmp_path / "job.yaml"
    assert export(runner, plan, out).exit_code == 0
    task = yaml.safe_load(out.read_text())
    assert shlex.split(task["run"])[-1] == str(plan)
    assert task["file_mounts"][str(plan)] == str(plan)


def test_a_bucket_mounts_the_plan_read_write_and_says_what_to_upload(runner, tmp_path):
    plan = make_plan(runner, tmp_path)
    out = tmp_path / "job.yaml"
    result = export(runner, plan, out, "--bucket", "s3://my-bucket/", "--on-demand", "--max-restarts", "0")
    assert result.exit_code == 0, result.output
    task = yaml.safe_load(out.read_text())
    assert task["file_mounts"][str(plan)] == {"source": "s3://my-bucket/plan", "mode": "MOUNT"}
    assert task["file_mounts"][str(tmp_path / "robot data")]["source"] == "s3://my-bucket/robot data"
    model = str(tmp_path / "base model ü.safetensors")
    assert task["file_mounts"][model] == model  # copied from here: a model is read, never written
    assert task["resources"]["use_spot"] is False and task["resources"]["job_recovery"]["max_restarts_on_errors"] == 0
    assert f"Copy {plan} to s3://my-bucket/plan" in result.output


def test_a_gpu_skypilot_has_no_name_for_needs_the_accelerator_option(runner, tmp_path):
    plan = make_plan(runner, tmp_path)
    plan_json = plan / "plan.json"
    plan_json.write_text(plan_json.read_text().replace('"catalog_id": "rtx4090"', '"catalog_id": "rtx3060-12gb"'))
    out = tmp_path / "job.yaml"
    refused = export(runner, plan, out)
    assert refused.exit_code != 0 and "--accelerator NAME" in refused.output and not out.exists()
    chosen = export(runner, plan, out, "--accelerator", "A10G")
    assert chosen.exit_code == 0, chosen.output
    assert yaml.safe_load(out.read_text())["resources"]["accelerators"] == "A10G:1"


def test_a_base_model_missing_here_is_refused_with_fetch_model(runner, tmp_path):
    plan = make_plan(runner, tmp_path)
    (tmp_path / "base model ü.safetensors").unlink()
    out = tmp_path / "job.yaml"
    refused = export(runner, plan, out)
    assert refused.exit_code != 0 and "lorakit fetch-model" in refused.output and not out.exists()


def test_an_existing_file_is_not_replaced_without_force(runner, tmp_path):
    plan = make_plan(runner, tmp_path)
    out = tmp_path / "job.yaml"
    out.write_text("mine")
    assert export(runner, plan, out).exit_code == 2 and out.read_text() == "mine"
    assert export(runner, plan, out, "--force").exit_code == 0 and "run:" in out.read_text()


def test_a_batch_becomes_one_task_file_per_planned_run(runner, character_dataset, tmp_path):
    from test_batch import batch_plan

    batch = tmp_path / "batch dir"
    batch_plan(runner, character_dataset, batch, "--sweep", "network_dim=16,32", "--target-gpu", "a100-80gb")
    jobs = tmp_path / "jobs"
    result = export(runner, batch, jobs)
    assert result.exit_code == 0, result.output
    runs = json.loads((batch / "batch.json").read_text())["runs"]
    files = sorted(jobs.glob("*.yaml"))
    assert [f.stem for f in files] == sorted(run["id"] for run in runs)
    for run in runs:
        task = yaml.safe_load((jobs / f"{run['id']}.yaml").read_text())
        assert task["resources"]["accelerators"] == "A100-80GB:1"
        assert shlex.split(task["run"])[-1] == str((batch / run["id"]).resolve())


# SkyPilot pins many packages; it may live in its own virtualenv, named by this variable.
SKY_PYTHON = os.environ.get("LORAKIT_TEST_SKYPILOT_PYTHON", sys.executable)
LOAD_WITH_SKY = """
import json, sys, sky
task = sky.Task.from_yaml(sys.argv[1])
(resources,) = task.resources
print(json.dumps({"run": task.run, "setup": task.setup, "accelerators": resources.accelerators,
                  "use_spot": resources.use_spot, "copied": sorted(task.file_mounts or {}),
                  "mounted": sorted(task.storage_mounts)}))
"""


def sky_imports() -> bool:
    return subprocess.run([SKY_PYTHON, "-c", "import sky"], capture_output=True).returncode == 0


@pytest.mark.skipif(not sky_imports(), reason="SkyPilot does not import here (install skypilot, or set "
                    "LORAKIT_TEST_SKYPILOT_PYTHON to a Python that has it)")
@pytest.mark.parametrize("bucket", [[], ["--bucket", "s3://my-bucket"]], ids=["copied", "bucket"])
def test_skypilots_own_loader_reads_the_task(runner, tmp_path, bucket):
    plan = make_plan(runner, tmp_path, out=tmp_path / "it's a plan")
    out = tmp_path / "job.yaml"
    assert export(runner, plan, out, *bucket).exit_code == 0
    loaded = json.loads(subprocess.run([SKY_PYTHON, "-c", LOAD_WITH_SKY, str(out)], capture_output=True, text=True,
                                       check=True).stdout)
    assert loaded["accelerators"] == {"RTX4090": 1} and loaded["use_spot"] is True
    assert shlex.split(loaded["run"]) == ["lorakit", "launch", "--resume-if-possible", str(plan)]
    folders = [str(plan), str(tmp_path / "robot data")]
    model = str(tmp_path / "base model ü.safetensors")
    assert loaded["mounted"] == (sorted(folders) if bucket else [])
    assert loaded["copied"] == ([model] if bucket else sorted([*folders, model]))
