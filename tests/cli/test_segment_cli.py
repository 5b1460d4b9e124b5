"""``ctseg segment`` and ``ctseg areas`` through ctseg_helpers.cli.main, as a terminal user runs them."""

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from ctseg_helpers.cli import main
from ctseg_helpers.io.dicom_write import write_dicom_series
from tests.segment.tiny_model import make_tiny_model_file

#: The columns ``area_table`` adds per ROI of a CT series (measure/intensity.py).
CT_MEASURES = ("mean_hu", "sd_hu", "median_hu", "fat_fraction", "perimeter_mm", "max_diameter_mm")


def measure_columns(rois=("A", "B")) -> list[str]:
    return [f"{roi}_{measure}" for roi in rois for measure in CT_MEASURES]


def without_uncertainty(areas):
    """A segment run's area table without the columns only a run has (the uncertainty of its predictions)."""
    from ctseg_helpers.measure.uncertainty import UNCERTAINTY_COLUMNS

    return areas.drop(columns=list(UNCERTAINTY_COLUMNS), errors="ignore")


@pytest.fixture(scope="module")
def model_file(tmp_path_factory):
    return make_tiny_model_file(tmp_path_factory.mktemp("model") / "tiny.keras", label_names=("soft", "bright"))


@pytest.fixture()
def scan(tmp_path):
    images = np.full((2, 36, 36), -1000.0)
    images[:, 4:14, 4:14] = 0.0  # 100 px label 1
    images[1, 20:30, 20:25] = 400.0  # 50 px label 2 on slice 2
    write_dicom_series(tmp_path / "scan", images, pixel_spacing_mm=(0.5, 0.5), slice_thickness_mm=4.0)
    return tmp_path / "scan"


def test_segment_writes_a_run_and_prints_where(model_file, scan, tmp_path, capsys):
    status = main(
        [
            "segment",
            str(model_file),
            str(scan),
            "--out",
            str(tmp_path / "pred"),
            "--labels",
            "A, B",
            "--blend",
            "hann",
            "--overlap",
            "0.5",
            "--no-animation",
        ]
    )
    out = capsys.readouterr()
    assert status == 0
    run_dirs = list((tmp_path / "pred").iterdir())
    assert len(run_dirs) == 1 and run_dirs[0].name.startswith("scan_")
    assert f"2 slice(s) segmented -> {run_dirs[0]}" in out.out
    assert "mean area per slice (mm2): A 25.0, B 6.2" in out.out
    assert "volume (mL): A 0.20, B 0.05" in out.out
    assert "segmenting" in out.err  # progress bar
    areas = pd.read_csv(run_dirs[0] / "areas.csv", index_col=0)
    assert list(areas.columns) == [
        "file",
        "slice_position_mm",
        "A",
        "B",
        *measure_columns(("A", "B")),
        "uncertainty_entropy",
    ]
    assert sorted(p.name for p in (run_dirs[0] / "labels").glob("[!.]*")) == ["slice_0001.png", "slice_0002.png"]
    assert not (run_dirs[0] / "animation.gif").exists()


@pytest.fixture()
def two_series(scan):
    """``scan`` (series 1, 2 slices) and a second series of 1 slice, 'second' (series 2), in one folder."""
    images = np.full((1, 30, 30), -1000.0)
    images[0, 2:12, 2:7] = 0.0  # 50 px label 1
    write_dicom_series(
        scan,
        images,
        pixel_spacing_mm=(1.0, 1.0),
        names=["other_0001"],
        series_description="second",
        series_uid="1.2.826.0.7",
    )
    return scan


def test_segment_segments_every_series_of_the_folder_and_says_how_many(model_file, two_series, tmp_path, capsys):
    status = main(["segment", str(model_file), str(two_series), "--out", str(tmp_path / "pred"), "--no-previews"])
    out = capsys.readouterr().out
    assert status == 0
    (run_dir,) = (tmp_path / "pred").iterdir()
    assert f"3 slice(s) of 2 series segmented -> {run_dir}" in out
    assert f"segmented 2 series of {two_series}" in out
    assert "mean area per slice (all series) (mm2): soft 33.3, bright 4.2" in out
    assert "volume (mL), series 1 'ctseg series': soft 0.20, bright 0.05" in out
    assert "series 2 'second'" in out and "volume (mL), series 2" not in out  # one slice: no volume
    areas = pd.read_csv(run_dir / "areas.csv", index_col=0)
    assert list(areas["series"].iloc[:3]) == [1, 1, 2]
    assert list(areas["series_description"].iloc[:3]) == ["ctseg series", "ctseg series", "second"]
    assert sorted(p.name for p in run_dir.glob("[!.]*")) == [
        "animation_series1.gif",
        "animation_series2.gif",
        "areas.csv",
        "labels",
        "run.json",
        "volumes.csv",
    ]
    # the same table from the label maps with 'ctseg areas'
    assert (
        main(
            [
                "areas",
                str(run_dir / "labels"),
                str(two_series),
                "--labels",
                "background,soft,bright",
                "--out",
                str(tmp_path / "again.csv"),
            ]
        )
        == 0
    )
    printed = capsys.readouterr().out
    assert f"3 labelled slice(s) of 2 series: areas (mm2) -> {tmp_path / 'again.csv'}" in printed
    assert f"volumes (mL) of 1 series -> {tmp_path / 'again_volumes.csv'}" in printed
    # 'ctseg areas' has no probabilities: the table without the uncertainty of the run's predictions
    pd.testing.assert_frame_equal(pd.read_csv(tmp_path / "again.csv", index_col=0), without_uncertainty(areas))
    pd.testing.assert_frame_equal(
        pd.read_csv(tmp_path / "again_volumes.csv", index_col=0), pd.read_csv(run_dir / "volumes.csv", index_col=0)
    )


def test_segment_series_uid_picks_one(model_file, two_series, tmp_path, capsys):
    assert (
        main(
            [
                "segment",
                str(model_file),
                str(two_series),
                "--out",
                str(tmp_path / "pred"),
                "--series-uid",
                "1.2.826.0.7",
                "--no-previews",
                "--no-animation",
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    (run_dir,) = (tmp_path / "pred").iterdir()
    assert f"1 slice(s) segmented -> {run_dir}" in out and "segmented 2 series" not in out
    assert "mean area per slice (mm2): soft 50.0, bright 0.0" in out
    assert sorted(p.name for p in (run_dir / "labels").glob("[!.]*")) == ["other_0001.png"]


def test_segment_labels_may_start_with_background(model_file, scan, tmp_path, capsys):
    assert (
        main(
            [
                "segment",
                str(model_file),
                str(scan),
                "--out",
                str(tmp_path / "pred"),
                "--labels",
                "background,A,B",
                "--no-animation",
                "--no-previews",
            ]
        )
        == 0
    )
    assert "mean area per slice (mm2): A 25.0, B 6.2" in capsys.readouterr().out


def test_segment_with_wrong_labels_exits_2_with_one_line(model_file, scan, tmp_path, capsys):
    status = main(["segment", str(model_file), str(scan), "--out", str(tmp_path / "pred"), "--labels", "only"])
    err = capsys.readouterr().err
    assert status == 2
    assert "error:" in err and "labels_list has 1 name(s) ['only'] but the model was trained with 2 label(s)" in err
    assert "e.g. ['soft', 'bright'] (or ['background', 'soft', 'bright'])" in err
    assert "Traceback" not in err
    assert not (tmp_path / "pred").exists()


def test_segment_rejects_an_empty_label_name(model_file, scan, capsys):
    with pytest.raises(SystemExit):
        main(["segment", str(model_file), str(scan), "--labels", "A,,B"])
    assert "empty name in 'A,,B': give names separated by commas" in capsys.readouterr().err


def test_areas_from_predicted_labels_equal_the_segment_run(model_file, scan, tmp_path, capsys):
    main(
        [
            "segment",
            str(model_file),
            str(scan),
            "--out",
            str(tmp_path / "pred"),
            "--name",
            "run",
            "--overwrite",
            "--no-animation",
            "--no-previews",
        ]
    )
    capsys.readouterr()
    out_csv = tmp_path / "tables" / "manual.csv"
    status = main(
        [
            "areas",
            str(tmp_path / "pred" / "run" / "labels"),
            str(scan),
            "--labels",
            "soft,bright",
            "--out",
            str(out_csv),
        ]
    )
    printed = capsys.readouterr().out
    assert status == 0
    assert f"2 labelled slice(s): areas (mm2) -> {out_csv}" in printed
    mine = pd.read_csv(out_csv, index_col=0)
    theirs = pd.read_csv(tmp_path / "pred" / "run" / "areas.csv", index_col=0)
    pd.testing.assert_frame_equal(mine, without_uncertainty(theirs))
    volumes = pd.read_csv(tmp_path / "tables" / "manual_volumes.csv", index_col=0)
    assert volumes.loc["soft", "volume_ml"] == pytest.approx(2 * 25.0 * 4.0 / 1000)
    # not silently overwritten
    assert (
        main(
            [
                "areas",
                str(tmp_path / "pred" / "run" / "labels"),
                str(scan),
                "--labels",
                "soft,bright",
                "--out",
                str(out_csv),
            ]
        )
        == 2
    )
    assert "manual.csv exists already; choose another --out or pass --overwrite" in capsys.readouterr().err
    assert (
        main(
            [
                "areas",
                str(tmp_path / "pred" / "run" / "labels"),
                str(scan),
                "--labels",
                "soft,bright",
                "--out",
                str(out_csv),
                "--overwrite",
            ]
        )
        == 0
    )


def test_segment_and_areas_agree_on_the_volumes_of_a_stack_with_a_gap_1_percent_long(model_file, tmp_path, capsys):
    """Positions 0, 1, 2 and 3.0105 mm: the last gap is 0.0105 mm (1.05 %) long, within the round-off
    tolerance of io.geometry, so both commands see one stack 1 mm apart and write the same volumes."""
    import json

    import pydicom

    images = np.full((4, 36, 36), -1000.0)
    images[:, 4:14, 4:14] = 0.0  # 100 px of label 1 on each slice: 25 mm2
    paths = write_dicom_series(tmp_path / "scan", images, pixel_spacing_mm=(0.5, 0.5), slice_thickness_mm=1.0)
    ds = pydicom.dcmread(paths[3])
    ds.ImagePositionPatient = ["0", "0", "3.0105"]
    ds.save_as(paths[3])
    assert (
        main(
            [
                "segment",
                str(model_file),
                str(tmp_path / "scan"),
                "--out",
                str(tmp_path / "pred"),
                "--no-animation",
                "--no-previews",
            ]
        )
        == 0
    )
    (run_dir,) = (tmp_path / "pred").iterdir()
    assert json.loads((run_dir / "run.json").read_text())["slice_spacing_mm"] == 1.0
    assert (
        main(
            [
                "areas",
                str(run_dir / "labels"),
                str(tmp_path / "scan"),
                "--labels",
                "soft,bright",
                "--out",
                str(tmp_path / "again.csv"),
            ]
        )
        == 0
    )
    capsys.readouterr()
    theirs = pd.read_csv(run_dir / "volumes.csv", index_col=0)
    mine = pd.read_csv(tmp_path / "again_volumes.csv", index_col=0)
    pd.testing.assert_frame_equal(mine, theirs)
    assert (mine["slice_spacing_mm"] == 1.0).all()
    assert mine.loc["soft", "volume_ml"] == pytest.approx(4 * 25.0 * 1.0 / 1000)


def test_areas_with_fov_fallback_and_bad_out_name(scan, tmp_path, capsys):
    import pydicom

    for path in scan.glob("*.dcm"):
        ds = pydicom.dcmread(path)
        del ds.PixelSpacing
        ds.save_as(path)
    labels = tmp_path / "manual"
    labels.mkdir()
    mask = np.zeros((36, 36), np.uint8)
    mask[0:10, 0:10] = 1
    Image.fromarray(mask).save(labels / "slice_0001.png")
    assert main(["areas", str(labels), str(scan), "--labels", "LV", "--out", str(tmp_path / "a.txt")]) == 2
    assert "a.txt: the area table is written as CSV; use a file name ending in .csv" in capsys.readouterr().err
    assert main(["areas", str(labels), str(scan), "--labels", "LV", "--out", str(tmp_path / "a.csv")]) == 2
    assert "have no PixelSpacing; give the field of view" in capsys.readouterr().err
    assert (
        main(
            [
                "areas",
                str(labels),
                str(scan),
                "--labels",
                "LV",
                "--out",
                str(tmp_path / "a.csv"),
                "--fov",
                "72",
                "--matrix-size",
                "36x36",
            ]
        )
        == 0
    )
    table = pd.read_csv(tmp_path / "a.csv", index_col=0)
    assert table["LV"].iloc[0] == pytest.approx(100 * 4.0)
    assert not (tmp_path / "a_volumes.csv").exists()  # one of two slices labelled: no volume


def test_areas_labels_with_background_first_and_names_that_do_not_fit(model_file, scan, tmp_path, capsys):
    main(
        [
            "segment",
            str(model_file),
            str(scan),
            "--out",
            str(tmp_path / "pred"),
            "--name",
            "run",
            "--overwrite",
            "--no-animation",
            "--no-previews",
        ]
    )
    capsys.readouterr()
    assert (
        main(
            [
                "areas",
                str(tmp_path / "pred" / "run" / "labels"),
                str(scan),
                "--labels",
                "Background,soft,bright",
                "--out",
                str(tmp_path / "a.csv"),
            ]
        )
        == 0
    )
    assert "mean area per slice (mm2): soft 25.0, bright 6.2" in capsys.readouterr().out
    assert (
        main(
            [
                "areas",
                str(tmp_path / "pred" / "run" / "labels"),
                str(scan),
                "--labels",
                "background,soft",
                "--out",
                str(tmp_path / "b.csv"),
            ]
        )
        == 2
    )
    err = capsys.readouterr().err
    assert "label values 2 are outside 0..1" in err
    assert "1 ROI name(s) ['soft'] given for label values up to 2: give one name per ROI, label 1 first" in err
    assert (
        main(
            [
                "areas",
                str(tmp_path / "pred" / "run" / "labels"),
                str(scan),
                "--labels",
                "soft,background",
                "--out",
                str(tmp_path / "b.csv"),
            ]
        )
        == 2
    )
    assert "--labels ['soft', 'background'] names label 2 'background'" in capsys.readouterr().err


def test_fov_argument_must_be_numbers(capsys):
    with pytest.raises(SystemExit):
        main(["areas", "l", "d", "--labels", "x", "--out", "a.csv", "--fov", "wide"])
    assert "'wide': give one number or ROWS,COLS" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["areas", "l", "d", "--labels", "x", "--out", "a.csv", "--matrix-size", "1,2,3"])
    assert "'1,2,3': give one number or ROWS,COLS" in capsys.readouterr().err


def test_segment_writes_nifti_and_dicom_seg_when_asked(model_file, scan, tmp_path, capsys):
    import nibabel as nib
    import pydicom

    assert (
        main(
            [
                "segment",
                str(model_file),
                str(scan),
                "--out",
                str(tmp_path / "pred"),
                "--no-animation",
                "--no-previews",
                "--nifti",
                "--dicom-seg",
                "--include-patient-id",
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    (run_dir,) = (tmp_path / "pred").iterdir()
    assert f"NIfTI:      {run_dir / 'segmentation.nii.gz'}" in out
    assert f"DICOM-SEG:  {run_dir / 'segmentation.dcm'}" in out
    assert nib.load(run_dir / "segmentation.nii.gz").shape == (36, 36, 2)
    seg = pydicom.dcmread(run_dir / "segmentation.dcm")
    assert seg.Modality == "SEG" and [s.SegmentLabel for s in seg.SegmentSequence] == ["soft", "bright"]


def test_segment_dicom_seg_without_include_patient_id_exits_2_before_any_work(model_file, scan, tmp_path, capsys):
    status = main(["segment", str(model_file), str(scan), "--out", str(tmp_path / "pred"), "--dicom-seg"])
    err = capsys.readouterr().err
    assert status == 2 and "Traceback" not in err
    assert "a DICOM-SEG carries the patient's name and ID" in err and "(--include-patient-id)" in err
    assert not (tmp_path / "pred").exists()


def test_segment_writes_probabilities_lists_slices_to_check_and_evaluate_reads_them(model_file, scan, tmp_path, capsys):
    out_dir = tmp_path / "pred"
    args = ["segment", str(model_file), str(scan), "--out", str(out_dir), "--no-animation", "--no-previews"]
    assert main([*args, "--probabilities", "--check", "1"]) == 0
    out = capsys.readouterr().out
    (run_dir,) = out_dir.iterdir()
    assert f"probabilities: {run_dir / 'probabilities.h5'} (uint8, p = value / 255)" in out
    assert "check these slices first (1):" in out
    assert "  slice_000" in out and ": entropy 0." in out
    # manual label maps equal to the phantom's blocks: the tiny model ranks their pixels perfectly
    truth_dir = tmp_path / "truth"
    truth_dir.mkdir()
    truth = np.zeros((2, 36, 36), np.uint8)
    truth[:, 4:14, 4:14] = 1
    truth[1, 20:30, 20:25] = 2
    for k, labels in enumerate(truth, start=1):
        Image.fromarray(labels).save(truth_dir / f"slice_{k:04d}.png")
    status = main(
        [
            "evaluate",
            str(run_dir / "labels"),
            str(truth_dir),
            "--dicoms",
            str(scan),
            "--out",
            str(tmp_path / "eval"),
            "--probabilities",
            str(run_dir / "probabilities.h5"),
        ]
    )
    out = capsys.readouterr().out
    assert status == 0
    assert "ROI 1: ROC AUC 1.0000 (all pixels, 2 slice(s)), calibration error (ECE) 0." in out
    roc = pd.read_csv(tmp_path / "eval" / "roc_auc.csv")
    assert roc["roc_auc"].tolist() == [1.0, 1.0, 1.0, 1.0]
    assert (tmp_path / "eval" / "calibration.csv").exists()


def test_segment_probability_format_and_check_count_are_checked(model_file, scan, tmp_path, capsys):
    args = ["segment", str(model_file), str(scan), "--out", str(tmp_path / "pred")]
    with pytest.raises(SystemExit) as exit_info:
        main([*args, "--probabilities", "png"])
    assert exit_info.value.code == 2 and "--probabilities: invalid choice: 'png'" in capsys.readouterr().err
    assert main([*args, "--probabilities", "nifti", "--name", "n", "--no-animation", "--no-previews"]) == 0
    (run_dir,) = (tmp_path / "pred").glob("n*")
    expected = ["probabilities_bright.nii.gz", "probabilities_soft.nii.gz"]
    assert sorted(p.name for p in run_dir.glob("*.nii.gz")) == expected
    assert "(2 files, one per ROI)" in capsys.readouterr().out
    assert main([*args, "--check", "-1"]) == 2
    err = capsys.readouterr().err
    assert "--check must be 0 (no list) or a number of slices, got -1" in err and "Traceback" not in err
    assert main([*args, "--check", "0", "--no-animation"]) == 0
    assert "check these slices" not in capsys.readouterr().out
