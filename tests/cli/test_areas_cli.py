"""``ctseg areas --overwrite`` replaces only the tables an earlier ctseg run wrote."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from ctseg_helpers.cli import main
from ctseg_helpers.io.dicom_write import write_dicom_series

NEVER = "ctseg never replaces such files, even with --overwrite (overwrite=True): move it away or choose another --out"


@pytest.fixture()
def manual(tmp_path):
    """Two slices 0.5 mm x 0.5 mm, 4 mm apart; a 10 x 10 label 1 on each (25 mm2)."""
    write_dicom_series(tmp_path / "scan", np.zeros((2, 20, 20)), pixel_spacing_mm=(0.5, 0.5), slice_thickness_mm=4.0)
    (tmp_path / "labels").mkdir()
    for k in (1, 2):
        mask = np.zeros((20, 20), np.uint8)
        mask[0:10, 0:10] = 1
        Image.fromarray(mask).save(tmp_path / "labels" / f"slice_000{k}.png")
    return tmp_path


def _areas(root, *extra):
    return [
        "areas",
        str(root / "labels"),
        str(root / "scan"),
        "--labels",
        "LV",
        "--out",
        str(root / "tables" / "lv.csv"),
        *extra,
    ]


def test_a_table_ctseg_wrote_is_replaced_with_overwrite(manual, capsys):
    assert main(_areas(manual)) == 0
    assert (manual / "tables" / "lv_volumes.csv").is_file()
    assert main(_areas(manual, "--labels", "myocardium", "--overwrite")) == 0
    capsys.readouterr()
    columns = list(pd.read_csv(manual / "tables" / "lv.csv", index_col=0).columns)
    assert columns[2] == "myocardium" and "LV" not in columns
    assert "myocardium" in pd.read_csv(manual / "tables" / "lv_volumes.csv", index_col=0).index
    # labels of one slice only form no stack: the earlier volumes go with the table they belonged to
    (manual / "labels" / "slice_0002.png").unlink()
    assert main(_areas(manual, "--overwrite")) == 0
    assert "no 3D stack: the earlier" in capsys.readouterr().out
    assert not (manual / "tables" / "lv_volumes.csv").exists()


@pytest.mark.parametrize("name", ["lv.csv", "lv_volumes.csv"])
def test_a_users_own_table_is_never_replaced(manual, capsys, name):
    (manual / "tables").mkdir()
    (manual / "tables" / name).write_bytes(b"my own areas\n")
    assert main(_areas(manual, "--overwrite")) == 2
    assert f"{name}: not written by ctseg; {NEVER}" in capsys.readouterr().err
    assert (manual / "tables" / name).read_bytes() == b"my own areas\n"
    assert sorted(p.name for p in (manual / "tables").iterdir()) == [name]  # nothing written


def test_a_table_edited_after_ctseg_wrote_it_is_never_replaced(manual, capsys):
    assert main(_areas(manual)) == 0
    table = manual / "tables" / "lv.csv"
    edited = table.read_bytes() + b"checked by JS\n"
    table.write_bytes(edited)
    assert main(_areas(manual, "--overwrite")) == 2
    assert f"lv.csv: changed since ctseg wrote it; {NEVER}" in capsys.readouterr().err
    assert table.read_bytes() == edited


def test_areas_adds_pixel_values_fat_fraction_and_shape_by_default(manual, capsys):
    assert main(_areas(manual)) == 0
    out = capsys.readouterr().out
    assert "mean area per slice (mm2): LV 25.0" in out
    assert "fat fraction: share of each ROI's pixels from -190 to -30 HU" in out
    table = pd.read_csv(manual / "tables" / "lv.csv", index_col=0)
    assert list(table.columns) == [
        "file",
        "slice_position_mm",
        "LV",
        "LV_mean_hu",
        "LV_sd_hu",
        "LV_median_hu",
        "LV_fat_fraction",
        "LV_perimeter_mm",
        "LV_max_diameter_mm",
    ]
    assert list(table.index[-2:]) == ["mean", "std"]
    assert table.loc["mean", "LV_mean_hu"] == 0.0 and table.loc["mean", "LV_fat_fraction"] == 0.0


def test_areas_fat_window_and_areas_only(manual, capsys):
    assert main(_areas(manual, "--fat-window", "-10", "10")) == 0
    assert "fat fraction: share of each ROI's pixels from -10 to 10 HU" in capsys.readouterr().out
    assert pd.read_csv(manual / "tables" / "lv.csv", index_col=0).loc["mean", "LV_fat_fraction"] == 1.0
    assert main(_areas(manual, "--areas-only", "--overwrite")) == 0
    assert "fat fraction" not in capsys.readouterr().out
    assert list(pd.read_csv(manual / "tables" / "lv.csv", index_col=0).columns) == ["file", "slice_position_mm", "LV"]


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (
            ["--fat-window", "-30", "-190"],
            "--fat-window must be two finite numbers in HU with low < high, e.g. -190 -30; got [-30.0, -190.0]",
        ),
        (
            ["--fat-window", "-190", "-30", "--areas-only"],
            "--fat-window needs the fat fraction column: leave out --areas-only",
        ),
    ],
)
def test_areas_refuses_a_bad_fat_window(manual, capsys, extra, message):
    assert main(_areas(manual, *extra)) == 2
    assert message in capsys.readouterr().err
    assert not (manual / "tables").exists()


def test_areas_of_a_cine_series_prints_the_mean_of_each_position(tmp_path, capsys):
    for phase in (1, 2):
        write_dicom_series(
            tmp_path / "scan",
            np.zeros((2, 20, 20)),
            pixel_spacing_mm=(0.5, 0.5),
            slice_thickness_mm=8.0,
            modality="MR",
            names=[f"P{phase}_1", f"P{phase}_2"],
            series_uid="1.2.826.0.1.3680043.8.498.2",
            rescale_intercept=0.0,
        )
    (tmp_path / "labels").mkdir()
    for phase, size in ((1, 10), (2, 6)):
        mask = np.zeros((20, 20), np.uint8)
        mask[:size, :size] = 1
        for k in (1, 2):
            Image.fromarray(mask).save(tmp_path / "labels" / f"P{phase}_{k}.png")
    assert main(_areas(tmp_path)) == 0
    out = capsys.readouterr().out
    assert "mean area per slice @ 0 mm (mm2): LV 17.0" in out and "mean area per slice @ 8 mm (mm2): LV 17.0" in out
    assert "fat fraction" not in out
