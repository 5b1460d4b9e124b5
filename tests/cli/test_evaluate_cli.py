"""``ctseg evaluate`` end to end on a tiny DICOM scan."""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from ctseg_helpers.cli import main
from ctseg_helpers.io.dicom_write import write_dicom_series


@pytest.fixture
def scan(tmp_path):
    names = [f"img{k}" for k in range(3)]
    truth = np.zeros((3, 20, 20), np.uint8)
    truth[:, 5:11, 5:11] = 1
    pred = truth.copy()
    pred[2, 5:11, 5:11] = 0
    pred[2, 5:11, 7:13] = 1  # shifted 2 columns of 0.5 mm
    write_dicom_series(
        tmp_path / "dicoms",
        np.where(truth > 0, 50.0, -50.0),
        names=names,
        pixel_spacing_mm=(0.7, 0.5),
        slice_thickness_mm=3.0,
    )
    for folder, stack in (("pred", pred), ("truth", truth)):
        (tmp_path / folder).mkdir()
        for name, labels in zip(names, stack, strict=True):
            Image.fromarray(labels).save(tmp_path / folder / f"{name}.png")
    return tmp_path


def _args(root, *extra):
    return [
        "evaluate",
        str(root / "pred"),
        str(root / "truth"),
        "--dicoms",
        str(root / "dicoms"),
        "--out",
        str(root / "out"),
        *extra,
    ]


def test_evaluate_writes_tables_and_figure(scan, capsys):
    assert main(_args(scan, "--labels", "tumour")) == 0
    out = capsys.readouterr().out
    assert "evaluated 3 slice(s), 1 ROI(s)" in out
    assert "tumour: Dice 0.889 ± 0.192 (median 1.000, n=3)" in out
    assert "tumour (volume of series" in out
    assert "wrote" in out and "bland_altman.png" in out
    metrics = pd.read_csv(scan / "out" / "metrics.csv")
    assert list(metrics["file"]) == ["img0", "img1", "img2"]
    assert set(metrics["roi"]) == {"tumour"}
    assert metrics.loc[2, "hd"] == pytest.approx(1.0)  # 2 columns x 0.5 mm
    assert metrics.loc[2, "truth_area_mm2"] == pytest.approx(36 * 0.35)
    summary = pd.read_csv(scan / "out" / "summary.csv")
    assert {"roi", "metric", "mean", "std", "median"} <= set(summary.columns)
    dice = summary[(summary["metric"] == "dice")].iloc[0]
    assert dice["median"] == 1.0 and dice["n"] == 3
    assert (scan / "out" / "volume_metrics.csv").exists()
    assert (scan / "out" / "bland_altman.png").stat().st_size > 1000


def test_existing_results_are_not_overwritten(scan, capsys):
    assert main(_args(scan)) == 0
    capsys.readouterr()
    assert main(_args(scan)) == 2
    err = capsys.readouterr().err
    assert "bland_altman.png: exists already" in err and "--overwrite" in err
    assert main(_args(scan, "--overwrite")) == 0
    assert "ROI 1: Dice" in capsys.readouterr().out


NEVER = "ctseg never replaces such files, even with --overwrite (overwrite=True): move it away or choose another"


def test_overwrite_replaces_only_what_ctseg_wrote(scan, capsys):
    (scan / "out").mkdir()
    (scan / "out" / "summary.csv").write_bytes(b"my summary\n")
    assert main(_args(scan, "--overwrite")) == 2
    assert f"summary.csv: not written by ctseg; {NEVER} output folder" in capsys.readouterr().err
    assert (scan / "out" / "summary.csv").read_bytes() == b"my summary\n"
    assert sorted(p.name for p in (scan / "out").iterdir()) == ["summary.csv"]  # nothing written

    (scan / "out" / "summary.csv").unlink()
    assert main(_args(scan)) == 0
    (scan / "out" / "notes.txt").write_text("mine")
    assert main(_args(scan, "--labels", "tumour", "--overwrite")) == 0
    assert set(pd.read_csv(scan / "out" / "metrics.csv")["roi"]) == {"tumour"}
    assert (scan / "out" / "notes.txt").read_text() == "mine"

    metrics = scan / "out" / "metrics.csv"
    edited = metrics.read_bytes().replace(b"tumour", b"tumor")
    metrics.write_bytes(edited)
    assert main(_args(scan, "--overwrite")) == 2
    assert f"metrics.csv: changed since ctseg wrote it; {NEVER}" in capsys.readouterr().err
    assert metrics.read_bytes() == edited


def test_overwrite_removes_an_earlier_evaluations_file_this_one_does_not_write(scan, capsys):
    assert main(_args(scan)) == 0
    assert (scan / "out" / "volume_metrics.csv").is_file()
    (scan / "pred" / "img1.png").unlink()  # the predictions no longer cover the volume
    assert main(_args(scan, "--overwrite")) == 0
    assert not (scan / "out" / "volume_metrics.csv").exists()
    assert (scan / "out" / "metrics.csv").is_file()


@pytest.mark.parametrize("out", ["truth", "truth/evaluation", "pred", "dicoms"])
def test_an_output_folder_in_an_input_folder_is_refused(scan, capsys, out):
    before = sorted(p.name for p in (scan / out.split("/")[0]).iterdir())
    assert (
        main(
            [
                "evaluate",
                str(scan / "pred"),
                str(scan / "truth"),
                "--dicoms",
                str(scan / "dicoms"),
                "--out",
                str(scan / out),
                "--overwrite",
            ]
        )
        == 2
    )
    assert "which this command reads; ctseg never writes into a folder it reads" in capsys.readouterr().err
    assert sorted(p.name for p in (scan / out.split("/")[0]).iterdir()) == before


def test_user_errors_are_one_line(scan, capsys):
    assert (
        main(
            [
                "evaluate",
                str(scan / "nope"),
                str(scan / "truth"),
                "--dicoms",
                str(scan / "dicoms"),
                "--out",
                str(scan / "out"),
            ]
        )
        == 2
    )
    assert "nope: no such label folder" in capsys.readouterr().err
    assert main(_args(scan, "--labels", "a,,b")) == 2
    assert "ROI names must not be empty" in capsys.readouterr().err


def test_labels_with_background_first_name_label_1(scan, capsys, caplog):
    with caplog.at_level(logging.INFO):
        assert main(_args(scan, "--labels", "background,tumour")) == 0
    assert "tumour: Dice 0.889" in capsys.readouterr().out
    assert set(pd.read_csv(scan / "out" / "metrics.csv")["roi"]) == {"tumour"}
    assert "--labels starts with 'background', the name of label 0: dropped, so label 1 is 'tumour'" in caplog.text
    assert main(_args(scan, "--labels", "tumour,background", "--overwrite")) == 2
    assert "names label 2 'background', but the background is label 0 and not an ROI" in capsys.readouterr().err


def test_a_series_without_predictions_is_skipped_and_said(scan, capsys, caplog):
    other = np.zeros((2, 20, 20), np.uint8)
    other[:, 2:6, 2:6] = 1
    write_dicom_series(
        scan / "dicoms",
        np.where(other > 0, 50.0, -50.0),
        names=["other0", "other1"],
        series_description="not segmented",
        series_uid="1.2.826.0.9",
    )
    for k in range(2):
        Image.fromarray(other[k]).save(scan / "truth" / f"other{k}.png")
    with caplog.at_level(logging.WARNING):
        assert main(_args(scan)) == 0
    assert "evaluated 3 slice(s), 1 ROI(s); 1 series left out (see the warning above)" in capsys.readouterr().out
    notes = [r.getMessage() for r in caplog.records if "left out of the evaluation" in r.getMessage()]
    assert notes == [
        "series 1.2.826.0.9 ('not segmented', 2 slice(s), e.g. other0.dcm): 2 manual label map(s) but "
        "no predicted one; left out of the evaluation (segment that series too to evaluate it)"
    ]


def test_help_lists_options(capsys):
    with pytest.raises(SystemExit):
        main(["evaluate", "--help"])
    text = capsys.readouterr().out
    for option in ("PRED_LABELS_DIR", "TRUTH_LABELS_DIR", "--dicoms", "--labels", "--out", "--tolerance-mm"):
        assert option in text
