"""Gate 4 asks the installed sd-scripts: its own parser judges config.toml, and the plan needs only what it imports.

These tests use the fake sd-scripts (tests/fake_sdscripts), whose parser is built like the real one and
which can drop arguments (FAKE_SDSCRIPTS_DROP_ARGS); tests/test_real_sd_scripts.py asks the real one.
"""

from __future__ import annotations

import json
import shutil
import sys

import pytest
from conftest import FAKE_SD_SCRIPTS, make_plan

from lorakit import SD_SCRIPTS_COMMIT
from lorakit.cli.main import cli
from lorakit.config.argcheck import ArgSpec, argument_problems, flatten_config
from lorakit.config.values import ResolvedValue, Values
from lorakit.run.needs import plan_needs


def doctor(runner, *args: str) -> tuple[int, dict]:
    result = runner.invoke(cli, ["doctor", *args, "--json"])
    return result.exit_code, json.loads(result.output)


def findings(report: dict, code: str) -> list[dict]:
    return [f for f in report["findings"] if f["code"] == code]


def fake_copy(tmp_path, requirements: str | None = None, insert: str = ""):
    sd = tmp_path / "sd scripts"
    shutil.copytree(FAKE_SD_SCRIPTS, sd)
    script = sd / "sdxl_train_network.py"
    # the copy must still find lorakit's argument table, as the original does
    text = script.read_text(encoding="utf-8").replace(
        'Path(__file__).resolve().parents[2] / "lorakit"', f'Path({str(FAKE_SD_SCRIPTS.parents[1])!r}) / "lorakit"')
    future = "from __future__ import annotations\n"
    script.write_text(text.replace(future, future + insert, 1), encoding="utf-8")
    if requirements is not None:
        (sd / "requirements.txt").write_text(requirements, encoding="utf-8")
    return sd


def test_a_key_the_installed_parser_lacks_is_an_error_that_names_it(runner, tmp_path, fake_trainer, monkeypatch):
    plan = make_plan(runner, tmp_path)
    monkeypatch.setenv("FAKE_SDSCRIPTS_DROP_ARGS", "network_dim")
    code, report = doctor(runner, str(plan))
    assert code == 1
    [unknown] = findings(report, "env/unknown-argument")
    assert unknown["level"] == "error" and unknown["key"] == "network_dim"
    assert "config.toml sets network_dim" in unknown["message"] and "without a word" in unknown["message"]
    assert "remove network_dim" in unknown["fix"] and f"checkout {SD_SCRIPTS_COMMIT}" in unknown["fix"]


def test_the_same_plan_passes_the_full_parser(runner, tmp_path, fake_trainer):
    code, report = doctor(runner, str(make_plan(runner, tmp_path)))
    assert code == 0, report
    assert not findings(report, "env/unknown-argument") and not findings(report, "env/argument-value")
    assert report["sd_scripts_checked_by"] == "sd-scripts commit unknown's own parser (196 arguments)"


def test_values_of_the_wrong_kind_are_errors_since_sd_scripts_takes_file_values_unchecked(runner, tmp_path, fake_trainer):
    plan = make_plan(runner, tmp_path)
    config = plan / "config.toml"
    text = config.read_text(encoding="utf-8")
    config.write_text(text.replace('mixed_precision = "bf16"', 'mixed_precision = "bf17"')
                      .replace("network_dim = ", 'network_dim = "16" # ').replace("\n[", '\nlearning_rat = 1e-4\n[', 1),
                      encoding="utf-8")
    code, report = doctor(runner, str(plan))
    assert code == 1
    values = {f["key"]: f["message"] for f in findings(report, "env/argument-value")}
    assert "'bf17' is not one of no, fp16, bf16" in values["mixed_precision"]
    assert "'16' (str) must be a TOML integer" in values["network_dim"]
    assert [f["key"] for f in findings(report, "env/unknown-argument")] == ["learning_rat"]


def test_a_second_doctor_uses_the_cached_verdict_until_a_file_changes(runner, tmp_path, fake_trainer):
    plan = make_plan(runner, tmp_path)
    assert doctor(runner, str(plan))[1]["sd_scripts_verdict_cached"] is False
    assert doctor(runner, str(plan))[1]["sd_scripts_verdict_cached"] is True
    with open(plan / "config.toml", "a", encoding="utf-8") as f:
        f.write("# edited\n")
    assert doctor(runner, str(plan))[1]["sd_scripts_verdict_cached"] is False
    (tmp_path / "robot data" / "5_zk robot" / "img0000.txt").write_text("another caption\n", encoding="utf-8")
    assert doctor(runner, str(plan))[1]["sd_scripts_verdict_cached"] is False


def test_without_sd_scripts_dataset_code_the_counts_are_said_to_be_unchecked(runner, tmp_path, fake_trainer):
    code, report = doctor(runner, str(make_plan(runner, tmp_path)))
    [unchecked] = findings(report, "env/counts-unchecked")
    assert unchecked["level"] == "warning" and "No module named 'library'" in unchecked["message"]
    assert report["sd_scripts_counts"] is None


def test_a_script_that_cannot_import_is_an_error_and_lorakits_table_stands_in(runner, tmp_path, fake_trainer):
    plan = make_plan(runner, tmp_path)
    sd = fake_copy(tmp_path, insert="import surely_not_installed_module  # noqa\n")
    code, report = doctor(runner, str(plan), "--sd-scripts", str(sd))
    assert code == 1
    [missing] = findings(report, "env/missing-module")
    assert "cannot import surely_not_installed_module" in missing["message"]
    assert missing["fix"] == f"{sys.executable} -m pip install surely-not-installed-module"
    [fallback] = findings(report, "env/sd-scripts-not-asked")
    assert fallback["level"] == "warning" and f"lorakit's table of sd-scripts {SD_SCRIPTS_COMMIT[:8]}" in fallback["message"]
    assert report["sd_scripts_checked_by"] == f"lorakit's table of sd-scripts {SD_SCRIPTS_COMMIT[:8]}"


def test_a_script_that_does_not_even_parse_is_an_error(runner, tmp_path, fake_trainer):
    sd = fake_copy(tmp_path, insert="def broken(:\n")
    code, report = doctor(runner, str(make_plan(runner, tmp_path)), "--sd-scripts", str(sd))
    assert code == 1
    assert "SyntaxError" in findings(report, "env/sd-scripts-broken")[0]["message"]


def test_an_adamw_plan_does_not_need_bitsandbytes_and_an_8bit_one_does(runner, tmp_path, fake_trainer):
    sd = fake_copy(tmp_path, requirements="rich\nbitsandbytes\n-e .\n")
    adamw = make_plan(runner, tmp_path / "a", "optimizer_type=AdamW")
    code, report = doctor(runner, str(adamw), "--sd-scripts", str(sd))
    assert code == 0, report
    assert "bitsandbytes" in findings(report, "env/requirements-missing")[0]["message"]
    eight_bit = make_plan(runner, tmp_path / "b", "optimizer_type=AdamW8bit")
    code, report = doctor(runner, str(eight_bit), "--sd-scripts", str(sd))
    assert code == 1
    [missing] = findings(report, "env/missing-module")
    assert "cannot import bitsandbytes (the plan's optimizer_type = AdamW8bit imports it)" in missing["message"]
    assert missing["fix"] == f"{sys.executable} -m pip install bitsandbytes"
    assert not findings(report, "env/requirements-missing")  # said once, as the error


def test_a_dadapt_optimizer_needs_dadaptation_which_the_requirements_do_not_install(runner, tmp_path, fake_trainer):
    plan = make_plan(runner, tmp_path, "optimizer_type=DAdaptAdam", "learning_rate=1.0")
    code, report = doctor(runner, str(plan))
    assert code == 1
    [missing] = findings(report, "env/missing-module")
    assert "dadaptation" in missing["message"] and missing["fix"] == f"{sys.executable} -m pip install dadaptation"


def values(**settings) -> Values:
    return Values({k: ResolvedValue(value=v, source="test") for k, v in settings.items()})


@pytest.mark.parametrize(("settings", "modules"), [
    ({"optimizer_type": "AdamW"}, []),
    ({"optimizer_type": "Adafactor"}, []),
    ({"optimizer_type": "Lion"}, ["lion_pytorch"]),
    ({"optimizer_type": "AdamW8bit"}, ["bitsandbytes"]),
    ({"optimizer_type": "PagedAdamW"}, ["bitsandbytes"]),
    ({"optimizer_type": "dadaptadam"}, ["dadaptation"]),
    ({"optimizer_type": "Prodigy"}, ["prodigyopt"]),
    ({"optimizer_type": "AdamWScheduleFree"}, ["schedulefree"]),
    ({"optimizer_type": "pytorch_optimizer.CAME"}, ["pytorch_optimizer"]),
    ({"optimizer_type": "torch.optim.AdamW"}, []),
    ({"xformers": True}, ["xformers"]),
    ({"network_module": "lycoris.kohya"}, ["lycoris"]),
    ({"network_module": "networks.lora"}, []),
])
def test_what_each_setting_makes_sd_scripts_import(settings, modules):
    assert [need.module for need in plan_needs(values(**settings))] == modules


def test_the_config_check_reads_the_file_as_sd_scripts_does():
    specs = [ArgSpec(dest="network_args", type="str", nargs="*"), ArgSpec(dest="text_encoder_lr", type="float", nargs="*"),
             ArgSpec(dest="gradient_checkpointing", action="_StoreTrueAction", nargs=0),
             ArgSpec(dest="learning_rate", type="float")]
    flat = flatten_config({"a": {"network_args": "conv_dim=4"}, "b": {"text_encoder_lr": 1e-5, "gradient_checkpointing": 1},
                           "learning_rate": 1})
    assert [(p.key, p.kind) for p in argument_problems(flat, specs)] == [
        ("network_args", "type"), ("gradient_checkpointing", "type")]


def test_the_plan_names_the_sd_scripts_it_found(runner, tmp_path, fake_trainer):
    sd = fake_copy(tmp_path)
    (sd / ".sd-scripts-commit").write_text(f"{SD_SCRIPTS_COMMIT} 2026-02-16T08:07:29+09:00 {SD_SCRIPTS_COMMIT}\n")
    dataset = tmp_path / "robot data"
    from conftest import make_folder

    make_folder(dataset / "5_zk robot", [(1024, 1024)] * 4)
    result = runner.invoke(cli, ["plan", str(dataset), "--target-gpu", "rtx4090", "--out", str(tmp_path / "p"),
                                 "--sd-scripts", str(sd)])
    assert f"sd-scripts: {sd}, 48d368fa (v0.10.1-5-g48d368fa); lorakit writes for 48d368fa" in " ".join(result.output.split())
    found = json.loads((tmp_path / "p" / "plan.json").read_text(encoding="utf-8"))["sd_scripts"]
    assert (found["commit"], found["version"], found["path"]) == (SD_SCRIPTS_COMMIT, "v0.10.1-5-g48d368fa", str(sd))


def probes_kept() -> int:
    from lorakit.models.links import lorakit_cache_dir

    return len(list((lorakit_cache_dir() / "trainer-probes").glob("*.json")))


def fresh_doctor(runner) -> int:
    from lorakit.run.doctor import probe_trainer

    probe_trainer.cache_clear()  # as a new `lorakit doctor` process would start
    return doctor(runner)[0]


def test_the_probe_answer_is_kept_while_the_trainers_packages_are_unchanged(runner, tmp_path, fake_trainer, monkeypatch):
    from conftest import FAKE_TRAINER_ENV

    env = tmp_path / "site"
    shutil.copytree(FAKE_TRAINER_ENV, env)
    monkeypatch.setenv("PYTHONPATH", str(env))
    assert fresh_doctor(runner) == 0 and probes_kept() == 1
    assert fresh_doctor(runner) == 0 and probes_kept() == 1  # the same answer reused
    (env / "newpackage").mkdir()  # what `pip install` does to site-packages
    assert fresh_doctor(runner) == 0 and probes_kept() == 2  # asked again


def test_a_probe_with_a_missing_module_is_not_kept(runner, tmp_path, fake_trainer, monkeypatch):
    from conftest import FAKE_TRAINER_ENV

    env = tmp_path / "site"
    shutil.copytree(FAKE_TRAINER_ENV, env)
    (env / "accelerate" / "__init__.py").write_text("raise ImportError('accelerate is broken here')\n")
    monkeypatch.setenv("PYTHONPATH", str(env))
    assert fresh_doctor(runner) == 1 and probes_kept() == 0
