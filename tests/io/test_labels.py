"""Label files and pairing them with DICOM slices."""

from __future__ import annotations

import logging

import numpy as np
import pytest
from PIL import Image

from ctseg_helpers.errors import CtsegDataError, CtsegSettingsError
from ctseg_helpers.io.dicom_write import write_dicom_series
from ctseg_helpers.io.labels import (
    Pair,
    check_num_labels,
    find_pairs,
    load_label_values,
    match_split,
    read_label,
    read_named_label,
    read_pair,
)

LABELS = np.array([[0, 0, 1, 1], [0, 2, 2, 1], [0, 0, 0, 0]], dtype=np.uint8)


def make_split(root, names, label_names=None, shape=(3, 4), suffix=".png"):
    """A split folder with one DICOM per name and one PNG label per label name."""
    (root / "dicoms").mkdir(parents=True)
    (root / "labels").mkdir()
    write_dicom_series(root / "dicoms", np.zeros((len(names), *shape)), names=names)
    for name in names if label_names is None else label_names:
        Image.fromarray(np.zeros(shape, np.uint8)).save(root / "labels" / f"{name}{suffix}")
    return root


# --- reading ------------------------------------------------------------------------------------


def test_png_npy_tif_are_read_exactly(tmp_path):
    Image.fromarray(LABELS).save(tmp_path / "a.png")
    np.save(tmp_path / "b.npy", LABELS.astype(np.int64))
    Image.fromarray(LABELS).save(tmp_path / "c.tif")
    np.save(tmp_path / "d.npy", LABELS.astype(np.float32)[..., None])  # (M, N, 1) float, whole numbers
    for name in ("a.png", "b.npy", "c.tif", "d.npy"):
        labels = read_label(tmp_path / name, num_labels=2)
        assert labels.dtype == np.uint8, name
        np.testing.assert_array_equal(labels, LABELS)


def test_boolean_npy_and_one_bit_png(tmp_path):
    mask = LABELS > 0
    np.save(tmp_path / "m.npy", mask)
    Image.fromarray(mask).save(tmp_path / "m.png")  # mode "1"
    for name in ("m.npy", "m.png"):
        np.testing.assert_array_equal(read_label(tmp_path / name, 1), mask.astype(np.uint8))


def test_palette_png_uses_the_indices_when_the_palette_is_coloured(tmp_path):
    img = Image.fromarray(LABELS, mode="L").convert("P")
    img.putpalette([0, 0, 0, 255, 0, 0, 0, 255, 0] + [0] * (253 * 3))
    img.putdata(LABELS.ravel().tolist())
    img.save(tmp_path / "p.png")
    np.testing.assert_array_equal(read_label(tmp_path / "p.png", 2), LABELS)


def test_grey_rgb_label_is_converted(tmp_path):
    Image.fromarray(np.stack([LABELS] * 3, axis=-1)).save(tmp_path / "rgb.png")
    np.testing.assert_array_equal(read_label(tmp_path / "rgb.png", 2), LABELS)


def test_colour_rgb_label_is_an_error(tmp_path):
    rgb = np.stack([LABELS] * 3, axis=-1)
    rgb[1, 2] = (255, 0, 0)
    Image.fromarray(rgb).save(tmp_path / "colour.png")
    with pytest.raises(
        CtsegDataError,
        match=r"colour\.png: colour label image: 1 pixels are not grey, "
        r"e\.g\. \(row 1, col 2\) = \(255, 0, 0\); save labels as greyscale",
    ):
        read_label(tmp_path / "colour.png", 2)


def test_jpeg_label_is_snapped_with_a_warning(tmp_path, caplog):
    # A 0/2 speckle pattern: JPEG ringing overshoots some pixels to 3, above num_labels=2.
    truth = (np.random.default_rng(0).random((32, 32)) > 0.5).astype(np.uint8) * 2
    Image.fromarray(truth).save(tmp_path / "lossy.jpg", quality=90)
    raw = load_label_values(tmp_path / "lossy.jpg")
    n_above = int(np.count_nonzero(raw > 2))
    assert n_above > 0  # the premise: JPEG produced values that are not valid labels
    with caplog.at_level(logging.WARNING, logger="ctseg_helpers.io.labels"):
        labels = read_label(tmp_path / "lossy.jpg", 2)
    assert labels.dtype == np.uint8 and labels.max() == 2
    np.testing.assert_array_equal(labels, np.minimum(raw, 2))
    assert f"lossy.jpg: JPEG label: {n_above} pixel(s) snapped to the nearest valid value 0..2" in caplog.text


def test_jpeg_snapping_counts_exactly(tmp_path, caplog, monkeypatch):
    # Values as a JPEG decoder might return them: 3 is one above num_labels=2 and is snapped.
    from ctseg_helpers.io import labels as labels_module

    raw = np.array([[0, 1, 2], [3, 3, 0]], dtype=np.uint8)
    (tmp_path / "x.jpg").write_bytes(b"")
    monkeypatch.setattr(labels_module, "load_label_values", lambda path: raw)
    with caplog.at_level(logging.WARNING, logger="ctseg_helpers.io.labels"):
        labels = read_label(tmp_path / "x.jpg", 2)
    np.testing.assert_array_equal(labels, [[0, 1, 2], [2, 2, 0]])
    assert "2 pixel(s) snapped" in caplog.text


def test_values_above_num_labels_are_an_error(tmp_path):
    Image.fromarray(LABELS * 2).save(tmp_path / "big.png")  # 0, 2, 4
    with pytest.raises(
        CtsegDataError,
        match=r"big\.png: label values 4 are outside 0\.\.2 \(num_labels=2\); "
        r"fix the label or the num_labels setting",
    ):
        read_label(tmp_path / "big.png", 2)


def test_mask_saved_as_0_255_gets_a_hint(tmp_path):
    Image.fromarray((LABELS > 0).astype(np.uint8) * 255).save(tmp_path / "mask.jpg", quality=100)
    with pytest.raises(
        CtsegDataError,
        match=r"mask\.jpg: label values .*255.* \(masks saved as 0/255\? "
        r"divide them by 255\)",
    ):
        read_label(tmp_path / "mask.jpg", 1)


def test_negative_and_non_integer_npy_values(tmp_path):
    np.save(tmp_path / "neg.npy", np.array([[0, -1], [1, 0]]))
    with pytest.raises(CtsegDataError, match=r"neg\.npy: label values -1 are outside 0\.\.1"):
        read_label(tmp_path / "neg.npy", 1)
    np.save(tmp_path / "frac.npy", np.array([[0.0, 0.5], [1.0, 0.0]]))
    with pytest.raises(CtsegDataError, match=r"frac\.npy: label values must be whole numbers .*interpolation"):
        read_label(tmp_path / "frac.npy", 1)
    np.save(tmp_path / "cplx.npy", np.array([[0j, 1j]]))
    with pytest.raises(CtsegDataError, match=r"cplx\.npy: label has dtype complex128; labels must be integers"):
        read_label(tmp_path / "cplx.npy", 1)


def test_label_file_errors(tmp_path):
    with pytest.raises(CtsegDataError, match=r"gone\.png: no such label file"):
        read_label(tmp_path / "gone.png", 1)
    (tmp_path / "l.bmp").write_bytes(b"BM")
    with pytest.raises(CtsegDataError, match=r"l\.bmp: unknown label format '\.bmp'; save labels as \.png"):
        read_label(tmp_path / "l.bmp", 1)
    (tmp_path / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    with pytest.raises(CtsegDataError, match=r"broken\.png: cannot read the label image .*re-export it as PNG"):
        read_label(tmp_path / "broken.png", 1)
    (tmp_path / "broken.npy").write_bytes(b"\x93NUMPY garbage")
    with pytest.raises(CtsegDataError, match=r"broken\.npy: cannot read the NumPy label file"):
        read_label(tmp_path / "broken.npy", 1)
    np.save(tmp_path / "vol.npy", np.zeros((2, 3, 4), np.uint8))
    with pytest.raises(CtsegDataError, match=r"vol\.npy: label has shape \(2, 3, 4\); a label must be one 2D"):
        read_label(tmp_path / "vol.npy", 1)


@pytest.mark.parametrize("bad", [0, 256, 1.5, True, "2"])
def test_num_labels_must_be_1_to_255(bad):
    with pytest.raises(CtsegSettingsError, match=r"num_labels must be"):
        check_num_labels(bad)


def test_num_labels_messages():
    with pytest.raises(CtsegSettingsError, match=r"num_labels must be between 1 and 255 .*got 0"):
        check_num_labels(0)
    with pytest.raises(CtsegSettingsError, match=r"num_labels must be a whole number of ROIs .*got '2'"):
        check_num_labels("2")
    assert check_num_labels(np.int64(3)) == 3


# --- pairing ------------------------------------------------------------------------------------


def test_pairs_match_by_stem(tmp_path):
    split = make_split(tmp_path / "train", ["b", "a", "1.2.840.5"])
    (split / "labels" / ".DS_Store").write_bytes(b"x")
    pairs = find_pairs(split)
    assert [p.name for p in pairs] == ["1.2.840.5", "a", "b"]
    assert pairs[1] == Pair("a", split / "dicoms" / "a.dcm", split / "labels" / "a.png")


def test_dicom_without_extension_pairs(tmp_path):
    split = make_split(tmp_path, ["IM0001"])
    (split / "dicoms" / "IM0001.dcm").rename(split / "dicoms" / "IM0001")
    (pair,) = find_pairs(split)
    assert pair.image_path.name == "IM0001" and pair.label_path.name == "IM0001.png"


def test_missing_partners_are_listed_with_a_count(tmp_path):
    images = [f"img{i:02d}" for i in range(13)]
    split = make_split(tmp_path, images, label_names=images[:1] + ["orphan"])
    with pytest.raises(CtsegDataError) as info:
        find_pairs(split)
    message = str(info.value)
    assert (
        "images without a label: img01.dcm, img02.dcm, img03.dcm, img04.dcm, img05.dcm, img06.dcm, "
        "img07.dcm, img08.dcm, img09.dcm, img10.dcm, ... (12 in all)"
    ) in message
    assert "labels without an image: orphan.png (1 in all)" in message
    with pytest.raises(CtsegDataError, match=r"Every file in 'dicoms/' needs a label with the same name"):
        find_pairs(split)


def test_unknown_label_files_are_ignored_with_a_warning(tmp_path, caplog):
    split = make_split(tmp_path, ["a"])
    (split / "labels" / "notes.txt").write_text("labels by Dr X")
    with caplog.at_level(logging.WARNING, logger="ctseg_helpers.io.labels"):
        matching = match_split(split)
    assert [p.name for p in matching.ignored] == ["notes.txt"]
    assert "ignoring 1 file(s) that are not label images" in caplog.text


def test_layout_errors(tmp_path):
    with pytest.raises(CtsegDataError, match=r"nope: no such folder; give the training folder"):
        find_pairs(tmp_path / "nope")
    (tmp_path / "dicoms").mkdir()
    with pytest.raises(CtsegDataError, match=r"has no 'labels/' folder; training data must be laid out as"):
        find_pairs(tmp_path)
    (tmp_path / "labels").mkdir()
    with pytest.raises(CtsegDataError, match=r"dicoms: the folder is empty; put the training DICOM slices"):
        find_pairs(tmp_path)


def test_duplicate_stems_are_an_error(tmp_path):
    split = make_split(tmp_path / "s1", ["a"])
    np.save(split / "labels" / "a.npy", np.zeros((3, 4), np.uint8))
    with pytest.raises(CtsegDataError, match=r"two label files have the stem 'a': a\.npy and a\.png; keep one"):
        find_pairs(split)
    split = make_split(tmp_path / "s2", ["b"])
    (split / "dicoms" / "b").write_bytes((split / "dicoms" / "b.dcm").read_bytes())
    with pytest.raises(CtsegDataError, match=r"two image files have the stem 'b': b and b\.dcm; keep one"):
        find_pairs(split)


def test_read_pair_checks_the_shape_naming_both_files(tmp_path):
    split = make_split(tmp_path, ["ok", "bad"])
    Image.fromarray(np.zeros((5, 4), np.uint8)).save(split / "labels" / "bad.png")
    pairs = {p.name: p for p in find_pairs(split)}
    image, labels = read_pair(pairs["ok"], 1)
    assert image.pixels.shape == labels.shape == (3, 4)
    with pytest.raises(
        CtsegDataError,
        match=r"label .*labels/bad\.png is 5x4 but its image "
        r".*dicoms/bad\.dcm is 3x4; a label must have exactly",
    ):
        read_pair(pairs["bad"], 1)


def test_grey_rgb_jpeg_label_tolerates_colour_noise(tmp_path):
    big = np.kron(LABELS, np.ones((8, 8), np.uint8))
    Image.fromarray(np.stack([big] * 3, axis=-1)).save(tmp_path / "g.jpg", quality=95)
    labels = read_label(tmp_path / "g.jpg", 2)
    assert labels.shape == big.shape and labels.dtype == np.uint8
    assert set(np.unique(labels).tolist()) <= {0, 1, 2}
    assert np.mean(labels == big) > 0.95


def test_a_label_file_with_more_values_than_names_gets_the_names_in_its_message(tmp_path):
    np.save(tmp_path / "IM_1.npy", np.array([[0, 1], [2, 3]], np.uint8))
    with pytest.raises(
        CtsegDataError,
        match=r"IM_1.npy: label values 3 are outside 0..2 .*; 2 ROI name\(s\) \['a', "
        r"'b'\] given for label values up to 3: give one name per ROI",
    ):
        read_named_label(tmp_path / "IM_1.npy", ["a", "b"])
    assert read_named_label(tmp_path / "IM_1.npy", ["a", "b", "c"]).max() == 3
    # other problems keep their own message
    np.save(tmp_path / "negative.npy", np.array([[0, -1]], np.int16))
    with pytest.raises(CtsegDataError, match="negative.npy: label values -1 are outside 0..2") as info:
        read_named_label(tmp_path / "negative.npy", ["a", "b"])
    assert "ROI name(s)" not in str(info.value)
    (tmp_path / "broken.png").write_bytes(b"not a png")
    with pytest.raises(CtsegDataError, match="broken.png: cannot read the label image") as info:
        read_named_label(tmp_path / "broken.png", ["a", "b"])
    assert "ROI name(s)" not in str(info.value)
