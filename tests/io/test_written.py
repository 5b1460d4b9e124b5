"""The record of what ctseg wrote, and the rule it serves: overwrite replaces only ctseg's own files."""

from __future__ import annotations

import json
import logging
import os

import pytest

from ctseg_helpers.errors import CtsegDataError, CtsegSettingsError
from ctseg_helpers.io.written import (
    MANIFEST_NAME,
    check_outside_inputs,
    check_replaceable,
    forget_written,
    record_written,
    rename_recorded,
    written_by_ctseg,
)

NEVER = r"ctseg never replaces such files, even with --overwrite \(overwrite=True\): move it away or "


def _written(path, text="ctseg's table\n"):
    path.write_text(text)
    record_written(path)
    return path


def test_a_missing_file_may_be_written_with_or_without_overwrite(tmp_path):
    assert check_replaceable(tmp_path / "new.csv", False) is False
    assert check_replaceable(tmp_path / "new.csv", True) is False


def test_an_existing_file_without_overwrite_is_refused_with_what_to_do(tmp_path):
    path = _written(tmp_path / "a.csv")
    with pytest.raises(CtsegSettingsError, match="a.csv exists already; choose another name or pass --overwrite"):
        check_replaceable(path, False)
    with pytest.raises(CtsegDataError, match="a.csv exists already; choose another --out"):
        check_replaceable(path, False, what_to_do="choose another --out", error_type=CtsegDataError)


def test_a_file_ctseg_wrote_and_nobody_changed_may_be_replaced(tmp_path):
    path = _written(tmp_path / "a.csv")
    assert written_by_ctseg(path)
    assert check_replaceable(path, True) is True
    manifest = json.loads((tmp_path / MANIFEST_NAME).read_text())
    stat = path.stat()
    assert manifest == {
        "format": "ctseg-written",
        "version": 1,
        "files": {"a.csv": {"size": stat.st_size, "mtime_ns": stat.st_mtime_ns}},
    }
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")] == []  # written atomically


def test_a_users_own_file_is_never_replaced_and_left_as_it_is(tmp_path):
    _written(tmp_path / "other.csv")  # a manifest exists, without this file
    mine = tmp_path / "mine.csv"
    mine.write_bytes(b"my measurements\r\n")
    with pytest.raises(CtsegSettingsError, match="mine.csv: not written by ctseg; " + NEVER + "choose another output$"):
        check_replaceable(mine, True)
    with pytest.raises(CtsegDataError, match=NEVER + "choose another --out$"):
        check_replaceable(mine, True, instead="choose another --out", error_type=CtsegDataError)
    assert mine.read_bytes() == b"my measurements\r\n" and not written_by_ctseg(mine)


def test_a_file_changed_after_ctseg_wrote_it_is_never_replaced(tmp_path):
    grown = _written(tmp_path / "grown.csv")
    grown.write_text("ctseg's table\nmy note\n")
    with pytest.raises(CtsegSettingsError, match="grown.csv: changed since ctseg wrote it; " + NEVER):
        check_replaceable(grown, True)
    same_size = _written(tmp_path / "same.csv", "1234\n")
    same_size.write_text("5678\n")
    info = same_size.stat()
    os.utime(same_size, ns=(info.st_atime_ns, info.st_mtime_ns + 1_000_000_000))  # saved a second later
    with pytest.raises(CtsegSettingsError, match="same.csv: changed since ctseg wrote it"):
        check_replaceable(same_size, True)
    assert same_size.read_text() == "5678\n"


def test_a_folder_or_a_link_at_the_path_is_never_replaced(tmp_path):
    (tmp_path / "out.h5").mkdir()
    with pytest.raises(CtsegSettingsError, match="out.h5: not written by ctseg"):
        check_replaceable(tmp_path / "out.h5", True)
    target = tmp_path / "precious.csv"
    target.write_text("mine")
    link = tmp_path / "table.csv"
    _written(link)
    link.unlink()
    link.symlink_to(target)  # the name ctseg wrote now leads to the user's file
    with pytest.raises(CtsegSettingsError, match="table.csv: changed since ctseg wrote it"):
        check_replaceable(link, True)
    link.unlink()
    link.symlink_to(tmp_path / "gone.csv")  # a dangling link exists too
    with pytest.raises(CtsegSettingsError, match="table.csv exists already"):
        check_replaceable(link, False)


def test_a_file_may_be_recognised_by_its_content_instead(tmp_path):
    path = tmp_path / "run.h5"
    path.write_text("unfinished ctseg run")
    assert check_replaceable(path, True, own_file=lambda p: p.read_text().startswith("unfinished ctseg")) is True
    with pytest.raises(CtsegSettingsError, match="run.h5: not written by ctseg"):
        check_replaceable(path, True, own_file=lambda p: False)
    record_written(path)
    path.write_text("unfinished ctseg run, edited")  # recorded, then changed: its content is not asked
    with pytest.raises(CtsegSettingsError, match="run.h5: changed since ctseg wrote it"):
        check_replaceable(path, True, own_file=lambda p: True)


def test_forgetting_removes_entries_and_an_empty_manifest(tmp_path):
    a, b = _written(tmp_path / "a.csv"), _written(tmp_path / "b.csv")
    forget_written(a)
    assert not written_by_ctseg(a) and written_by_ctseg(b)
    forget_written(b, tmp_path / "never.csv")
    assert not (tmp_path / MANIFEST_NAME).exists()
    forget_written(tmp_path / "nothing" / "x.csv")  # no manifest: nothing to do


def test_files_are_recorded_in_their_own_folders(tmp_path):
    (tmp_path / "sub").mkdir()
    a, b = tmp_path / "a.csv", tmp_path / "sub" / "b.csv"
    a.write_text("a")
    b.write_text("b")
    record_written(a, b)
    assert set(json.loads((tmp_path / MANIFEST_NAME).read_text())["files"]) == {"a.csv"}
    assert set(json.loads((tmp_path / "sub" / MANIFEST_NAME).read_text())["files"]) == {"b.csv"}
    with pytest.raises(FileNotFoundError, match="none.csv: no such file to record as written by ctseg"):
        record_written(tmp_path / "none.csv")


@pytest.mark.parametrize("content", ["{not json", '{"files": {"a.csv": {}}}', '["a.csv"]'])
def test_an_unusable_manifest_vouches_for_nothing(tmp_path, caplog, content):
    path = tmp_path / "a.csv"
    path.write_text("a")
    (tmp_path / MANIFEST_NAME).write_text(content)
    with caplog.at_level(logging.WARNING), pytest.raises(CtsegSettingsError, match="a.csv: not written by ctseg"):
        check_replaceable(path, True)
    assert "the files it listed count as not written by ctseg" in caplog.text
    record_written(path)  # replaced by a usable one
    assert written_by_ctseg(path)


def test_an_output_folder_in_a_folder_the_command_reads_is_refused(tmp_path):
    labels = tmp_path / "labels"
    with pytest.raises(
        CtsegSettingsError,
        match=r"labels: the output folder is the manual label folder .*labels, "
        r"which this command reads; ctseg never writes into a folder it "
        r"reads: choose an output folder outside it",
    ):
        check_outside_inputs(labels, {"manual label": labels})
    with pytest.raises(CtsegDataError, match="out: the output folder is inside the DICOM folder"):
        check_outside_inputs(labels / "out", {"manual label": None, "DICOM": tmp_path}, error_type=CtsegDataError)
    check_outside_inputs(tmp_path / "out", {"manual label": labels, "DICOM": None})
    check_outside_inputs(tmp_path, {"manual label": labels})  # a folder holding the input is fine


def test_a_file_renamed_into_place_is_recorded_before_it_is_there(tmp_path):
    tmp = tmp_path / ".123.areas.csv"
    tmp.write_text("ctseg's table\n")
    record_written(tmp)  # a writer that records what it writes: the entry moves with the file
    assert rename_recorded(tmp, tmp_path / "areas.csv") == tmp_path / "areas.csv"
    assert written_by_ctseg(tmp_path / "areas.csv") and not tmp.exists()
    manifest = json.loads((tmp_path / MANIFEST_NAME).read_text())
    assert list(manifest["files"]) == ["areas.csv"]
    # killed after the record, before the rename: the entry vouches for nothing in place
    tmp.write_text("another table\n")
    (tmp_path / "areas.csv").unlink()
    manifest["files"]["areas.csv"] = {"size": tmp.stat().st_size, "mtime_ns": tmp.stat().st_mtime_ns}
    (tmp_path / MANIFEST_NAME).write_text(json.dumps(manifest))
    assert check_replaceable(tmp_path / "areas.csv", True) is False


def test_renaming_into_place_refuses_callers_mistakes(tmp_path):
    (tmp_path / "sub").mkdir()
    _written(tmp_path / "there.csv")
    with pytest.raises(FileNotFoundError, match=r"\.tmp: no such file to rename into place"):
        rename_recorded(tmp_path / ".tmp", tmp_path / "new.csv")
    (tmp_path / ".tmp").write_text("x")
    with pytest.raises(FileExistsError, match="there.csv: exists; delete the file it replaces before renaming .tmp"):
        rename_recorded(tmp_path / ".tmp", tmp_path / "there.csv")
    with pytest.raises(ValueError, match="must be in the folder of"):
        rename_recorded(tmp_path / ".tmp", tmp_path / "sub" / "new.csv")
    assert (tmp_path / ".tmp").read_text() == "x" and not (tmp_path / "sub" / "new.csv").exists()
