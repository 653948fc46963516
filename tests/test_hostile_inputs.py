"""Bad input of every kind ends in one clear paragraph with a fix and a non-zero exit, never a traceback,
and absurd sizes are refused up front with the limit they cross (README, Limits)."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest
from conftest import make_folder
from imagegen import write_png

from lorakit.cli.main import cli

DEEP = "[" * 100_000 + "]" * 100_000
NOT_UTF8 = b'[preset]\ndescription = "caf\xe9 \xff"\n'


def invoke(runner, *args: str):
    result = runner.invoke(cli, list(args))
    assert "Traceback" not in result.output
    assert not result.exception or isinstance(result.exception, SystemExit), repr(result.exception)
    return result


def plan_args(dataset: Path, tmp_path: Path, *sets: str) -> list[str]:
    return ["plan", str(dataset), "--target-gpu", "rtx4090", "--out", str(tmp_path / "plan"),
            *[word for s in sets for word in ("--set", s)]]


# --- files lorakit reads ----------------------------------------------------------------------------

def test_a_user_preset_that_is_not_utf8_is_named_and_the_others_are_still_listed(runner):
    bad = Path(os.environ["LORAKIT_PRESETS_DIR"]) / "mine.toml"
    bad.write_bytes(NOT_UTF8)
    result = invoke(runner, "presets")
    assert result.exit_code == 0
    assert "character-standard" in result.output and "sdxl-base" in result.output
    assert f"preset file {bad} cannot be read: not UTF-8 text" in result.output
    assert "Fix: save it as UTF-8 TOML" in result.output


def test_using_a_preset_that_is_not_utf8_is_a_clear_error(runner, character_dataset, tmp_path):
    bad = Path(os.environ["LORAKIT_PRESETS_DIR"]) / "mine.toml"
    bad.write_bytes(NOT_UTF8)
    for args in (["presets", "mine"], [*plan_args(character_dataset, tmp_path), "--preset", "mine"]):
        result = invoke(runner, *args)
        assert result.exit_code == 2
        assert f"lorakit: preset file {bad} cannot be read: not UTF-8 text (byte 27 cannot be decoded)" in result.output


def test_a_preset_nested_too_deeply_is_a_clear_error(runner):
    (Path(os.environ["LORAKIT_PRESETS_DIR"]) / "deep.toml").write_text(f"[values]\nseed = {DEEP}\n", encoding="utf-8")
    result = invoke(runner, "presets", "deep")
    assert result.exit_code == 2 and "nested too deeply" in result.output


def test_a_gui_json_nested_100000_deep_is_a_clear_error(runner, character_dataset, tmp_path):
    gui = tmp_path / "deep.json"
    gui.write_text(DEEP, encoding="utf-8")
    for args in (["import", "kohya-gui", str(gui)], [*plan_args(character_dataset, tmp_path), "--from-kohya-gui", str(gui)]):
        result = invoke(runner, *args)
        assert result.exit_code == 2
        assert "is not valid JSON: the JSON is nested too deeply" in result.output and "Fix:" in result.output


def test_a_huge_gui_json_is_refused_without_reading_it_all(runner, tmp_path):
    gui = tmp_path / "huge.json"
    with open(gui, "wb") as f:
        f.truncate(5 * 1024 * 1024)  # sparse: 5 MiB of zero bytes
    result = invoke(runner, "import", "kohya-gui", str(gui))
    assert result.exit_code == 2 and "larger than 4 MiB" in result.output


def test_a_calibration_file_that_is_not_utf8_is_a_clear_error(runner, character_dataset, tmp_path):
    Path(os.environ["LORAKIT_CALIBRATION"]).write_bytes(b"[gpus.rtx4090]\nnote = \"\xff\"\n")
    result = invoke(runner, *plan_args(character_dataset, tmp_path))
    assert result.exit_code == 2
    assert "cannot read the calibration file" in result.output and "not UTF-8 text" in result.output


@pytest.mark.parametrize("content", [DEEP.encode(), b'{"name": "\xff"}'], ids=["deep", "not-utf8"])
def test_damaged_plan_and_batch_records_are_clear_errors(runner, character_dataset, tmp_path, content):
    plan = tmp_path / "plan"
    assert invoke(runner, *plan_args(character_dataset, tmp_path)).exit_code == 0
    (plan / "plan.json").write_bytes(content)
    for args in (["launch", str(plan), "--dry-run"], ["export", "kohya-gui", str(plan)], ["calibrate", str(plan)]):
        result = invoke(runner, *args)
        assert result.exit_code == 2 and f"cannot read {plan / 'plan.json'}" in result.output
    batch = tmp_path / "batch"
    batch.mkdir()
    (batch / "batch.json").write_bytes(content)
    result = invoke(runner, "batch", "status", str(batch))
    assert result.exit_code == 2 and f"cannot read {batch / 'batch.json'}" in result.output


def test_a_run_json_nested_too_deeply_does_not_break_calibration(runner, character_dataset, tmp_path):
    plan = tmp_path / "plan"
    assert invoke(runner, *plan_args(character_dataset, tmp_path)).exit_code == 0
    (plan / "run.json").write_text(DEEP, encoding="utf-8")
    result = invoke(runner, "calibrate", str(plan), "--json")
    assert "nested too deeply" in result.output


# --- values -----------------------------------------------------------------------------------------

@pytest.mark.parametrize("setting", ["learning_rate=nan", "text_encoder_lr=inf", "network_alpha=nan",
                                     "min_snr_gamma=-inf", "noise_offset=1e999"])
def test_nan_and_infinite_numbers_are_refused(runner, character_dataset, tmp_path, setting):
    result = invoke(runner, *plan_args(character_dataset, tmp_path, setting))
    assert result.exit_code == 2 and "is not a finite number" in result.output


@pytest.mark.parametrize("setting, limit", [
    ("max_train_steps=1000000000", "1,000,000"), ("max_train_epochs=1000000000", "1,000,000"),
    ("seed=99999999999999999999999", "4,294,967,295"), ("bucket_reso_steps=1000000000", "16,384"),
    ("steps_per_image_max=1000000000", "100,000"),
])
def test_huge_integers_are_refused_with_the_limit(runner, character_dataset, tmp_path, setting, limit):
    started = time.monotonic()
    result = invoke(runner, *plan_args(character_dataset, tmp_path, setting))
    assert result.exit_code == 2 and f"above lorakit's limit of {limit}" in result.output
    assert time.monotonic() - started < 30


def test_a_huge_resolution_is_refused_with_the_limit(runner, character_dataset, tmp_path):
    result = invoke(runner, *plan_args(character_dataset, tmp_path, "resolution=100000000"))
    assert result.exit_code == 2 and "limit of 16384 px a side" in result.output


def test_a_bucket_step_that_rounds_the_smallest_bucket_to_zero_is_a_clear_error(runner, character_dataset, tmp_path):
    result = invoke(runner, *plan_args(character_dataset, tmp_path, "bucket_reso_steps=1024", "min_bucket_reso=512",
                                       "max_bucket_reso=2048"))
    assert result.exit_code == 2 and "min_bucket_reso 512 rounds down to 0" in result.output


@pytest.mark.parametrize("name", ["", " ", "a/b"])
def test_an_output_name_that_is_no_file_name_is_refused(runner, character_dataset, tmp_path, name):
    result = invoke(runner, *plan_args(character_dataset, tmp_path, f"output_name={name}"))
    assert result.exit_code == 2 and "cannot be used as a file name" in result.output


def test_a_one_megabyte_output_name_is_a_gate_error(runner, character_dataset, tmp_path):
    result = invoke(runner, *plan_args(character_dataset, tmp_path, "output_name=" + "x" * 1_000_000))
    assert result.exit_code == 1 and "params/output-name-too-long" in result.output


def test_a_one_megabyte_value_is_refused_cleanly(runner, character_dataset, tmp_path):
    result = invoke(runner, *plan_args(character_dataset, tmp_path, "max_train_steps=" + "9" * 1_000_000))
    assert result.exit_code == 2 and "max_train_steps" in result.output


# --- sizes ------------------------------------------------------------------------------------------

def test_a_run_over_the_step_limit_is_refused_with_the_limit(runner, tmp_path):
    dataset = tmp_path / "d"
    make_folder(dataset / "1000_x", [(1024, 1024)] * 4)
    result = invoke(runner, *plan_args(dataset, tmp_path, "max_train_epochs=1000", "train_batch_size=1"))
    assert result.exit_code == 2
    assert "would train 4,000,000 steps" in result.output and "at most 1,000,000 steps" in result.output


def test_too_many_checkpoints_are_refused_with_the_limit(runner, character_dataset, tmp_path):
    result = invoke(runner, *plan_args(character_dataset, tmp_path, "max_train_steps=1000000", "save_every_n_steps=1"))
    assert result.exit_code == 2
    assert "save a checkpoint 1,000,000 times; lorakit plans at most 10,000" in result.output


def test_too_many_sample_points_are_refused_with_the_limit(runner, character_dataset, tmp_path):
    result = invoke(runner, *plan_args(character_dataset, tmp_path, "max_train_steps=1000000", "sample_every_n_steps=1",
                                       "save_every_n_epochs=none"))
    assert result.exit_code == 2 and "make sample images 1,000,000 times" in result.output


def test_saves_and_samples_are_listed_in_time_that_grows_with_the_files_not_the_steps():
    from lorakit.dataset.steps import StepMath, predict_sample_steps, predict_saves

    math_ = StepMath(num_train_images=1, num_reg_images=0, reg_samples=0, unused_reg_images=0, buckets=[],
                     batch_size=1, gradient_accumulation_steps=1, num_processes=1, batches_per_epoch=1,
                     batches_per_process=1, steps_per_epoch=1, epochs=1_000_000, total_steps=1_000_000,
                     mean_ar_error=None, upscaled_images=0, max_upscale=1.0)
    started = time.monotonic()
    saves = predict_saves(math_, output_name="x", extension="safetensors", save_every_n_epochs=100_000,
                          save_every_n_steps=100, save_last_n_steps=300)
    samples = predict_sample_steps(math_, sample_every_n_steps=None, sample_every_n_epochs=250_000)
    assert time.monotonic() - started < 1.0
    assert len(saves) == 10_000 + 9 + 1 and sum(s.kept for s in saves) == 4 + 9 + 1
    assert samples == [250_000, 500_000, 750_000, 1_000_000]


def test_a_batch_of_too_many_combinations_is_refused_before_planning(runner, character_dataset, tmp_path):
    values = ",".join(str(n) for n in range(1, 101))
    started = time.monotonic()
    result = invoke(runner, "batch", "plan", str(character_dataset), "--target-gpu", "rtx4090", "--out",
                    str(tmp_path / "b"), "--sweep", f"network_dim={values}", "--sweep", f"seed={values}",
                    "--sweep", "network_alpha=1,2,4,8,16,32,64,128,256,512")
    assert time.monotonic() - started < 10
    assert result.exit_code == 2
    assert "the batch has 100,000 combinations (100 × 100 × 10); lorakit plans at most 200 runs" in result.output
    assert "--max-runs 100000" in result.output
    assert not (tmp_path / "b").exists()


def test_max_runs_raises_the_batch_limit_and_progress_is_shown(runner, character_dataset, tmp_path):
    args = ["batch", "plan", str(character_dataset), "--target-gpu", "rtx4090", "--out", str(tmp_path / "b"),
            "--sweep", "network_dim=8,16,32"]
    assert invoke(runner, *args, "--max-runs", "2").exit_code == 2
    result = invoke(runner, *args, "--max-runs", "3")
    assert result.exit_code == 0, result.output
    assert [line for line in result.output.splitlines() if line.startswith("planning ")] == [
        "planning 1/3: 01-network_dim=8", "planning 2/3: 02-network_dim=16", "planning 3/3: 03-network_dim=32"]
    assert len(json.loads((tmp_path / "b" / "batch.json").read_text())["runs"]) == 3


@pytest.mark.parametrize("value", ["num_processes=1000000000", "num_machines=1000000000"])
def test_absurd_process_counts_are_refused_with_the_limit(runner, tmp_path, value):
    write_png(tmp_path / "data" / "10_sks dog" / "a.png", 1024, 1024)
    result = runner.invoke(cli, ["plan", str(tmp_path / "data"), "--target-gpu", "rtx4090", "--out", str(tmp_path / "plan"),
                                 "--set", value])
    assert result.exit_code == 2 and "limit of 1,024" in result.output and "Traceback" not in result.output

