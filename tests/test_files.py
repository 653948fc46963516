"""Where lorakit may write (lorakit.util.files): never over the user's files, and never half a file."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest

from lorakit.errors import UserError
from lorakit.util.files import check_output_file, check_output_folder, write_text_atomic


def test_a_new_or_empty_folder_may_be_written(tmp_path):
    (tmp_path / "empty").mkdir()
    check_output_folder(tmp_path / "new", marker="plan.json", kind="plan")
    check_output_folder(tmp_path / "empty", marker="plan.json", kind="plan")


def test_a_folder_of_other_files_is_refused_even_with_replace(tmp_path):
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(UserError) as refused:
        check_output_folder(tmp_path, replace=True, marker="plan.json", kind="plan")
    assert "not a lorakit plan" in refused.value.message and "never writes over" in refused.value.message
    assert refused.value.fix == "give --out a new or empty folder"


def test_a_folder_without_a_marker_rule_must_be_empty(tmp_path):
    (tmp_path / "dest" / "1_x").mkdir(parents=True)
    with pytest.raises(UserError, match="DEST .* is a folder with other files in it; lorakit never writes over"):
        check_output_folder(tmp_path / "dest", replace=True, option="DEST")


def test_a_lorakit_folder_is_replaced_only_when_asked(tmp_path):
    (tmp_path / "batch.json").write_text("{}")
    with pytest.raises(UserError) as refused:
        check_output_folder(tmp_path, marker="batch.json", kind="batch", replace_note="old plans are kept")
    assert "already holds a batch" in refused.value.message
    assert refused.value.fix == "pass --force to replace it (old plans are kept), or choose another --out"
    check_output_folder(tmp_path, replace=True, marker="batch.json", kind="batch")


def test_a_file_where_a_folder_should_be_is_refused(tmp_path):
    (tmp_path / "out").write_text("mine")
    with pytest.raises(UserError, match="is a file, not a folder"):
        check_output_folder(tmp_path / "out", replace=True, marker="plan.json", kind="plan")


def test_an_existing_file_is_refused_with_the_callers_reason(tmp_path):
    path = tmp_path / "config.json"
    path.write_text("edited in the GUI")
    with pytest.raises(UserError) as refused:
        check_output_file(path, why="the GUI may have saved your edits there")
    assert refused.value.message.endswith("lorakit does not overwrite it (the GUI may have saved your edits there).")
    assert refused.value.fix == "pass --force to replace it, or choose another -o"
    check_output_file(path, replace=True)


def test_a_command_without_force_only_offers_another_name(tmp_path):
    path = tmp_path / "s.sbatch"
    path.write_text("mine")
    with pytest.raises(UserError) as refused:
        check_output_file(path, force_option=None)
    assert refused.value.fix == "choose another -o"


def test_a_folder_is_not_a_file_to_write(tmp_path):
    with pytest.raises(UserError) as refused:
        check_output_file(tmp_path, replace=True, example="report.html")
    assert refused.value.fix == "give -o a file name such as report.html"


def test_atomic_write_replaces_the_file_and_leaves_no_temp_file(tmp_path):
    path = tmp_path / "plan.json"
    path.write_text("old")
    write_text_atomic(path, "new ✓\n")
    assert path.read_text(encoding="utf-8") == "new ✓\n"
    assert os.listdir(tmp_path) == ["plan.json"]


def test_an_atomic_write_on_a_full_disk_leaves_no_temp_file_and_names_the_file(tmp_path, monkeypatch):
    path = tmp_path / "run.json"
    path.write_text("old")
    real_write = Path.write_text

    def half_written(self, text, *args, **kwargs):
        real_write(self, text[:3], *args, **kwargs)
        raise OSError(errno.ENOSPC, "No space left on device", str(self))

    monkeypatch.setattr(Path, "write_text", half_written)
    with pytest.raises(OSError) as raised:
        write_text_atomic(path, "new record")
    assert raised.value.errno == errno.ENOSPC and raised.value.filename == str(path)
    assert path.read_text() == "old" and os.listdir(tmp_path) == ["run.json"]


def test_a_failed_atomic_write_keeps_the_old_file(tmp_path, monkeypatch):
    path = tmp_path / "run.json"
    path.write_text("old")

    def broken_replace(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", broken_replace)
    with pytest.raises(OSError, match="disk full"):
        write_text_atomic(path, "new")
    assert path.read_text() == "old" and os.listdir(tmp_path) == ["run.json"]
