"""Gate 1: what sd-scripts will trip over in a dataset folder, and `lorakit dataset check|prepare`."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from conftest import make_folder
from imagegen import png_with_garbage_pixels, write_photo, write_png

import lorakit
from lorakit.cli.main import cli
from lorakit.dataset.scan import parse_repeat_folder, scan_dataset

LORAKIT_ROOT = os.path.dirname(os.path.dirname(lorakit.__file__))  # the lorakit under test, for child processes


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


# --- image files sd-scripts would stop on after loading the model ----------------------------------------

def _cut(path, keep: float):
    data = path.read_bytes()
    path.write_bytes(data[:int(len(data) * keep)])
    return path


@pytest.mark.parametrize(("name", "keep"), [("half.png", 0.5), ("third.jpg", 1 / 3), ("half.webp", 0.5)])
def test_a_truncated_image_is_an_error_naming_the_file(tmp_path, name, keep):
    folder = make_folder(tmp_path / "5_x", [(1024, 1024)])
    if name.endswith(".png"):
        write_png(folder / name, 256, 256)
    else:
        write_photo(folder / name, 256, 256, noise=True)
    _cut(folder / name, keep)
    found = codes(scan_dataset(tmp_path))["dataset/truncated-image"]
    assert found.level == "error" and found.paths == [str(folder / name)] and "truncated" in found.message


def test_data_after_the_end_of_an_image_is_not_truncation(tmp_path):
    folder = make_folder(tmp_path / "5_x", [(1024, 1024)])
    photo = write_photo(folder / "motion.jpg", 256, 256, noise=True)
    photo.write_bytes(photo.read_bytes() + b"\x00\x00\x00\x18ftypmp42" + os.urandom(5000))  # a phone's motion-photo video
    png = write_png(folder / "padded.png", 64, 64)
    png.write_bytes(png.read_bytes() + b"\x00" * 300)
    assert "dataset/truncated-image" not in codes(scan_dataset(tmp_path))


def test_an_image_over_pils_pixel_limit_is_an_error(tmp_path):
    folder = make_folder(tmp_path / "5_x", [(1024, 1024)])
    write_png(folder / "huge.png", 20000, 20000, pixels=False)
    found = codes(scan_dataset(tmp_path))["dataset/image-too-large"]
    assert found.level == "error" and found.paths == [str(folder / "huge.png")] and "178,956,970" in found.message


def test_exif_rotated_photos_keep_their_stored_size_and_warn(tmp_path):
    folder = make_folder(tmp_path / "5_x", [(1024, 1024)])
    write_photo(folder / "phone.jpg", 1536, 1024, orientation=6)
    scan = scan_dataset(tmp_path)
    phone = next(img for img in scan.subsets[0].images if img.path.endswith("phone.jpg"))
    assert (phone.width, phone.height, phone.orientation) == (1536, 1024, 6)  # as sd-scripts reads it: not turned
    found = codes(scan)["dataset/exif-rotated"]
    assert found.level == "warning" and found.paths == [str(folder / "phone.jpg")] and "--upright" in found.fix


def test_deep_check_decodes_what_the_header_checks_cannot_see(runner, tmp_path):
    folder = make_folder(tmp_path / "d" / "5_x", [(1024, 1024)])
    (folder / "garbled.png").write_bytes(png_with_garbage_pixels(64, 64))
    quick = runner.invoke(cli, ["dataset", "check", str(tmp_path / "d")])
    assert quick.exit_code == 0, quick.output
    deep = runner.invoke(cli, ["dataset", "check", str(tmp_path / "d"), "--deep", "--json"])
    assert deep.exit_code == 1
    found = {f["code"]: f for f in json.loads(deep.output)["findings"]}
    assert found["dataset/undecodable-image"]["paths"] == [str(folder / "garbled.png")]


def test_prepare_upright_writes_turned_photos_upright(runner, tmp_path):
    from PIL import Image

    src = tmp_path / "photos"
    write_photo(src / "phone.jpg", 300, 200, orientation=6).with_suffix(".txt").write_text("sks dog\n")
    write_png(src / "flat.png", 1024, 1024)
    dest = tmp_path / "out"
    result = runner.invoke(cli, ["dataset", "prepare", str(src), str(dest), "--token", "sks dog", "--repeats", "2", "--upright"])
    assert result.exit_code == 0, result.output
    with Image.open(dest / "2_sks dog" / "phone.jpg") as image:
        assert image.size == (200, 300) and image.getexif().get(0x0112, 1) == 1
    assert os.path.samefile(dest / "2_sks dog" / "flat.png", src / "flat.png")
    assert (dest / "2_sks dog" / "phone.txt").read_text() == "sks dog\n"
    assert codes(scan_dataset(dest)).get("dataset/exif-rotated") is None


def test_prepare_without_upright_says_how_to_fix_turned_photos(runner, tmp_path):
    write_photo(tmp_path / "src" / "phone.jpg", 300, 200, orientation=8)
    result = runner.invoke(cli, ["dataset", "prepare", str(tmp_path / "src"), str(tmp_path / "out"), "--token", "x", "--repeats", "1"])
    assert result.exit_code == 0 and "--upright" in result.output


# --- captions that are not caption files -------------------------------------------------------------------

def test_a_huge_caption_is_read_no_further_than_the_limit(tmp_path):
    folder = make_folder(tmp_path / "5_x", [(1024, 1024)] * 2)
    (folder / "img0000.txt").write_bytes(b"x, " * 700_000)  # 2.1 MB
    found = codes(scan_dataset(tmp_path))["dataset/caption-too-large"]
    assert found.level == "error" and found.paths == [str(folder / "img0000.txt")]


@pytest.mark.skipif(not os.path.exists("/dev/zero"), reason="needs /dev/zero")
def test_a_caption_linked_to_dev_zero_is_a_finding_not_a_hang(tmp_path):
    folder = make_folder(tmp_path / "d" / "5_x", [(1024, 1024)] * 2)
    (folder / "img0000.txt").unlink()
    os.symlink("/dev/zero", folder / "img0000.txt")
    # In a child with 1 GB of address space: reading /dev/zero to the end would fail there, not fill this machine.
    code = ("import resource, sys; resource.setrlimit(resource.RLIMIT_AS, (1 << 30, 1 << 30)); "
            "from lorakit.cli.main import main; sys.argv = ['lorakit'] + sys.argv[1:]; main()")
    done = subprocess.run([sys.executable, "-c", code, "dataset", "check", str(tmp_path / "d"), "--json"],
                          capture_output=True, text=True, timeout=120, cwd=tmp_path, env={**os.environ, "PYTHONPATH": LORAKIT_ROOT})
    assert "Traceback" not in done.stderr
    found = {f["code"]: f for f in json.loads(done.stdout)["findings"]}
    assert found["dataset/caption-not-a-file"]["paths"] == [str(folder / "img0000.txt")]


# --- folder names and paths that used to end in a traceback ---------------------------------------------

@pytest.mark.parametrize("folder", ["12345678901234567890_x", "1000000000_x"])
def test_absurd_repeats_are_refused_up_front_naming_the_limit(runner, tmp_path, folder):
    make_folder(tmp_path / "d" / folder, [(1024, 1024)] * 3)
    result = runner.invoke(cli, ["plan", str(tmp_path / "d"), "--target-gpu", "rtx4090", "--out", str(tmp_path / "plan")])
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert "dataset/too-many-repeats" in result.output and "at most 10,000 repeats" in result.output
    assert not (tmp_path / "plan").exists()


def test_plan_refusing_folders_without_repeats_shows_why(runner, tmp_path):
    make_folder(tmp_path / "d" / "0_x", [(1024, 1024)])
    make_folder(tmp_path / "d" / "-3_x", [(1024, 1024)])
    result = runner.invoke(cli, ["plan", str(tmp_path / "d"), "--target-gpu", "rtx4090", "--out", str(tmp_path / "plan")])
    assert result.exit_code == 1
    assert "dataset/no-images" in result.output
    assert "'-3_x' has -3 repeats" in result.output and "'0_x' has 0 repeats" in result.output
    assert "at least 1 repeat" in result.output


@pytest.mark.parametrize("command", [["plan", "--target-gpu", "rtx4090"], ["dataset", "check"]])
def test_a_dataset_path_that_is_a_symlink_loop_is_refused(runner, tmp_path, command):
    os.symlink(tmp_path / "loop", tmp_path / "loop")
    result = runner.invoke(cli, [*command, str(tmp_path / "loop")])
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert "loops back on itself" in result.output


def test_prepare_into_a_symlink_loop_is_refused(runner, tmp_path):
    write_png(tmp_path / "src" / "a.png", 1024, 1024)
    os.symlink(tmp_path / "loop", tmp_path / "loop")
    result = runner.invoke(cli, ["dataset", "prepare", str(tmp_path / "src"), str(tmp_path / "loop" / "out"), "--token", "x"])
    assert result.exit_code == 2 and "loops back on itself" in result.output


@pytest.mark.parametrize("how", ["same", "link"])
def test_reg_that_is_the_dataset_itself_is_an_error(runner, tmp_path, how):
    make_folder(tmp_path / "d" / "5_sks dog", [(1024, 1024)] * 2)
    reg = tmp_path / "d"
    if how == "link":
        reg = tmp_path / "reg"
        os.symlink(tmp_path / "d" / "5_sks dog", reg)  # a repeat folder reached by another name
    result = runner.invoke(cli, ["dataset", "check", str(tmp_path / "d"), "--reg", str(reg), "--json"])
    assert result.exit_code == 1
    found = {f["code"]: f for f in json.loads(result.output)["findings"]}
    assert found["dataset/reg-is-dataset"]["level"] == "error"


def test_absurd_repeats_for_a_flat_folder_are_refused_too(runner, tmp_path):
    write_png(tmp_path / "flat" / "a.png", 1024, 1024)
    result = runner.invoke(cli, ["plan", str(tmp_path / "flat"), "--token", "sks dog", "--target-gpu", "rtx4090",
                                 "--out", str(tmp_path / "plan"), "--set", "dataset_repeats=1000000000"])
    assert result.exit_code == 2 and "limit of 10,000" in result.output and "Traceback" not in result.output
