"""Property: whatever a label file holds, ctseg reads a valid label map or says what is wrong.

Label files are drawn at random with hypothesis: arrays of any small shape and integer or float
type saved as PNG, NPY or TIFF, and files of random bytes under a label name. Reading one with
:func:`ctseg_helpers.io.labels.read_label` either gives a (M, N) uint8 map with values in
0..num_labels or raises a :class:`~ctseg_helpers.errors.CtsegError` naming the file; no other
exception, and the file itself is left unchanged.
"""

from __future__ import annotations

import warnings

import numpy as np
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from ctseg_helpers.errors import CtsegError
from ctseg_helpers.io.labels import read_label

DTYPES = st.sampled_from(["uint8", "uint16", "int16", "int32", "float32", "float64", "bool"])
SHAPES = st.sampled_from([(4, 5), (1, 1), (3, 4, 3), (2, 3, 4, 1), (0, 3), (6,)])


def _check(path, num_labels):
    before = path.read_bytes()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            labels = read_label(path, num_labels)
        except CtsegError as exc:
            assert path.name in str(exc), str(exc)
            assert path.read_bytes() == before
            return
    assert labels.dtype == np.uint8 and labels.ndim == 2
    assert labels.min(initial=0) >= 0 and labels.max(initial=0) <= num_labels
    assert path.read_bytes() == before


@settings(max_examples=60, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(values=st.tuples(DTYPES, SHAPES).flatmap(lambda ds: arrays(ds[0], ds[1])), num_labels=st.integers(1, 6))
def test_any_npy_label_reads_or_is_refused(tmp_path_factory, values, num_labels):
    path = tmp_path_factory.mktemp("npy") / "slice.npy"
    np.save(path, values)
    _check(path, num_labels)


@settings(max_examples=60, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    values=arrays(st.sampled_from(["uint8", "uint16"]), st.sampled_from([(4, 5), (1, 1), (3, 4, 3), (5, 5, 4)])),
    num_labels=st.integers(1, 6),
    suffix=st.sampled_from([".png", ".tif"]),
)
def test_any_image_label_reads_or_is_refused(tmp_path_factory, values, num_labels, suffix):
    from PIL import Image

    path = tmp_path_factory.mktemp("img") / f"slice{suffix}"
    try:
        Image.fromarray(values).save(path)
    except (TypeError, ValueError, OSError):  # Pillow cannot write this array in this format
        assume(False)
    _check(path, num_labels)


@settings(max_examples=60, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    content=st.binary(max_size=300), suffix=st.sampled_from([".png", ".npy", ".tif", ".jpg"]), keep_header=st.booleans()
)
def test_random_bytes_under_a_label_name_are_refused_or_read(tmp_path_factory, content, suffix, keep_header):
    headers = {".png": b"\x89PNG\r\n\x1a\n", ".npy": b"\x93NUMPY", ".tif": b"II*\x00", ".jpg": b"\xff\xd8\xff"}
    path = tmp_path_factory.mktemp("bytes") / f"slice{suffix}"
    path.write_bytes((headers[suffix] if keep_header else b"") + content)
    _check(path, 3)
