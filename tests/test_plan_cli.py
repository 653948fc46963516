"""`lorakit plan` end to end through the CLI: the plan folder, its files parsed back, and bad input."""

from __future__ import annotations

import json
import shlex
import subprocess
import sys

import pytest
import tomllib
from conftest import REPO, make_folder
from imagegen import write_png
from sdscripts_rules import config_problems, dataset_problems

from lorakit.cli.main import cli


def plan(runner, *args: str):
    return runner.invoke(cli, ["plan", *args], catch_exceptions=False)


def test_plan_writes_a_folder_sd_scripts_accepts(runner, character_dataset, tmp_path):
    out = tmp_path / "plan"
    result = plan(runner, str(character_dataset), "--preset", "character", "--target-gpu", "rtx4090", "--out", str(out))
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in out.iterdir()) == ["config.toml", "dataset.toml", "launch.sh", "plan.json", "sample_prompts.txt"]
    assert config_problems((out / "config.toml").read_text()) == []
    assert dataset_problems((out / "dataset.toml").read_text()) == []
    config = tomllib.loads((out / "config.toml").read_text())
    flat = {k: v for table in config.values() for k, v in table.items()}
    # the plan's own files, relative to the plan folder the trainer starts in (a copied plan trains into itself)
    assert flat["dataset_config"] == "dataset.toml"
    assert flat["max_train_epochs"] == 12
    assert flat["output_dir"] == "output"
    assert "resolution" not in flat  # a dataset key: it lives in dataset.toml
    dataset = tomllib.loads((out / "dataset.toml").read_text())
    assert dataset["general"]["resolution"] == [1024, 1024]
    assert dataset["general"]["caption_extension"] == ".txt"
    subset = dataset["datasets"][0]["subsets"][0]
    assert subset == {"image_dir": str(character_dataset / "10_sks dog"), "num_repeats": 10, "class_tokens": "sks dog"}


def test_plan_json_has_the_step_math_values_and_findings(runner, character_dataset, tmp_path):
    out = tmp_path / "plan"
    plan(runner, str(character_dataset), "--preset", "character", "--target-gpu", "rtx4090", "--out", str(out))
    data = json.loads((out / "plan.json").read_text())
    # 20 images × 10 repeats over 3 buckets (10, 5, 5 images) at batch 4: 25 + 13 + 13 batches
    assert data["batches_per_epoch"] == 51
    assert data["epochs"] == 12
    assert data["total_steps"] == 612
    batch = data["values"]["train_batch_size"]
    assert (batch["value"], batch["source"], batch["replaced"]) == (4, "auto:fit-speed", [{"value": 1, "source": "preset:sdxl-base"}])
    assert "est. 12.2 of 19.2 GiB" in batch["note"]
    assert data["values"]["network_dim"]["source"] == "preset:character-standard"
    assert data["lorakit_version"]
    assert data["dataset"]["images"] == 20
    assert all({"code", "level", "message", "fix"} <= set(f) for f in data["findings"])
    assert data["saves"][-1]["file"] == "dogs.safetensors"
    assert data["sample_steps"][:2] == [200, 400]


def test_set_overrides_win_and_are_marked_as_yours(runner, character_dataset, tmp_path):
    out = tmp_path / "plan"
    result = plan(runner, str(character_dataset), "--target-gpu", "rtx4090", "--out", str(out),
                  "--set", "network_dim=32", "--set", "train_batch_size=1", "--set", "optimizer_args=weight_decay=0.01")
    assert result.exit_code == 0, result.output
    values = json.loads((out / "plan.json").read_text())["values"]
    assert values["network_dim"]["value"] == 32 and values["network_dim"]["source"] == "set"
    assert values["train_batch_size"]["value"] == 1 and values["train_batch_size"]["source"] == "set"
    assert values["optimizer_args"]["value"] == ["weight_decay=0.01"]


def test_sample_prompts_use_class_tokens_and_training_size(runner, character_dataset, tmp_path):
    out = tmp_path / "plan"
    plan(runner, str(character_dataset), "--preset", "style", "--target-gpu", "rtx4090", "--out", str(out))
    lines = [line for line in (out / "sample_prompts.txt").read_text().splitlines() if line and not line.startswith("#")]
    assert len(lines) == 3
    assert all(line.startswith("sks dog, ") and "--w 1024 --h 1024" in line for line in lines)
    assert [shlex.split(line)[shlex.split(line).index("--d") + 1] for line in lines] == ["1", "2", "3"]


def test_launch_sh_runs_the_same_command_plan_json_records(runner, character_dataset, tmp_path):
    recorder = tmp_path / "fake 'python'"
    recorder.write_text(f"#!{sys.executable}\nimport json, sys\nprint(json.dumps(sys.argv))\n")
    recorder.chmod(0o755)
    out = tmp_path / "plan"
    plan(runner, str(character_dataset), "--target-gpu", "rtx4090", "--out", str(out),
         "--sd-scripts", str(tmp_path / "sd scripts"), "--python", str(recorder))
    done = subprocess.run(["bash", str(out / "launch.sh")], capture_output=True, text=True, check=True)
    command = json.loads((out / "plan.json").read_text())["command"]
    assert command[0] == str(recorder)
    assert json.loads(done.stdout)[1:] == command[1:]
    assert command[1:3] == ["-m", "accelerate.commands.launch"]
    assert command[-3:] == [str(tmp_path / "sd scripts" / "sdxl_train_network.py"), "--config_file", "config.toml"]
    assert "--mixed_precision" in command and "--dynamo_backend" in command


def test_odd_paths_survive_into_toml_and_launch_sh(runner, tmp_path):
    weird = tmp_path / "dätä set with 'quotes' and \"double\" $HOME"
    make_folder(weird / "10_sks dög", [(1024, 1024)] * 6)
    out = tmp_path / "plan 'out' ü"
    result = plan(runner, str(weird), "--target-gpu", "rtx4090", "--out", str(out), "--name", "my lörä 'v1'")
    assert result.exit_code == 0, result.output
    dataset = tomllib.loads((out / "dataset.toml").read_text(encoding="utf-8"))
    assert dataset["datasets"][0]["subsets"][0]["image_dir"] == str(weird / "10_sks dög")
    config = tomllib.loads((out / "config.toml").read_text(encoding="utf-8"))
    assert config["output"]["output_name"] == "my lörä 'v1'"
    assert subprocess.run(["bash", "-n", str(out / "launch.sh")]).returncode == 0
    command = json.loads((out / "plan.json").read_text())["command"]
    assert command[-1] == "config.toml"
    recorder = tmp_path / "pwd"
    recorder.write_text("#!/bin/sh\npwd\n")
    recorder.chmod(0o755)
    launch_sh = (out / "launch.sh").read_text(encoding="utf-8").replace(shlex.quote(command[0]), str(recorder))
    (out / "launch.sh").write_text(launch_sh, encoding="utf-8")
    done = subprocess.run(["bash", str(out / "launch.sh")], cwd=tmp_path, capture_output=True, text=True, check=True)
    assert done.stdout.strip() == str(out)  # launch.sh starts the trainer in its own folder


def test_flat_folder_gets_repeats_in_the_seed_ranges(runner, tmp_path):
    flat = tmp_path / "flat"
    for i in range(30):
        write_png(flat / f"p{i}.png", 1024, 1024).with_suffix(".txt").write_text(f"ohwx person, photo {i}\n")
    out = tmp_path / "plan"
    result = plan(runner, str(flat), "--token", "ohwx person", "--target-gpu", "rtx3080-10gb", "--out", str(out))
    assert result.exit_code == 0, result.output
    data = json.loads((out / "plan.json").read_text())
    subset = data["dataset"]["subsets"][0]
    assert subset["repeats_source"].startswith(f"{subset['num_repeats']} repeats")
    assert 1500 <= data["total_steps"] <= 3000
    assert 100 <= subset["steps_per_image"] <= 400
    toml_subset = tomllib.loads((out / "dataset.toml").read_text())["datasets"][0]["subsets"][0]
    assert toml_subset["class_tokens"] == "ohwx person"
    assert toml_subset["num_repeats"] == subset["num_repeats"]


def test_regularisation_folder_is_written_as_reg_subset(runner, character_dataset, tmp_path):
    reg = make_folder(tmp_path / "reg" / "1_dog", [(1024, 1024)] * 8, caption="a dog")
    out = tmp_path / "plan"
    result = plan(runner, str(character_dataset), "--reg", str(reg.parent), "--target-gpu", "rtx4090", "--out", str(out))
    assert result.exit_code == 0, result.output
    subsets = tomllib.loads((out / "dataset.toml").read_text())["datasets"][0]["subsets"]
    assert subsets[1] == {"image_dir": str(reg), "num_repeats": 1, "class_tokens": "dog", "is_reg": True}
    data = json.loads((out / "plan.json").read_text())
    assert data["step_math"]["reg_samples"] == data["step_math"]["num_train_images"]


def test_existing_plan_is_not_overwritten_without_force(runner, character_dataset, tmp_path):
    out = tmp_path / "plan"
    assert plan(runner, str(character_dataset), "--target-gpu", "rtx4090", "--out", str(out)).exit_code == 0
    before = (out / "config.toml").read_text()
    (out / "output").mkdir()
    (out / "output" / "dogs.safetensors").write_text("trained weights")
    again = plan(runner, str(character_dataset), "--target-gpu", "rtx4090", "--out", str(out), "--set", "network_dim=8")
    assert again.exit_code == 2
    assert "already holds a plan" in again.output and "--force" in again.output
    assert (out / "config.toml").read_text() == before
    forced = plan(runner, str(character_dataset), "--target-gpu", "rtx4090", "--out", str(out), "--set", "network_dim=8", "--force")
    assert forced.exit_code == 0
    kept = list((out / ".lorakit-history").glob("*/config.toml"))
    assert [k.read_text() for k in kept] == [before]
    assert (out / "output" / "dogs.safetensors").read_text() == "trained weights"


def test_a_folder_that_is_not_a_plan_is_never_written_into(runner, character_dataset, tmp_path):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "notes.txt").write_text("my notes")
    result = plan(runner, str(character_dataset), "--target-gpu", "rtx4090", "--out", str(out), "--force")
    assert result.exit_code == 2
    assert "not a lorakit plan" in result.output
    assert sorted(p.name for p in out.iterdir()) == ["notes.txt"]


def test_gate_errors_write_nothing_and_exit_1(runner, character_dataset, tmp_path):
    out = tmp_path / "plan"
    result = plan(runner, str(character_dataset), "--target-gpu", "rtx4090", "--out", str(out),
                  "--set", "cache_text_encoder_outputs=true", "--set", "network_train_unet_only=false")
    assert result.exit_code == 1
    assert "params/te-cache-needs-unet-only" in result.output
    assert "nothing was written" in result.output
    assert not out.exists()
    forced = plan(runner, str(character_dataset), "--target-gpu", "rtx4090", "--out", str(out),
                  "--set", "cache_text_encoder_outputs=true", "--set", "network_train_unet_only=false", "--force")
    assert forced.exit_code == 1 and (out / "plan.json").is_file()


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--set", "network_dimm=32"], "Did you mean network_dim"),
        (["--set", "network_dim=big"], "network_dim = 'big' is not an integer"),
        (["--set", "mixed_precision=bf17"], "is not one of: no, fp16, bf16"),
        (["--set", "network_dim"], "write KEY=VALUE"),
        (["--set", "dataset_config=x.toml"], "lorakit sets this itself"),
        (["--preset", "charcter"], "Did you mean character"),
        (["--target-gpu", "rtx4091"], "unknown GPU 'rtx4091'"),
        (["--token", "sks"], "--token is for flat folders"),
        (["--name", "a/b"], "cannot be used as a file name"),
    ],
)
def test_bad_input_gets_one_clear_error(runner, character_dataset, tmp_path, args, expected):
    result = runner.invoke(cli, ["plan", str(character_dataset), "--target-gpu", "rtx4090", "--out", str(tmp_path / "p"), *args])
    assert result.exit_code == 2, result.output
    assert expected in result.output
    assert "Traceback" not in result.output
    assert not (tmp_path / "p").exists()


def test_several_bad_overrides_are_reported_together(runner, character_dataset, tmp_path):
    result = runner.invoke(cli, ["plan", str(character_dataset), "--target-gpu", "rtx4090",
                                 "--set", "network_dimm=1", "--set", "learning_rate=fast"])
    assert result.exit_code == 2
    assert "2 problem(s)" in result.output and "network_dimm" in result.output and "learning_rate" in result.output


@pytest.mark.parametrize("kind", ["missing", "file", "empty"])
def test_unusable_dataset_paths(runner, tmp_path, kind):
    path = tmp_path / "data"
    if kind == "file":
        path.write_text("not a folder")
    elif kind == "empty":
        path.mkdir()
    result = runner.invoke(cli, ["plan", str(path), "--target-gpu", "rtx4090", "--out", str(tmp_path / "p")])
    assert result.exit_code in (1, 2)
    assert {"missing": "does not exist", "file": "is a file, not a folder", "empty": "no training images"}[kind] in result.output
    assert "Traceback" not in result.output
    assert not (tmp_path / "p").exists()


def test_no_gpu_and_no_target_names_the_option(runner, character_dataset, tmp_path, monkeypatch):
    monkeypatch.setenv("LORAKIT_FAKE_GPU", "none")
    result = runner.invoke(cli, ["plan", str(character_dataset), "--out", str(tmp_path / "p")])
    assert result.exit_code == 2
    assert "--target-gpu" in result.output


def test_probed_gpu_is_used_without_target(runner, character_dataset, tmp_path, monkeypatch):
    monkeypatch.setenv("LORAKIT_FAKE_GPU", "rtx3060-12gb")
    out = tmp_path / "p"
    assert runner.invoke(cli, ["plan", str(character_dataset), "--out", str(out)]).exit_code == 0
    target = json.loads((out / "plan.json").read_text())["target"]
    assert (target["catalog_id"], target["source"]) == ("rtx3060-12gb", "fake")


def test_target_gpu_wins_over_the_probe(runner, character_dataset, tmp_path, monkeypatch):
    monkeypatch.setenv("LORAKIT_FAKE_GPU", "rtx3060-12gb")
    out = tmp_path / "p"
    runner.invoke(cli, ["plan", str(character_dataset), "--out", str(out), "--target-gpu", "a100-80gb"])
    assert json.loads((out / "plan.json").read_text())["target"]["catalog_id"] == "a100-80gb"


def test_json_output_is_plan_json(runner, character_dataset, tmp_path):
    out = tmp_path / "p"
    result = plan(runner, str(character_dataset), "--target-gpu", "rtx4090", "--out", str(out), "--json")
    assert json.loads(result.output) == json.loads((out / "plan.json").read_text())


def test_explain_shows_sources_and_reasons(runner, character_dataset, tmp_path):
    result = plan(runner, str(character_dataset), "--target-gpu", "rtx4090", "--out", str(tmp_path / "p"), "--explain")
    assert "auto:fit-speed" in result.output
    # the why column, whatever the table's width wrapped: sdxl-base's epochs cite the recommendations' epoch table
    why = "".join(line.split("│")[-1].replace(" ", "") for line in result.output.splitlines() if "│" in line)
    assert "docs/recommendations.md§2Epochs·Characterstandard10-15" in why


def test_max_train_steps_set_by_you_is_kept_exactly(runner, character_dataset, tmp_path):
    out = tmp_path / "p"
    plan(runner, str(character_dataset), "--target-gpu", "rtx4090", "--out", str(out), "--set", "max_train_steps=1700")
    flat = {k: v for t in tomllib.loads((out / "config.toml").read_text()).values() for k, v in t.items()}
    assert flat["max_train_steps"] == 1700 and "max_train_epochs" not in flat
    assert json.loads((out / "plan.json").read_text())["total_steps"] == 1700


def test_python_m_lorakit_works_from_another_directory(tmp_path):
    done = subprocess.run([sys.executable, "-m", "lorakit", "presets"], cwd=tmp_path, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert "character-standard" in done.stdout


def test_example_dataset_in_the_repo_plans_cleanly(runner, tmp_path):
    example = REPO / "examples" / "toy-robot"
    result = plan(runner, str(example), "--preset", "character", "--target-gpu", "rtx4090", "--out", str(tmp_path / "p"))
    assert result.exit_code == 0, result.output
    size = sum(p.stat().st_size for p in example.rglob("*") if p.is_file())
    assert size < 300_000


LONG_HUB_ID = "some-organisation/an-sdxl-checkpoint-with-a-name-far-too-long-for-eighty-columns-v1.0"


def test_piped_summary_breaks_no_value_across_lines(runner, character_dataset, tmp_path):
    result = plan(runner, str(character_dataset), "--target-gpu", "rtx4090", "--out", str(tmp_path / "p"),
                  "--set", f"pretrained_model_name_or_path={LONG_HUB_ID}")
    lines = result.output.splitlines()
    assert any(line.startswith("GPU: NVIDIA GeForce RTX 4090") and line.endswith("bf16 yes") for line in lines)
    assert any(line.startswith(f"base model: {LONG_HUB_ID}@main — ") for line in lines)
    assert any(line.startswith("pretrained_model_name_or_path") and LONG_HUB_ID in line for line in lines)


def test_explain_vram_prints_the_parts_planning_counted(character_dataset, tmp_path):
    import io

    from rich.console import Console

    from lorakit.cli.views import print_plan
    from lorakit.plan.build import PlanRequest, make_plan

    result = make_plan(PlanRequest(dataset=character_dataset, target_gpu="rtx4090", out=tmp_path / "p"))
    assert sum(part.gib for part in result.vram_parts) == pytest.approx(result.plan.vram.estimate_gib, abs=0.01)
    assert "vram_parts" not in result.files["plan.json"]
    result.vram_parts[0] = result.vram_parts[0]._replace(how="the overhead as planning counted it")
    out = Console(file=io.StringIO(), width=300, color_system=None)
    print_plan(out, result.plan, written=False, vram_parts=result.vram_parts)
    assert "the overhead as planning counted it" in out.file.getvalue()


def test_a_key_unset_with_none_takes_sd_scripts_default(runner, character_dataset, tmp_path):
    out = tmp_path / "p"
    result = plan(runner, str(character_dataset), "--target-gpu", "rtx4090", "--out", str(out),
                  "--set", "gradient_accumulation_steps=none", "--set", "train_batch_size=1")
    assert result.exit_code == 0, result.output
    flat = {k: v for t in tomllib.loads((out / "config.toml").read_text()).values() for k, v in t.items()}
    assert "gradient_accumulation_steps" not in flat, "left to sd-scripts, whose default is 1"
    assert json.loads((out / "plan.json").read_text())["total_steps"] == 20 * 10 * 10, "20 images, 10 repeats, 10 epochs"
