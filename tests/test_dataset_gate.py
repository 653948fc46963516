"""Gate 1: what sd-scripts will trip over in a dataset folder, and `lorakit dataset check|prepare`."""

from __future__ import annotations

import json
import os

import pytest
from conftest import make_folder
from imagegen import write_png

from lorakit.cli.main import cli
from lorakit.dataset.scan import parse_repeat_folder, scan_dataset


def codes(scan):
    return {f.code: f for f in scan.findings}


@pytest.mark.parametrize(("name", "parsed"), [("10_sks dog", (10, "sks dog")), ("10_sks_dog", (10, "sks_dog")),
                                               ("10", (10, "")), ("notes", None), ("0_x", (0, "x"))])
def test_repeat_folder_names_parse_like_sd_scripts(name, parsed):
    assert parse_repeat_folder(name) == parsed


def test_clean_kohya_folder_has_no_findings(tmp_path):
    make_folder(tmp_path / "5_ohwx man", [(1024, 1024)] * 3)
    scan = scan_dataset(tmp_path)
    assert scan.layout == "kohya" and scan.findings == []
    assert (scan.subsets[0].num_repeats, scan.subsets[0].class_tokens) == (5, "ohwx man")


def test_empty_and_non_utf8_captions_are_errors(tmp_path):
    folder = make_folder(tmp_path / "5_x", [(1024, 1024)] * 3)
    (folder / "img0000.txt").write_bytes(b"")
    (folder / "img0001.txt").write_bytes("caf\xe9 x".encode("latin-1"))
    found = codes(scan_dataset(tmp_path))
    assert found["dataset/empty-caption"].level == "error"
    assert found["dataset/caption-not-utf8"].level == "error"
    assert found["dataset/empty-caption"].paths == [str(folder / "img0000.txt")]


def test_missing_captions_warn_and_say_what_is_used_instead(tmp_path):
    folder = make_folder(tmp_path / "5_ohwx man", [(1024, 1024)] * 3)
    (folder / "img0002.txt").unlink()
    finding = codes(scan_dataset(tmp_path))["dataset/missing-captions"]
    assert finding.level == "warning" and "1 of 3" in finding.message and "'ohwx man'" in finding.message


def test_corrupt_image_is_an_error(tmp_path):
    folder = make_folder(tmp_path / "5_x", [(1024, 1024)] * 2)
    (folder / "broken.png").write_bytes(b"this is not a png")
    finding = codes(scan_dataset(tmp_path))["dataset/unreadable-image"]
    assert finding.level == "error" and finding.paths == [str(folder / "broken.png")]


def test_folders_sd_scripts_skips_are_named(tmp_path):
    make_folder(tmp_path / "5_x", [(1024, 1024)])
    make_folder(tmp_path / "notes", [(1024, 1024)])
    make_folder(tmp_path / "0_y", [(1024, 1024)])
    write_png(tmp_path / "loose.png", 512, 512)
    found = codes(scan_dataset(tmp_path))
    assert "notes" in found["dataset/no-repeat-prefix"].message
    assert "0 repeats" in found["dataset/zero-repeats"].message
    assert found["dataset/root-images-ignored"].level == "warning"


def test_folders_without_any_repeat_prefix_are_an_error_with_the_fix(tmp_path):
    make_folder(tmp_path / "dogs", [(1024, 1024)])
    finding = codes(scan_dataset(tmp_path))["dataset/no-repeat-prefix"]
    assert finding.level == "error" and "lorakit dataset prepare" in finding.fix


def test_trigger_missing_from_captions(tmp_path):
    folder = make_folder(tmp_path / "5_ohwx man", [(1024, 1024)] * 2)
    (folder / "img0001.txt").write_text("a man in a hat\n")
    finding = codes(scan_dataset(tmp_path))["dataset/token-missing-from-captions"]
    assert "1 of 2" in finding.message and "'ohwx'" in finding.message


def test_blank_first_line_and_other_case_extensions(tmp_path):
    folder = make_folder(tmp_path / "5_x", [(1024, 1024)] * 2)
    (folder / "img0000.txt").write_text("\nx real caption\n")
    write_png(folder / "odd.Png", 1024, 1024)
    found = codes(scan_dataset(tmp_path))
    assert found["dataset/blank-caption"].level == "warning"
    assert found["dataset/unsupported-files"].paths == [str(folder / "odd.Png")]


def test_caption_extension_is_respected(tmp_path):
    folder = make_folder(tmp_path / "5_x", [(1024, 1024)])
    os.rename(folder / "img0000.txt", folder / "img0000.caption")
    assert "dataset/missing-captions" in codes(scan_dataset(tmp_path))
    assert "dataset/caption-extension-mismatch" in codes(scan_dataset(tmp_path))
    assert scan_dataset(tmp_path, caption_extension=".caption").findings == []


def test_flat_folder_without_token_warns(tmp_path):
    write_png(tmp_path / "a.png", 1024, 1024)
    scan = scan_dataset(tmp_path)
    assert scan.layout == "flat" and "dataset/no-token" in codes(scan)


def test_a_repeat_folder_given_directly_is_understood(tmp_path):
    folder = make_folder(tmp_path / "10_sks dog", [(1024, 1024)] * 2)
    scan = scan_dataset(folder)
    assert scan.layout == "repeat-folder"
    assert (scan.subsets[0].num_repeats, scan.subsets[0].class_tokens) == (10, "sks dog")


def test_dataset_check_prints_table_histogram_and_findings(runner, tmp_path):
    make_folder(tmp_path / "d" / "10_sks dog", [(1024, 1024), (640, 480), (832, 1216)])
    result = runner.invoke(cli, ["dataset", "check", str(tmp_path / "d")])
    assert result.exit_code == 0, result.output
    assert "10_sks dog" in result.output and "buckets" in result.output and "1152" in result.output
    assert "dataset/upscaled-images" in result.output  # 640x480 is enlarged to cover 1152x896
    data = json.loads(runner.invoke(cli, ["dataset", "check", str(tmp_path / "d"), "--json"]).output)
    assert sum(b["samples"] for b in data["step_math"]["buckets"]) == 30


def test_dataset_check_exits_1_on_errors(runner, tmp_path):
    folder = make_folder(tmp_path / "d" / "3_x", [(1024, 1024)])
    (folder / "img0000.txt").write_bytes(b"")
    result = runner.invoke(cli, ["dataset", "check", str(tmp_path / "d")])
    assert result.exit_code == 1 and "dataset/empty-caption" in result.output


def test_prepare_lays_out_links_and_never_touches_the_source(runner, tmp_path):
    src = tmp_path / "flat photos"
    for i in range(20):
        write_png(src / f"p{i}.png", 1024, 1024).with_suffix(".txt").write_text(f"ohwx man {i}\n")
    before = sorted(p.name for p in src.iterdir())
    dest = tmp_path / "kohya"
    result = runner.invoke(cli, ["dataset", "prepare", str(src), str(dest), "--token", "ohwx man"])
    assert result.exit_code == 0, result.output
    (folder,) = dest.iterdir()
    repeats, _, tokens = folder.name.partition("_")
    assert tokens == "ohwx man" and int(repeats) >= 1
    assert len(list(folder.glob("*.png"))) == 20 and len(list(folder.glob("*.txt"))) == 20
    assert os.path.samefile(folder / "p0.png", src / "p0.png")
    assert sorted(p.name for p in src.iterdir()) == before
    again = runner.invoke(cli, ["dataset", "prepare", str(src), str(dest), "--token", "ohwx man", "--repeats", "3"])
    assert again.exit_code == 2 and "never writes over" in again.output


def test_prepare_with_fixed_repeats_and_copies(runner, tmp_path):
    src = tmp_path / "src"
    write_png(src / "a.png", 1024, 1024)
    dest = tmp_path / "out"
    result = runner.invoke(cli, ["dataset", "prepare", str(src), str(dest), "--token", "sks cat", "--repeats", "7", "--mode", "copy"])
    assert result.exit_code == 0, result.output
    copied = dest / "7_sks cat" / "a.png"
    assert copied.is_file() and not os.path.samefile(copied, src / "a.png")


@pytest.mark.parametrize(("args", "message"), [(["--repeats", "many"], "neither a whole number"),
                                                (["--repeats", "0"], "fewer than 1 repeat")])
def test_prepare_bad_repeats(runner, tmp_path, args, message):
    write_png(tmp_path / "src" / "a.png", 1024, 1024)
    result = runner.invoke(cli, ["dataset", "prepare", str(tmp_path / "src"), str(tmp_path / "out"), "--token", "x", *args])
    assert result.exit_code == 2 and message in result.output


def test_an_image_thinner_than_a_bucket_step_is_an_error_not_a_crash(runner, tmp_path):
    folder = make_folder(tmp_path / "d" / "5_x", [(1024, 1024), (800, 40)])
    result = runner.invoke(cli, ["dataset", "check", str(tmp_path / "d"), "--set", "bucket_no_upscale=true", "--json"])
    assert result.exit_code == 1 and "Traceback" not in result.output
    found = {f["code"]: f for f in json.loads(result.output)["findings"]}
    assert found["dataset/image-smaller-than-bucket-step"]["paths"] == [str(folder / "img0001.png")]
