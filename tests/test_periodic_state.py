"""Periodic training state: long plans save a state about every 20 minutes and keep the last two;
short, unestimated and CPU plans do not; the user's own save settings win (docs/sd-scripts.md §8)."""

from __future__ import annotations

import lorakit.plan.build as plan_module
from lorakit.cli.main import cli
from lorakit.dataset.steps import StepMath, predict_saves
from lorakit.plan.build import PlanRequest, make_plan
from lorakit.plan.state import SOURCE

AUTO_KEYS = ("save_state", "save_every_n_steps", "save_last_n_steps_state", "save_last_n_epochs_state")


def make(dataset, tmp_path, *overrides, gpu="rtx4090", fit="speed"):
    return make_plan(PlanRequest(dataset=dataset, presets=["character"], overrides=list(overrides), target_gpu=gpu,
                                 out=tmp_path / "p", fit=fit)).plan


def auto_keys(plan) -> list[str]:
    return [key for key in AUTO_KEYS if plan.value_set.source(key) == SOURCE]


def test_a_long_plan_saves_a_state_every_twenty_minutes_or_so_and_keeps_two(character_dataset, tmp_path):
    plan = make(character_dataset, tmp_path, "max_train_epochs=40")
    values = plan.value_set
    assert auto_keys(plan) == list(AUTO_KEYS)
    assert values["save_state"] is True and "save_state=false" in values.entry("save_state").note
    interval = values["save_every_n_steps"]
    assert 15 * 60 <= interval * plan.time.seconds_per_step <= 30 * 60
    assert values["save_last_n_steps_state"] == interval
    step_states = [s for s in plan.saves if s.kind == "step"]
    assert len(step_states) >= 3 and all(s.kept for s in step_states)  # the LoRA files stay
    assert [s.step for s in step_states if s.state_kept] == [s.step for s in step_states[-2:]]


def test_sd_scripts_prunes_states_by_save_last_n_steps_state_apart_from_the_files():
    math_ = StepMath.model_construct(total_steps=2000, epochs=1, steps_per_epoch=2000)  # all predict_saves reads
    saves = predict_saves(math_, output_name="x", extension="safetensors", save_every_n_epochs=None,
                          save_every_n_steps=600, save_state=True, save_last_n_steps_state=600)
    assert [(s.step, s.kept, s.state_kept) for s in saves] == [
        (600, True, False), (1200, True, True), (1800, True, True), (2000, True, True)]


def test_a_short_plan_gets_no_periodic_state(character_dataset, tmp_path):
    plan = make(character_dataset, tmp_path, "max_train_epochs=2")
    assert plan.time.total_hours < 0.2
    assert auto_keys(plan) == [] and not plan.value_set["save_state"]


def test_a_cpu_smoke_run_gets_no_periodic_state(character_dataset, tmp_path):
    assert auto_keys(make(character_dataset, tmp_path, "max_train_epochs=40", gpu="cpu")) == []


def test_the_plan_summary_shows_the_states_kept(runner, character_dataset, tmp_path):
    result = runner.invoke(cli, ["plan", str(character_dataset), "--target-gpu", "rtx4090", "--out", str(tmp_path / "p"),
                                 "--set", "max_train_epochs=40"])
    assert result.exit_code == 0, result.output
    assert "4 state folder(s) kept" in result.output  # 2 step states, the newest epoch state, the final state


def test_fit_off_adds_no_periodic_state(character_dataset, tmp_path):
    assert auto_keys(make(character_dataset, tmp_path, "max_train_epochs=40", fit="off")) == []


def test_save_state_false_turns_it_off(character_dataset, tmp_path):
    plan = make(character_dataset, tmp_path, "max_train_epochs=40", "save_state=false")
    assert auto_keys(plan) == [] and plan.value_set["save_state"] is False
    assert not any(s.state_dir for s in plan.saves)


def test_your_save_state_keeps_your_whole_schedule(character_dataset, tmp_path):
    plan = make(character_dataset, tmp_path, "max_train_epochs=40", "save_state=true")
    assert auto_keys(plan) == [] and not plan.value_set["save_every_n_steps"]


def test_your_step_interval_is_kept_and_its_states_are_pruned(character_dataset, tmp_path):
    plan = make(character_dataset, tmp_path, "max_train_epochs=40", "save_every_n_steps=100")
    values = plan.value_set
    assert values["save_every_n_steps"] == 100 and values.source("save_every_n_steps") == "set"
    assert values["save_state"] is True and values["save_last_n_steps_state"] == 100


def test_gate_3_counts_the_kept_states_and_one_being_replaced(character_dataset, tmp_path, monkeypatch):
    monkeypatch.setattr(plan_module, "free_disk_gib", lambda path: 0.1)
    plan = make(character_dataset, tmp_path, "max_train_epochs=40")
    disk = next(f for f in plan.findings if f.code == "hardware/disk-space")
    # 2 step states + the newest epoch state + the final state, + 1 written before an old one is deleted
    assert "5 state folder(s)" in disk.message
