"""Calibration: a per-GPU file changes the estimate, and `lorakit calibrate` derives it from measured runs
(run.json as `lorakit launch` writes it: state, peak_vram_gib, seconds_per_step)."""

from __future__ import annotations

import json

import pytest
import tomllib

from lorakit.cli.main import cli
from lorakit.plan.assumptions import load_calibration


def plan_for(runner, dataset, out, gpu="rtx4090", *extra):
    result = runner.invoke(cli, ["plan", str(dataset), "--preset", "character", "--target-gpu", gpu, "--out", str(out),
                                 *extra])
    assert result.exit_code == 0, result.output
    return json.loads((out / "plan.json").read_text())


def write_run(plan_dir, **fields):
    run = {"state": "succeeded", "pid": 1234, "exit_code": 0, "peak_vram_gib": None, "seconds_per_step": None} | fields
    (plan_dir / "run.json").write_text(json.dumps(run), encoding="utf-8")


def test_a_calibration_file_changes_the_estimate_and_says_so(runner, character_dataset, tmp_path, monkeypatch):
    before = plan_for(runner, character_dataset, tmp_path / "a")
    calibration = tmp_path / "calibration.toml"
    calibration.write_text("[gpus.rtx4090]\noverhead_gib = 2.5\nefficiency = 0.05\n", encoding="utf-8")
    monkeypatch.setenv("LORAKIT_CALIBRATION", str(calibration))
    after = plan_for(runner, character_dataset, tmp_path / "b")
    assert after["vram"]["calibrated"] is True and after["time"]["calibrated"] is True
    assert str(calibration) in after["vram"]["overhead_source"]
    assert after["vram"]["components"]["cuda_overhead"] == 2.5
    assert after["values"]["train_batch_size"]["value"] == before["values"]["train_batch_size"]["value"]
    assert after["vram"]["estimate_gib"] == pytest.approx(before["vram"]["estimate_gib"] + 1.5, abs=1e-3)
    assert after["time"]["seconds_per_step"] > 2 * before["time"]["seconds_per_step"]
    other_gpu = plan_for(runner, character_dataset, tmp_path / "c", "a100-80gb")
    assert other_gpu["vram"]["calibrated"] is False


def test_calibrate_derives_overhead_and_efficiency_that_reproduce_the_run(runner, character_dataset, tmp_path, monkeypatch):
    plan_dir = tmp_path / "run one"
    first = plan_for(runner, character_dataset, plan_dir)
    write_run(plan_dir, peak_vram_gib=14.0, seconds_per_step=3.1)
    calibration = tmp_path / "cal dir" / "calibration.toml"
    result = runner.invoke(cli, ["calibrate", str(plan_dir), "--file", str(calibration)])
    assert result.exit_code == 0, result.output
    entry = tomllib.loads(calibration.read_text(encoding="utf-8"))["gpus"]["rtx4090"]
    rest = first["vram"]["estimate_gib"] - first["vram"]["components"]["cuda_overhead"]
    assert entry["overhead_gib"] == pytest.approx(14.0 - rest, abs=1e-3)
    assert entry["runs"] == [str(plan_dir)]
    assert "rtx4090" in result.output and str(calibration) in result.output
    monkeypatch.setenv("LORAKIT_CALIBRATION", str(calibration))
    again = plan_for(runner, character_dataset, tmp_path / "again")
    assert again["values"]["train_batch_size"]["value"] == first["values"]["train_batch_size"]["value"]
    assert again["vram"]["estimate_gib"] == pytest.approx(14.0, abs=0.01)  # the measured peak
    assert again["time"]["seconds_per_step"] == pytest.approx(3.1, rel=1e-3)  # the measured speed


def test_calibrate_keeps_the_safest_overhead_and_the_median_efficiency(runner, character_dataset, tmp_path):
    plans = []
    for index, (peak, seconds) in enumerate([(12.0, 2.0), (15.0, 4.0), (13.0, 3.0)]):
        plan_dir = tmp_path / f"p{index}"
        plan_for(runner, character_dataset, plan_dir)
        write_run(plan_dir, peak_vram_gib=peak, seconds_per_step=seconds)
        plans.append(str(plan_dir))
    calibration = tmp_path / "calibration.toml"
    calibration.write_text("[gpus.h100]\noverhead_gib = 0.9\n", encoding="utf-8")
    result = runner.invoke(cli, ["calibrate", *plans, "--file", str(calibration), "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    runs = {r["plan"]: r for r in report["runs"]}
    gpus = tomllib.loads(calibration.read_text())["gpus"]
    assert gpus["rtx4090"]["overhead_gib"] == pytest.approx(max(r["overhead_gib"] for r in runs.values()), abs=1e-3)
    assert gpus["rtx4090"]["efficiency"] == pytest.approx(runs[plans[2]]["efficiency"], abs=1e-4)  # 3.0 s is the median
    assert gpus["h100"] == {"overhead_gib": 0.9, "runs": []}  # other GPUs' entries are kept


@pytest.mark.parametrize(("run", "reason"), [
    (None, "no run.json"),
    ({"state": "failed", "peak_vram_gib": 23.9, "seconds_per_step": 2.0}, "the run failed"),
    ({"state": "succeeded"}, "no peak_vram_gib"),
])
def test_runs_that_measured_nothing_are_reported_and_change_nothing(runner, character_dataset, tmp_path, run, reason):
    plan_dir = tmp_path / "p"
    plan_for(runner, character_dataset, plan_dir)
    if run is not None:
        write_run(plan_dir, **run)
    calibration = tmp_path / "calibration.toml"
    result = runner.invoke(cli, ["calibrate", str(plan_dir), "--file", str(calibration), "--json"])
    assert result.exit_code == 0, result.output
    (measured,) = json.loads(result.output)["runs"]
    assert reason in " ".join(measured["skipped"])
    assert (measured["overhead_gib"], measured["efficiency"]) == (None, None)
    assert not calibration.exists()
    text = runner.invoke(cli, ["calibrate", str(plan_dir), "--file", str(calibration)]).output
    assert "Nothing to calibrate" in text


def test_calibrate_refuses_a_folder_that_is_not_a_plan(runner, tmp_path):
    result = runner.invoke(cli, ["calibrate", str(tmp_path), "--file", str(tmp_path / "c.toml")])
    assert result.exit_code == 2 and "not a lorakit plan" in result.output and "Traceback" not in result.output


def test_a_broken_calibration_file_is_a_clear_error(runner, character_dataset, tmp_path, monkeypatch):
    calibration = tmp_path / "calibration.toml"
    calibration.write_text("[gpus.rtx4090]\noverhead_gib = 'lots'\n", encoding="utf-8")
    monkeypatch.setenv("LORAKIT_CALIBRATION", str(calibration))
    result = runner.invoke(cli, ["plan", str(character_dataset), "--target-gpu", "rtx4090", "--out", str(tmp_path / "p")])
    assert result.exit_code == 2
    assert "cannot read the calibration file" in result.output and "Traceback" not in result.output
    assert calibration.read_text() == "[gpus.rtx4090]\noverhead_gib = 'lots'\n"


@pytest.mark.parametrize(("entry", "named"), [
    ("efficiency = 1e-9", "efficiency = 1e-09"), ("efficiency = nan", "efficiency = nan"),
    ("overhead_gib = -1.0", "overhead_gib = -1.0"), ("overhead_gib = 1e6", "overhead_gib = 1000000.0"),
])
def test_a_calibration_value_outside_the_sane_range_is_a_clear_error_and_not_used(runner, character_dataset, tmp_path,
                                                                                 monkeypatch, entry, named):
    calibration = tmp_path / "calibration.toml"
    calibration.write_text(f"[gpus.rtx4090]\n{entry}\n", encoding="utf-8")
    monkeypatch.setenv("LORAKIT_CALIBRATION", str(calibration))
    out = tmp_path / "p"
    result = runner.invoke(cli, ["plan", str(character_dataset), "--target-gpu", "rtx4090", "--out", str(out)])
    assert result.exit_code == 2 and "Traceback" not in result.output
    text = " ".join(result.output.split())
    assert str(calibration) in text and f"[gpus.rtx4090] {named} is outside the sane" in text
    assert not out.exists()


def test_calibrate_writes_only_values_the_planner_accepts(runner, character_dataset, tmp_path):
    plan_dir = tmp_path / "run"
    plan_for(runner, character_dataset, plan_dir)
    write_run(plan_dir, peak_vram_gib=500.0, seconds_per_step=1e-6)  # a broken measurement
    calibration = tmp_path / "calibration.toml"
    assert runner.invoke(cli, ["calibrate", str(plan_dir), "--file", str(calibration)]).exit_code == 0
    entry = tomllib.loads(calibration.read_text(encoding="utf-8"))["gpus"]["rtx4090"]
    assert entry["overhead_gib"] == 64.0 and entry["efficiency"] == 0.9, "clamped to the bounds the planner holds"
    assert load_calibration(calibration).gpus["rtx4090"].efficiency == 0.9
