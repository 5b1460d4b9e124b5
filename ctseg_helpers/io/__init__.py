"""Reading (and writing) the files users have: DICOM, label images, NIfTI.

This package never imports TensorFlow or Keras.
"""

from ctseg_helpers.io.dicom import (
    DicomImage,
    DicomSeries,
    FolderScan,
    SeriesInfo,
    read_dicom_file,
    read_dicom_series,
    scan_dicom_folder,
)
from ctseg_helpers.io.dicom_write import write_dicom_series
from ctseg_helpers.io.labels import Pair, find_pairs, match_split, read_label, read_pair
from ctseg_helpers.io.nifti import NiftiSlices, read_nifti_slices

__all__ = [
    "DicomImage",
    "DicomSeries",
    "FolderScan",
    "NiftiSlices",
    "Pair",
    "SeriesInfo",
    "find_pairs",
    "match_split",
    "read_dicom_file",
    "read_dicom_series",
    "read_label",
    "read_nifti_slices",
    "read_pair",
    "scan_dicom_folder",
    "write_dicom_series",
]
