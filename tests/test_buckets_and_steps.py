"""The worked bucket and step examples of docs/sd-scripts.md §5, §6, reproduced exactly."""

from pathlib import Path

import pytest
from conftest import make_folder

from lorakit.dataset.buckets import BucketAssigner, BucketSettings, make_bucket_resolutions
from lorakit.dataset.scan import scan_dataset
from lorakit.dataset.steps import Placed, compute_steps, predict_sample_steps, predict_saves

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
