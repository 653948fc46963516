"""Every built-in preset planned for several GPUs gives files sd-scripts accepts; golden files pin the layout.

Regenerate the golden files after an intended change with: LORAKIT_UPDATE_GOLDEN=1 pytest tests/test_rendered_files.py
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from conftest import REPO, builtin_preset_cases
from sdscripts_rules import config_problems, dataset_problems

from lorakit import __version__
from lorakit.plan.build import PlanRequest, make_plan, write_plan

GOLDEN = REPO / "tests" / "golden"
GPUS = ["rtx3070-8gb", "rtx3060-12gb", "rtx4090", "a100-80gb", "t4"]
MODEL = "/models/pony-v6.safetensors"


@pytest.mark.parametrize(("preset", "gpu"), [(p, g) for p in builtin_preset_cases() for g in GPUS])
def test_every_preset_on_every_gpu_renders_valid_files(character_dataset, tmp_path, preset, gpu):
    result = make_plan(PlanRequest(dataset=character_dataset, presets=preset.split("+"), target_gpu=gpu, out=tmp_path / "p",
                                   overrides=[f"pretrained_model_name_or_path={MODEL}"]))
    files = result.files
    assert config_problems(files["config.toml"], result.plan.script) == []
    assert dataset_problems(files["dataset.toml"]) == []
    assert subprocess.run(["bash", "-n"], input=files["launch.sh"], text=True).returncode == 0
    assert result.plan.total_steps > 0
    assert not [f for f in result.plan.findings if f.level == "error"], result.plan.findings


CASES = {
    "character-rtx4090": (["character"], "rtx4090", []),
    "style-adafactor-rtx3060": (["style", "adafactor"], "rtx3060-12gb", []),
    "kohya-example-a100": (["kohya-example"], "a100-80gb", []),
    "character-lowvram-rtx3070": (["character"], "rtx3070-8gb", []),
    "pony-character-rtx3090": (["pony", "character"], "rtx3090", [f"pretrained_model_name_or_path={MODEL}"]),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_golden_files(character_dataset, tmp_path, case):
    presets, gpu, overrides = CASES[case]
    out = tmp_path / "plan"
    result = make_plan(PlanRequest(dataset=character_dataset, presets=presets, target_gpu=gpu, out=out,
                                   overrides=overrides, sd_scripts="/opt/sd-scripts", python="/opt/venv/bin/python"))
    write_plan(result)
    for name in sorted(set(result.plan.files) - {"plan.json"}):
        text = (out / name).read_text(encoding="utf-8")
        text = text.replace(str(character_dataset), "<DATASET>").replace(str(out), "<PLAN>")
        text = text.replace(os.environ["LORAKIT_CACHE_DIR"], "<LORAKIT_CACHE>")
        text = text.replace(f"lorakit {__version__}", "lorakit <VERSION>")
        golden = GOLDEN / case / name
        if os.environ.get("LORAKIT_UPDATE_GOLDEN"):
            golden.parent.mkdir(parents=True, exist_ok=True)
            golden.write_text(text, encoding="utf-8")
        assert golden.is_file(), f"missing golden file {golden}; run with LORAKIT_UPDATE_GOLDEN=1"
        assert text == golden.read_text(encoding="utf-8"), f"{case}/{name} differs from its golden file"


def test_help_is_fast_and_imports_nothing_heavy():
    code = ("import sys, runpy; sys.argv = ['lorakit', '--help']\n"
            "try:\n    runpy.run_module('lorakit', run_name='__main__')\nexcept SystemExit:\n    pass\n"
            "heavy = {'torch', 'tensorboard', 'huggingface_hub', 'accelerate', 'pydantic', 'jinja2', 'rich'} & set(sys.modules)\n"
            "print(sorted(heavy))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip().splitlines()[-1] == "[]"


def test_planning_never_imports_training_packages(character_dataset, tmp_path):
    code = ("import sys\nfrom lorakit.cli.main import main\nsys.argv = ['lorakit', 'plan', sys.argv[1], '--target-gpu', 'rtx4090', '--out', sys.argv[2]]\n"
            "try:\n    main()\nexcept SystemExit:\n    pass\n"
            "print(sorted({'torch', 'tensorboard', 'huggingface_hub', 'accelerate'} & set(sys.modules)))")
    done = subprocess.run([sys.executable, "-c", code, str(character_dataset), str(tmp_path / "p")],
                          capture_output=True, text=True, check=True)
    assert done.stdout.strip().splitlines()[-1] == "[]"
