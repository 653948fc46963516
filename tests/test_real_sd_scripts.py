"""The real sd-scripts judges lorakit's plans: its own parser, dataset config code and step arithmetic.

Needs sd-scripts (vendor/sd-scripts when populated, else ../shared/sd-scripts, or $LORAKIT_TEST_SD_SCRIPTS)
and a trainer Python with its requirements ($LORAKIT_TEST_TRAINER_PYTHON; .ci/run sets it). Without
them every test here is skipped with the reason. The plans are judged in one run of the trainer's
Python (run/verdict.py ask_many), as `lorakit doctor` judges one.
"""

from __future__ import annotations

import functools
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import REPO, builtin_preset_cases, make_folder, make_plan

from lorakit.cli.main import cli
from lorakit.config.family import DEFAULT_FAMILY
from lorakit.config.presets import PresetRegistry
from lorakit.kohya_gui.importer import import_gui_config
from lorakit.machine.trainer import TRAIN_SCRIPT, SdScriptsCheckout, describe_sd_scripts
from lorakit.plan.build import Plan, PlanRequest, write_plan
from lorakit.plan.build import make_plan as plan_in_memory
from lorakit.run.judge import verdict_findings
from lorakit.run.verdict import CheckTarget, TrainerVerdict, ask_many


def _sd_scripts() -> Path | None:
    candidates = [os.environ.get("LORAKIT_TEST_SD_SCRIPTS"), REPO / "vendor" / "sd-scripts", REPO.parent / "shared" / "sd-scripts"]
    return next((Path(c) for c in candidates if c and (Path(c) / TRAIN_SCRIPT).is_file()), None)


def _trainer_python() -> tuple[str | None, str]:
    python = os.environ.get("LORAKIT_TEST_TRAINER_PYTHON")
    if not python:
        return None, "LORAKIT_TEST_TRAINER_PYTHON names no trainer Python with sd-scripts' requirements"
    try:
        done = subprocess.run([python, "-c", "import torch, torchvision, accelerate, transformers, diffusers, voluptuous"],
                              capture_output=True, text=True, timeout=300)
    except (OSError, subprocess.SubprocessError) as exc:
        return None, f"the trainer Python {python} does not run: {exc}"
    if done.returncode != 0:
        return None, f"the trainer Python {python} lacks sd-scripts' requirements: {done.stderr.strip().splitlines()[-1]}"
    return python, ""


SD_SCRIPTS = _sd_scripts()
PYTHON, WHY_NOT = _trainer_python() if SD_SCRIPTS else (None, "")
pytestmark = [
    pytest.mark.skipif(SD_SCRIPTS is None, reason="no sd-scripts checkout (vendor/sd-scripts or ../shared/sd-scripts)"),
    pytest.mark.skipif(SD_SCRIPTS is not None and PYTHON is None, reason=WHY_NOT),
]

MODEL = "/models/sdxl-base.safetensors"
GPUS = {"small": "rtx3070-8gb", "large": "a100-80gb"}
FITS = ("speed", "off")
GUI_PRESETS = REPO / "tests" / "fixtures" / "kohya_gui_presets"


def other_family(preset: str) -> bool:
    return "+" in preset or PresetRegistry(include_user_dir=False).get(preset).family != DEFAULT_FAMILY


def builtin_presets() -> list[str]:
    return builtin_preset_cases()


def make_datasets(root: Path) -> dict[str, dict]:
    """Each dataset as PlanRequest arguments: Kohya folders of mixed sizes, with reg images, small images, a flat folder."""
    mixed = root / "mixed"
    make_folder(mixed / "10_sks dog", [(1024, 1024), (832, 1216), (1216, 832), (1536, 1024), (768, 1344)] * 2)
    make_folder(mixed / "3_sks dog closeup", [(1024, 1024), (896, 1152)])
    reg = root / "reg"
    make_folder(reg / "1_dog", [(1024, 1024)] * 5 + [(832, 1216)] * 2)
    small = root / "small"
    make_folder(small / "8_zk toy", [(640, 480), (512, 512), (800, 600), (1024, 1024), (600, 900)])
    flat = root / "flat"
    make_folder(flat, [(1024, 1024), (896, 1152), (1152, 896)] * 3)
    return {
        "mixed": {"dataset": mixed}, "reg": {"dataset": mixed, "reg": reg}, "upscaled": {"dataset": small},
        "flat-token": {"dataset": flat, "token": "zkx person"},
    }


# SDXL: every dataset, GPU and fit; the other families: what differs for them (sizes, buckets, fit), on fewer cases.
PRESET_CASES = [f"{preset}/{data}/{gpu}/fit-{fit}" for preset in builtin_presets()
                for data in (("mixed", "upscaled") if other_family(preset) else ("mixed", "reg", "upscaled", "flat-token"))
                for gpu in GPUS for fit in (("speed",) if other_family(preset) else FITS)]
GUI_CASES = [f"gui:{p.relative_to(GUI_PRESETS).with_suffix('')}" for p in sorted(GUI_PRESETS.glob("*.json"))
             + sorted(GUI_PRESETS.glob("families/*.json"))]  # the GUI's SDXL, then its FLUX.1 and SD 1.5 presets


def request_for(case: str, datasets: dict[str, dict], out: Path) -> PlanRequest:
    overrides = [f"pretrained_model_name_or_path={MODEL}"]
    if case.startswith("gui:"):
        imported = import_gui_config(GUI_PRESETS / f"{case[4:]}.json").imported()
        return PlanRequest(**datasets["mixed"], target_gpu=GPUS["large"], out=out, imported=imported, overrides=overrides)
    preset, data, gpu, fit = case.split("/")
    return PlanRequest(**datasets[data], presets=preset.split("+"), target_gpu=GPUS[gpu], fit=fit.removeprefix("fit-"),
                       out=out, overrides=overrides)


@pytest.fixture(scope="module")
def judged(tmp_path_factory) -> dict[str, tuple[Plan, TrainerVerdict]]:
    """Every case planned and written, then judged by the real sd-scripts in one run of the trainer's Python."""
    root = tmp_path_factory.mktemp("real")
    datasets = make_datasets(root / "data")
    plans = {}
    started = time.monotonic()
    for index, case in enumerate(PRESET_CASES + GUI_CASES):
        result = plan_in_memory(request_for(case, datasets, root / "plans" / str(index)))
        write_plan(result, force=True)  # a plan Gate 2 refuses is still held against sd-scripts
        plans[case] = result.plan
    planned = time.monotonic() - started
    assert PYTHON is not None
    verdicts = ask_many(PYTHON, checkout(), [CheckTarget.of(p) for p in plans.values()])
    accepted = [case for (case, plan), verdict in zip(plans.items(), verdicts, strict=True) if not _errors(plan, verdict)]
    print(f"\nsd-scripts {checkout().version} accepted {len(accepted)} of {len(plans)} plans: "
          f"{sum(1 for c in accepted if not c.startswith('gui:'))} of {len(PRESET_CASES)} preset × dataset × GPU × fit "
          f"cases, {sum(1 for c in accepted if c.startswith('gui:'))} of {len(GUI_CASES)} GUI imports "
          f"(planned in {planned:.1f} s, judged in {verdicts[0].seconds:.1f} s)")
    return {case: (plan, verdict) for (case, plan), verdict in zip(plans.items(), verdicts, strict=True)}


@functools.cache
def checkout() -> SdScriptsCheckout:
    assert SD_SCRIPTS is not None
    return describe_sd_scripts(SD_SCRIPTS)


def _errors(plan: Plan, verdict: TrainerVerdict) -> list[str]:
    assert PYTHON is not None
    found = verdict_findings(verdict, checkout(), plan, PYTHON, {}, set())
    return [f"{f.code}: {f.message}" for f in found if f.level == "error"]


@pytest.mark.parametrize("case", PRESET_CASES)
def test_every_preset_for_every_dataset_gpu_and_fit_passes_sd_scripts_own_code(judged, case):
    plan, verdict = judged[case]
    assert verdict.asked and verdict.counts is not None, (verdict.count_stage, verdict.count_error)
    assert _errors(plan, verdict) == []
    assert verdict.counts.total_steps == plan.total_steps and verdict.counts.num_train_images == plan.step_math.num_train_images


@pytest.mark.parametrize("case", GUI_CASES)
def test_plans_from_gui_imports_pass_sd_scripts_own_code_where_lorakit_passes_them(judged, case):
    plan, verdict = judged[case]
    refused = [f.code for f in plan.findings if f.level == "error" and f.code.startswith("params/")]
    if refused:  # e.g. bucket_reso_steps = 1: Gate 2 refuses what sd-scripts' own asserts refuse
        assert verdict.count_stage == "asserts", refused
        return
    assert verdict.asked and verdict.counts is not None, (verdict.count_stage, verdict.count_error)
    assert _errors(plan, verdict) == []


def drifted_copy(tmp_path: Path, dropped: str) -> Path:
    """sd-scripts whose train_network.setup_parser no longer has --DROPPED (the rest linked, not copied)."""
    assert SD_SCRIPTS is not None
    copy = tmp_path / "sd-scripts drifted"
    copy.mkdir()
    for entry in SD_SCRIPTS.iterdir():
        if entry.name != "train_network.py":
            (copy / entry.name).symlink_to(entry)
    text = (SD_SCRIPTS / "train_network.py").read_text(encoding="utf-8")
    assert text.count(f'"--{dropped}"') == 1
    (copy / "train_network.py").write_text(text.replace(f'"--{dropped}"', f'"--{dropped}_renamed"'), encoding="utf-8")
    return copy


@pytest.fixture
def real_plan(runner, tmp_path, cached_sdxl) -> Path:
    return make_plan(runner, tmp_path)


def doctor(runner, plan: Path, sd_scripts: Path) -> tuple[int, dict]:
    result = runner.invoke(cli, ["doctor", str(plan), "--sd-scripts", str(sd_scripts), "--python", str(PYTHON), "--json"])
    return result.exit_code, json.loads(result.output)


def test_doctor_names_a_key_the_installed_parser_lacks(runner, tmp_path, real_plan):
    copy = drifted_copy(tmp_path, "network_dim")
    code, report = doctor(runner, real_plan, copy)
    assert code == 1
    [unknown] = [f for f in report["findings"] if f["code"] == "env/unknown-argument"]
    assert unknown["key"] == "network_dim" and "config.toml sets network_dim" in unknown["message"]
    assert f"sd-scripts v0.10.1-5-g48d368fa ({report['sd_scripts_commit'][:8]})" in unknown["message"]  # its .sd-scripts-commit
    assert "remove network_dim" in unknown["fix"]


def test_doctor_with_the_pinned_sd_scripts_finds_nothing_wrong_and_caches_its_verdict(runner, real_plan):
    assert SD_SCRIPTS is not None
    code, report = doctor(runner, real_plan, SD_SCRIPTS)
    assert code == 0, [f for f in report["findings"] if f["level"] == "error"]
    assert report["sd_scripts_checked_by"].endswith("own parser (196 arguments) and dataset code")
    assert report["sd_scripts_counts"]["total_steps"] == 6 and report["sd_scripts_verdict_cached"] is False
    assert doctor(runner, real_plan, SD_SCRIPTS)[1]["sd_scripts_verdict_cached"] is True


def test_a_dataset_changed_after_planning_is_a_step_math_mismatch(runner, tmp_path, real_plan):
    assert SD_SCRIPTS is not None
    images = sorted((tmp_path / "robot data" / "5_zk robot").glob("*.png"))
    shutil.copy(images[0], images[0].with_name("extra.png"))
    code, report = doctor(runner, real_plan, SD_SCRIPTS)
    assert code == 1
    [mismatch] = [f for f in report["findings"] if f["code"] == "env/step-math-mismatch"]
    assert "num_train_images 25 (plan.json: 20)" in mismatch["message"]


def test_the_shipped_argument_tables_are_the_real_parsers_of_their_scripts():
    assert PYTHON is not None and SD_SCRIPTS is not None
    done = subprocess.run([sys.executable, str(REPO / "tools" / "derive_arguments.py"), "--python", PYTHON,
                           "--sd-scripts", str(SD_SCRIPTS), "--check"], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr[-2000:]
