"""The worked bucket and step examples of docs/sd-scripts.md §5, §6, reproduced exactly, and the images sd-scripts
holds out for validation_split, checked against its own split function."""

import ast
import json
import logging
import math
import random
import typing
from pathlib import Path

import pytest
from conftest import REPO, make_folder
from imagegen import write_photo, write_png

from lorakit.cli.main import cli
from lorakit.dataset.buckets import BucketAssigner, BucketSettings, make_bucket_resolutions
from lorakit.dataset.scan import scan_dataset
from lorakit.dataset.steps import Placed, compute_steps, predict_sample_steps, predict_saves
from lorakit.dataset.validation import ValidationSplit

SDXL = BucketSettings(resolution=(1024, 1024), min_reso=512, max_reso=2048, steps=64)


def test_default_bucket_range_gives_only_buckets_with_a_1024_side():
    resos = make_bucket_resolutions((1024, 1024), 256, 1024, 64)
    sides = range(256, 1025, 64)
    assert set(resos) == {(s, 1024) for s in sides} | {(1024, s) for s in sides}


def test_wide_bucket_range_matches_the_facts():
    resos = make_bucket_resolutions((1024, 1024), 512, 2048, 64)
    assert resos[0] == (512, 1856) and resos[-1] == (2048, 512)
    for bucket in [(832, 1216), (896, 1152), (960, 1088), (1024, 1024), (1088, 960)]:
        assert bucket in resos


@pytest.mark.parametrize(
    ("size", "bucket", "resized"),
    [
        ((1536, 1024), (1216, 832), (1248, 832)),
        ((640, 480), (1152, 896), (1195, 896)),
        ((1024, 768), (1152, 896), None),
        ((768, 1024), (896, 1152), None),
        ((1216, 832), (1216, 832), (1216, 832)),
        ((832, 1216), (832, 1216), (832, 1216)),
    ],
)
def test_images_land_in_the_buckets_sd_scripts_chose(size, bucket, resized):
    placement = BucketAssigner(SDXL).place(*size)
    assert placement.bucket == bucket
    if resized:
        assert placement.resized == resized


@pytest.mark.parametrize(
    ("size", "bucket"),
    [((640, 480), (640, 448)), ((1536, 1024), (1216, 832)), ((1024, 768), (1024, 768)), ((1024, 1024), (1024, 1024))],
)
def test_no_upscale_buckets_match_the_facts(size, bucket):
    settings = BucketSettings(resolution=(1024, 1024), no_upscale=True, steps=64)
    assert BucketAssigner(settings).place(*size).bucket == bucket


def test_min_and_max_are_rounded_to_the_step_like_sd_scripts():
    assert BucketSettings((1024, 1024), min_reso=300, max_reso=1000, steps=64).adjusted_min_max() == (256, 1024)


def test_without_bucketing_every_image_goes_to_the_resolution():
    settings = BucketSettings(resolution=(1024, 1024), enable_bucket=False)
    assert BucketAssigner(settings).place(640, 480).bucket == (1024, 1024)


@pytest.fixture
def facts_dataset(tmp_path: Path):
    """The dataset behind docs/sd-scripts.md §5's verified numbers: 5 images × 10, 2 × 3, 4 reg × 1."""
    make_folder(tmp_path / "train" / "10_sks dog", [(832, 1216), (1024, 1024), (640, 480), (1536, 1024), (1216, 832)])
    make_folder(tmp_path / "train" / "3_dog", [(768, 1024), (1024, 768)])
    make_folder(tmp_path / "reg" / "1_dog", [(1024, 1024)] * 4)
    train = scan_dataset(tmp_path / "train")
    reg = scan_dataset(tmp_path / "reg", is_reg=True)
    subsets = train.subsets + reg.subsets
    return Placed(subsets, SDXL), [s.num_repeats for s in subsets]


def test_facts_example_batches_steps_and_reg_balancing(facts_dataset):
    placed, repeats = facts_dataset
    result = compute_steps(placed, repeats, batch_size=2, gradient_accumulation_steps=2, max_train_epochs=4)
    assert result.num_train_images == 56
    assert result.num_reg_images == 4
    assert result.reg_samples == 56  # 4 reg images got 14 repeats each
    assert {(b.width, b.height): (b.samples, b.batches) for b in result.buckets} == {
        (832, 1216): (10, 5), (896, 1152): (3, 2), (1024, 1024): (66, 33), (1152, 896): (13, 7), (1216, 832): (20, 10),
    }
    assert result.batches_per_epoch == 57
    assert result.steps_per_epoch == 29
    assert result.total_steps == 116


def test_facts_example_on_two_processes(facts_dataset):
    placed, repeats = facts_dataset
    result = compute_steps(placed, repeats, batch_size=2, gradient_accumulation_steps=2, num_processes=2,
                           max_train_epochs=4)
    assert result.batches_per_process == 29
    assert result.steps_per_epoch == 15
    assert result.total_steps == 60


def test_reg_images_beyond_the_train_samples_are_unused(tmp_path):
    make_folder(tmp_path / "train" / "2_a", [(1024, 1024)] * 3)  # 6 samples
    make_folder(tmp_path / "reg" / "5_b", [(1024, 1024)] * 4)  # 20 reg samples
    subsets = scan_dataset(tmp_path / "train").subsets + scan_dataset(tmp_path / "reg", is_reg=True).subsets
    result = compute_steps(Placed(subsets, SDXL), [2, 5], batch_size=1, max_train_epochs=1)
    assert result.reg_samples == 10  # two reg images (5 + 5) reach the 6 train samples
    assert result.unused_reg_images == 2


def test_max_train_steps_without_epochs_gives_a_partial_last_epoch(facts_dataset):
    placed, repeats = facts_dataset
    result = compute_steps(placed, repeats, batch_size=2, gradient_accumulation_steps=2, max_train_steps=100)
    assert (result.total_steps, result.epochs) == (100, 4)


def test_checkpoint_names_follow_sd_scripts(facts_dataset):
    placed, repeats = facts_dataset
    result = compute_steps(placed, repeats, batch_size=2, gradient_accumulation_steps=2, max_train_epochs=4)
    saves = predict_saves(result, output_name="dog", extension="safetensors", save_every_n_epochs=1,
                          save_every_n_steps=50, save_last_n_epochs=2, save_state=True)
    names = [s.file for s in saves]
    assert names == [
        "dog-000001.safetensors", "dog-step00000050.safetensors", "dog-000002.safetensors",
        "dog-000003.safetensors", "dog-step00000100.safetensors", "dog.safetensors",
    ]
    assert [s.file for s in saves if not s.kept] == ["dog-000001.safetensors"]  # epoch 3 removes epoch 1
    assert saves[-1].state_dir == "dog-state"


def test_sample_steps_by_steps_and_by_epochs(facts_dataset):
    placed, repeats = facts_dataset
    result = compute_steps(placed, repeats, batch_size=2, gradient_accumulation_steps=2, max_train_epochs=4)
    assert predict_sample_steps(result, sample_every_n_steps=50, sample_every_n_epochs=None) == [50, 100]
    assert predict_sample_steps(result, sample_every_n_steps=50, sample_every_n_epochs=2, sample_at_first=True) == [0, 58, 116]


def test_exif_rotated_photos_are_bucketed_as_stored_like_sd_scripts(tmp_path):
    """5 landscape PNGs and 5 phone JPEGs stored landscape but tagged "rotate 90°": sd-scripts (imagesize 1.4.1,
    then PIL) reads all ten as 1536×1024, so one bucket of 10 samples: 3 batches of 4, not 2 + 2."""
    folder = tmp_path / "d" / "1_x"
    for i in range(5):
        write_png(folder / f"land{i}.png", 1536, 1024)
        write_photo(folder / f"phone{i}.jpg", 1536, 1024, orientation=6)
    placed = Placed(scan_dataset(tmp_path / "d").subsets, SDXL)
    result = compute_steps(placed, [1], batch_size=4, max_train_epochs=1)
    assert [(b.width, b.height, b.samples) for b in result.buckets] == [(1216, 832, 10)]
    assert result.total_steps == 3


# --- validation_split: the images sd-scripts holds out of training ---------------------------------------

def _sd_scripts_split_train_val():
    """sd-scripts' own split_train_val, compiled from the pinned checkout's source (importing train_util needs
    torch, transformers and diffusers); None when there is no checkout beside this one."""
    for root in (REPO.parent / "shared" / "sd-scripts", REPO.parent.parent / "shared" / "sd-scripts"):
        source = root / "library" / "train_util.py"
        if source.is_file():
            break
    else:
        return None
    tree = ast.parse(source.read_text(encoding="utf-8"))
    (function,) = [n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == "split_train_val"]
    namespace = {**vars(typing), "random": random, "math": math, "logging": logging}  # what its module gives it
    exec(compile(ast.Module(body=[function], type_ignores=[]), str(source), "exec"), namespace)
    return namespace["split_train_val"]


def _mixed_dataset(root: Path):
    sizes = [(1024, 1024), (832, 1216), (1216, 832), (640, 480), (1536, 1024)]
    make_folder(root / "train" / "10_sks dog", [sizes[i % 5] for i in range(23)])
    make_folder(root / "train" / "3_dog", [sizes[(i * 3) % 5] for i in range(11)])
    make_folder(root / "reg" / "1_dog", [(1024, 1024)] * 6)
    return scan_dataset(root / "train").subsets + scan_dataset(root / "reg", is_reg=True).subsets


@pytest.mark.skipif(_sd_scripts_split_train_val() is None, reason="no sd-scripts checkout at ../shared/sd-scripts")
@pytest.mark.parametrize(("validation_seed", "seed"), [(None, 42), (None, 7), (1234, 42)])
def test_held_out_images_are_the_ones_sd_scripts_holds_out(tmp_path, validation_seed, seed):
    split_train_val = _sd_scripts_split_train_val()
    subsets = _mixed_dataset(tmp_path)
    placed = Placed(subsets, SDXL, ValidationSplit(0.2, validation_seed, seed))
    state = random.getstate()
    try:
        random.seed(seed)  # what set_seed(args.seed) does before sd-scripts builds the dataset
        expected = []
        for subset in subsets:
            paths = [img.path for img in subset.images]
            if subset.is_reg:
                expected.append([])
                continue
            kept, _ = split_train_val(paths, [None] * len(paths), True, 0.2, validation_seed)
            expected.append(sorted(set(paths) - set(kept)))
    finally:
        random.setstate(state)
    assert [sorted(h) for h in placed.held_out] == expected
    assert [len(h) for h in placed.held_out] == [4, 2, 0]  # 23 - ceil(23 × 0.8), 11 - ceil(11 × 0.8); reg is never split


def test_validation_split_takes_the_held_out_images_out_of_the_step_math(tmp_path):
    subsets = _mixed_dataset(tmp_path)
    whole = compute_steps(Placed(subsets, SDXL), [10, 3, 1], batch_size=4, max_train_epochs=1)
    split = compute_steps(Placed(subsets, SDXL, ValidationSplit(0.2, None, 42)), [10, 3, 1], batch_size=4, max_train_epochs=1)
    assert whole.num_train_images == 23 * 10 + 11 * 3
    assert split.num_train_images == 19 * 10 + 9 * 3
    assert split.validation_images == 6
    assert split.total_steps < whole.total_steps


def test_plan_shows_the_held_out_images(runner, tmp_path):
    _mixed_dataset(tmp_path)
    out = tmp_path / "plan"
    result = runner.invoke(cli, ["plan", str(tmp_path / "train"), "--target-gpu", "rtx4090", "--out", str(out),
                                 "--set", "validation_split=0.2", "--set", "validation_seed=5"])
    assert result.exit_code == 0, result.output
    data = json.loads((out / "plan.json").read_text())
    first = data["dataset"]["subsets"][0]
    assert first["held_out"] == 4 and len(first["held_out_images"]) == 4
    assert data["step_math"]["validation_images"] == 6
    assert data["step_math"]["num_train_images"] == 19 * 10 + 9 * 3
    assert "6 image(s) held out of training for validation" in result.output
    assert f"held out of '10_sks dog' for validation: 4 of 23 ({first['held_out_images'][0]}" in result.output


def test_validation_seed_unset_warns_that_validation_overlaps_training(runner, tmp_path):
    _mixed_dataset(tmp_path)
    result = runner.invoke(cli, ["dataset", "check", str(tmp_path / "train"), "--set", "validation_split=0.2", "--json"])
    found = {f["code"] for f in json.loads(result.output)["findings"]}
    assert "dataset/validation-overlaps-training" in found


def test_an_empty_training_folder_with_validation_split_is_an_error(runner, tmp_path):
    make_folder(tmp_path / "d" / "5_x", [(1024, 1024)] * 4)
    (tmp_path / "d" / "3_empty").mkdir()
    result = runner.invoke(cli, ["dataset", "check", str(tmp_path / "d"), "--set", "validation_split=0.25", "--json"])
    assert result.exit_code == 1
    found = {f["code"]: f for f in json.loads(result.output)["findings"]}
    assert found["dataset/empty-folder-with-validation-split"]["paths"] == [str(tmp_path / "d" / "3_empty")]


def test_without_any_seed_the_held_out_images_are_random_and_that_is_said(runner, tmp_path):
    make_folder(tmp_path / "d" / "5_x", [(1024, 1024)] * 4)
    result = runner.invoke(cli, ["dataset", "check", str(tmp_path / "d"), "--set", "validation_split=0.25",
                                 "--set", "seed=none", "--json"])
    found = {f["code"] for f in json.loads(result.output)["findings"]}
    assert "dataset/validation-split-random" in found
