"""Whole jobs on folders and files: what the notebooks, the ``ctseg`` command and the demo call.

A workflow reads the user's folders, calls the libraries below it (``io``, ``prepare``,
``model``, ``segment``, ``measure``, ``show``, ``train``), which take arrays, settings and open
files, and writes its outputs with their file names:

- :func:`run_segmentation` (``segment_folder.py``): a DICOM folder segmented into a run folder
  (label PNGs, previews, animation, area and volume CSVs, NIfTI / DICOM-SEG, ``run.json``);
- :func:`~ctseg_helpers.workflows.volume.segment_volume` (``volume.py``): a volume larger than
  memory segmented slab by slab into a resumable HDF5 output, locally or on Dask
  (``dask_backend.py``);
- ``evaluate.py``: predicted and manual label folders read and evaluated, the results written;
- ``areas.py``: the area table of label maps already on disk.

Nothing below this package imports it (the import contract in ``pyproject.toml`` checks that).
Importing this package does not import TensorFlow.
"""

from ctseg_helpers.workflows.segment_folder import SegmentationRun, run_segmentation

__all__ = ["SegmentationRun", "run_segmentation"]
