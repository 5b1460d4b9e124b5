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
    assert list(pd.read_csv(manual / "tables" / "lv.csv", index_col=0).columns)[-1] == "myocardium"
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
