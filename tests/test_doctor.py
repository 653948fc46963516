"""`lorakit doctor` (Gate 4): each problem of the trainer's environment is found and comes with the command that fixes it."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import pytest
from conftest import FAKE_SD_SCRIPTS, make_plan

from lorakit import SD_SCRIPTS_COMMIT
from lorakit.cli.main import cli
from lorakit.plan.build import load_plan
from lorakit.run.doctor import needed_disk_gib, read_requirements, sd_scripts_commit


def doctor(runner, *args: str) -> tuple[int, dict]:
    result = runner.invoke(cli, ["doctor", *args, "--json"])
    return result.exit_code, json.loads(result.output)


def codes(report: dict, level: str | None = None) -> list[str]:
    return [f["code"] for f in report["findings"] if level is None or f["level"] == level]


def finding(report: dict, code: str) -> dict:
    return next(f for f in report["findings"] if f["code"] == code)


def test_a_ready_environment_passes_with_a_loud_cpu_warning(runner, tmp_path, fake_trainer):
    plan = make_plan(runner, tmp_path)
    code, report = doctor(runner, str(plan))
    assert code == 0, report
    assert codes(report, "error") == []
    assert "env/no-cuda" in codes(report, "warning") and report["cpu"] is True
    assert report["sd_scripts"] == str(FAKE_SD_SCRIPTS) and report["sd_scripts_found_by"] == "LORAKIT_SD_SCRIPTS"
    assert report["sd_scripts_commit"] == "unknown"  # a folder inside lorakit's repository is not a checkout
    assert report["packages"]["torch"] == "0.0.0+fake" and report["packages"]["rich"]
    assert report["base_model"].endswith("base model ü.safetensors: local file (768 bytes)")


def test_text_output_lists_what_was_found(runner, tmp_path, fake_trainer):
    plan = make_plan(runner, tmp_path)
    result = runner.invoke(cli, ["doctor", str(plan)])
    assert "sd-scripts:" in result.output and "trainer Python:" in result.output
    assert "CUDA devices: 0 → training on the CPU" in result.output


def test_missing_sd_scripts_names_the_submodule_command(runner, tmp_path, monkeypatch):
    monkeypatch.setenv("LORAKIT_FAKE_GPU", "none")
    code, report = doctor(runner)
    assert code == 1
    assert report["sd_scripts_found_by"] == "vendor/sd-scripts"
    assert "git submodule update --init vendor/sd-scripts" in finding(report, "env/sd-scripts-missing")["fix"]


def test_a_python_that_does_not_run(runner, tmp_path, fake_trainer):
    code, report = doctor(runner, "--python", str(tmp_path / "no such python"))
    assert code == 1
    assert "--python" in finding(report, "env/python-broken")["fix"]


def test_requirements_the_plan_does_not_import_only_warn_and_the_fix_installs_exactly_them(runner, tmp_path, fake_trainer):
    sd = tmp_path / "sd scripts"
    shutil.copytree(FAKE_SD_SCRIPTS, sd)
    (sd / "requirements.txt").write_text("rich==0.0.1\nsurely-not-installed-package==1.0\npydantic  # ok\n-e .\n")
    code, report = doctor(runner, "--sd-scripts", str(sd))
    assert code == 0, report
    missing = finding(report, "env/requirements-missing")
    assert missing["level"] == "warning" and "surely-not-installed-package" in missing["message"]
    assert missing["fix"] == f"{sys.executable} -m pip install surely-not-installed-package==1.0"
    assert finding(report, "env/requirements-version")["fix"] == f"{sys.executable} -m pip install rich==0.0.1"
    assert "-r requirements.txt" not in json.dumps(report)  # its "-e ." would write into the checkout


def test_requirements_file_is_read_like_pip():
    assert read_requirements(FAKE_SD_SCRIPTS / "requirements.txt") == {"rich": None, "pydantic": None}


def test_a_module_that_does_not_import(runner, tmp_path, fake_trainer, monkeypatch):
    broken = tmp_path / "env"
    (broken / "accelerate").mkdir(parents=True)
    (broken / "accelerate" / "__init__.py").write_text("raise ImportError('accelerate is broken here')\n")
    shutil.copytree(fake_trainer.parent / "fake_trainer_env" / "torch", broken / "torch")
    monkeypatch.setenv("PYTHONPATH", str(broken))
    code, report = doctor(runner)
    assert code == 1
    problem = finding(report, "env/missing-module")
    assert "accelerate is broken here" in problem["message"]
    assert problem["fix"] == f"{sys.executable} -m pip install accelerate"


def test_xformers_is_checked_only_when_the_plan_asks(runner, tmp_path, fake_trainer):
    plain = make_plan(runner, tmp_path / "a")
    assert "env/missing-module" not in codes(doctor(runner, str(plain))[1])
    asks = make_plan(runner, tmp_path / "b", "xformers=true", "sdpa=false")
    code, report = doctor(runner, str(asks))
    assert code == 1
    assert "pip install xformers" in finding(report, "env/missing-module")["fix"]


def test_fp16_cannot_train_on_the_cpu(runner, tmp_path, fake_trainer):
    plan = make_plan(runner, tmp_path, "mixed_precision=fp16", "no_half_vae=true")
    code, report = doctor(runner, str(plan))
    assert code == 1
    assert "mixed_precision=bf16" in finding(report, "env/cpu-fp16")["fix"]


def test_a_gpu_machine_gets_no_cpu_warning(runner, tmp_path, fake_trainer, monkeypatch):
    monkeypatch.setenv("LORAKIT_FAKE_GPU", "rtx4090")
    plan = make_plan(runner, tmp_path, "mixed_precision=fp16", "no_half_vae=true")
    code, report = doctor(runner, str(plan))
    assert code == 0 and report["cpu"] is False and report["cuda_devices"] == 1
    assert "env/no-cuda" not in codes(report)


def test_more_processes_than_gpus(runner, tmp_path, fake_trainer, monkeypatch):
    monkeypatch.setenv("LORAKIT_FAKE_GPU", "rtx4090")
    plan = make_plan(runner, tmp_path, "num_processes=2")
    code, report = doctor(runner, str(plan))
    assert code == 1 and "num_processes=1" in finding(report, "env/gpus-too-few")["fix"]
    code, report = doctor(runner, str(plan), "--gpus", "0")
    assert "give 2 ids with --gpus" in finding(report, "env/gpus-too-few")["fix"]


def test_a_missing_base_model_is_an_error(runner, tmp_path, fake_trainer):
    plan = make_plan(runner, tmp_path)
    (tmp_path / "base model ü.safetensors").unlink()
    code, report = doctor(runner, str(plan))
    assert code == 1
    missing = finding(report, "model/not-found")
    assert missing["level"] == "error" and "base model ü.safetensors" in missing["message"]


def test_a_hub_id_is_resolved_through_the_hub_cache(runner, tmp_path, fake_trainer):
    plan = make_plan(runner, tmp_path, "pretrained_model_name_or_path=stabilityai/stable-diffusion-xl-base-1.0")
    code, report = doctor(runner, str(plan))
    assert code == 0
    assert report["base_model"].startswith("stabilityai/stable-diffusion-xl-base-1.0@main:sd_xl_base_1.0.safetensors: cached at ")


@pytest.mark.skipif(shutil.which("git") is None, reason="git is not installed")
def test_commit_of_a_real_checkout_and_a_warning_for_another_one(runner, tmp_path, fake_trainer):
    git = shutil.which("git")
    sd = tmp_path / "sd-scripts"
    shutil.copytree(FAKE_SD_SCRIPTS, sd)
    for args in (["init", "-q"], ["add", "-A"], ["-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "x"]):
        subprocess.run([git, "-C", str(sd), *args], check=True)
    commit = sd_scripts_commit(sd)
    assert len(commit) == 40 and commit != SD_SCRIPTS_COMMIT
    code, report = doctor(runner, "--sd-scripts", str(sd))
    assert report["sd_scripts_commit"] == commit
    assert f"checkout {SD_SCRIPTS_COMMIT}" in finding(report, "env/sd-scripts-other-commit")["fix"]


def test_disk_need_counts_kept_files_and_states(runner, tmp_path, fake_trainer):
    plain = load_plan(make_plan(runner, tmp_path / "a", "save_every_n_steps=2"))
    states = load_plan(make_plan(runner, tmp_path / "b", "save_every_n_steps=2", "save_state=true"))
    assert needed_disk_gib(states) == pytest.approx(4 * needed_disk_gib(plain))


def test_launch_refuses_what_doctor_refuses(runner, tmp_path, fake_trainer):
    plan = make_plan(runner, tmp_path, "mixed_precision=fp16", "no_half_vae=true")
    result = runner.invoke(cli, ["launch", str(plan)])
    assert result.exit_code == 1
    assert "env/cpu-fp16" in result.output and "the trainer was not started" in result.output
    assert not (plan / "run.json").exists()


def test_a_multi_machine_plan_needs_only_this_machines_share_of_gpus(runner, tmp_path, fake_trainer, monkeypatch):
    monkeypatch.setenv("LORAKIT_FAKE_GPU", "rtx4090,rtx4090")
    plan = make_plan(runner, tmp_path, "num_processes=4", "num_machines=2", "machine_rank=1",
                     "main_process_ip=10.0.0.1", "main_process_port=29500")
    code, report = doctor(runner, str(plan))
    assert "env/gpus-too-few" not in codes(report), report


def test_gpu_ids_must_name_devices_that_exist(runner, tmp_path, fake_trainer, monkeypatch):
    monkeypatch.setenv("LORAKIT_FAKE_GPU", "rtx4090,rtx4090")
    plan = make_plan(runner, tmp_path)
    for ids in ("a,b", "0,5"):
        code, report = doctor(runner, str(plan), "--gpus", ids)
        assert code == 1 and finding(report, "env/bad-gpu-ids")["level"] == "error"


def test_a_disk_that_cannot_be_read_is_a_warning(runner, tmp_path, fake_trainer, monkeypatch):
    plan = make_plan(runner, tmp_path)

    def unreadable(path):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr("lorakit.run.doctor.free_disk_gib", unreadable)
    code, report = doctor(runner, str(plan))
    assert code == 0 and report["free_disk_gib"] is None
    unknown = finding(report, "env/disk-unknown")
    assert unknown["level"] == "warning" and "could not be read (Permission denied)" in unknown["message"]
    assert "df -h" in unknown["fix"]
