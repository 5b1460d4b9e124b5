"""``ctseg inspect`` and ``ctseg check-data`` through ctseg_helpers.cli.main."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from ctseg_helpers.cli import main
from ctseg_helpers.io.dicom_write import write_dicom_series


def make_main_dir(root, labels: dict):
    split = root / "train"
    (split / "dicoms").mkdir(parents=True)
    (split / "labels").mkdir()
    names = sorted(labels)
    write_dicom_series(split / "dicoms", np.zeros((len(names), 4, 5)), names=names)
    for name, array in labels.items():
        if array is not None:
            Image.fromarray(np.asarray(array, np.uint8)).save(split / "labels" / f"{name}.png")
    return root


LABEL = np.array([[0, 1, 1, 0, 0], [0, 1, 2, 0, 0], [0, 0, 0, 0, 0], [0, 0, 0, 0, 0]])


# --- inspect ------------------------------------------------------------------------------------


def test_inspect_json(tmp_path, capsys):
    paths = write_dicom_series(
        tmp_path,
        np.zeros((3, 6, 7)),
        names=["c", "a", "b"],
        slice_thickness_mm=2.0,
        pixel_spacing_mm=(0.75, 0.8),
        series_description="abdomen",
    )
    (tmp_path / "readme.txt").write_text("not dicom")
    assert main(["inspect", str(tmp_path), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    (series,) = data["series"]
    assert series["n_images"] == 3 and series["modality"] == "CT"
    assert (series["rows"], series["columns"]) == (6, 7)
    assert series["spacing_mm"] == [0.75, 0.8]
    assert series["files"] == [str(p) for p in paths]
    assert series["positions_mm"] == [0.0, 2.0, 4.0]
    assert series["skipped"] == [{"file": str(tmp_path / "readme.txt"), "reason": "not a DICOM file"}]
    assert set(series) >= {
        "series_uid",
        "modality",
        "n_images",
        "rows",
        "columns",
        "spacing_mm",
        "files",
        "positions_mm",
        "skipped",
    }


def test_inspect_text_lists_series_and_skipped_files(tmp_path, capsys):
    write_dicom_series(tmp_path, np.zeros((2, 6, 7)), series_description="T1", series_uid="1.2.3")
    write_dicom_series(tmp_path, np.zeros((1, 6, 7)), series_description="T2", names=["other"])
    (tmp_path / "x.txt").write_text("x")
    assert main(["inspect", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "2 series" in out
    assert "series 1: 'T1' CT, 2 images of 6x7, pixels 1 x 1 mm" in out
    assert "uid 1.2.3" in out and "2 positions, 0.00 to 1.00 mm along the slice normal" in out
    assert "series 2: 'T2'" in out and "file: other.dcm" in out
    assert "skipped 1 file(s):\n  x.txt: not a DICOM file" in out


@pytest.mark.realdata
def test_inspect_cine_text(sunnybrook, capsys):
    assert main(["inspect", str(sunnybrook / "scans" / "SCD0000101")]) == 0
    assert "240 images of 256x256" in capsys.readouterr().out


def test_inspect_errors_exit_2_with_one_line(tmp_path, capsys):
    assert main(["inspect", str(tmp_path / "missing")]) == 2
    assert capsys.readouterr().err.strip().endswith("missing: no such folder; check the path")
    (tmp_path / "a.txt").write_text("x")
    assert main(["inspect", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "no DICOM images in this folder (1 not a DICOM file)" in err
    assert len(err.strip().splitlines()) == 1


# --- check-data ---------------------------------------------------------------------------------


def test_check_data_json_on_main_dir(tmp_path, capsys):
    root = make_main_dir(tmp_path, {"a": LABEL, "b": LABEL})
    assert main(["check-data", str(root), "--num-labels", "2", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["n_pairs"] == 2 and data["label_values"] == [0, 1, 2] and data["problems"] == []
    assert data["split_dir"] == str(root / "train") and data["folder_given"] == str(root)


def test_check_data_text_says_which_folder_was_used(tmp_path, capsys):
    root = make_main_dir(tmp_path, {"a": LABEL})
    assert main(["check-data", str(root / "train"), "--num-labels", "2"]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"checking {root / 'train'} (the folder given)")
    assert "No problems found." in out
    assert main(["check-data", str(root), "--num-labels", "2"]) == 0
    assert f"(the 'train' folder inside {root})" in capsys.readouterr().out


def test_check_data_problems_exit_1(tmp_path, capsys):
    root = make_main_dir(tmp_path, {"a": LABEL * 2, "b": None})
    assert main(["check-data", str(root), "--num-labels", "2", "--json"]) == 1
    data = json.loads(capsys.readouterr().out)
    assert data["problems"] == ["1 image(s) without a label: b.dcm", "1 label(s) with values outside 0..2: a (4)"]
    assert data["label_values"] == [0, 2, 4]


def test_check_data_errors_exit_2(tmp_path, capsys):
    assert main(["check-data", str(tmp_path), "--num-labels", "1"]) == 2
    assert "neither this folder nor" in capsys.readouterr().err
    root = make_main_dir(tmp_path / "d", {"a": LABEL})
    assert main(["check-data", str(root), "--num-labels", "300"]) == 2
    assert "num_labels must be between 1 and 255" in capsys.readouterr().err


def test_check_data_needs_num_labels(tmp_path, capsys):
    with pytest.raises(SystemExit) as info:
        main(["check-data", str(tmp_path)])
    assert info.value.code == 2
    assert "--num-labels" in capsys.readouterr().err


@pytest.mark.realdata
def test_check_data_on_sunnybrook(sunnybrook, capsys):
    assert main(["check-data", str(sunnybrook / "lv_cavity"), "--num-labels", "1", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["n_pairs"] == 56 and data["label_values"] == [0, 1]
