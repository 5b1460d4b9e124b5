"""Segment images with a trained model: arrays in, label maps out (no folders, no run files).

- :class:`Segmenter` (``segmenter.py``): patches, predicts and stitches slices of any size;
- ``patches.py``: where patches go and how overlapping predictions are weighted;
- ``postprocess.py``: the model's post-processing of label maps and how it is chosen;
- ``ensemble.py``: the ensemble file of several models and their averaged prediction;
- ``blocks.py``: the array operations of volume segmentation (slices of a 3D block, axes
  combined, planes rotated).

Segmenting a whole DICOM folder into a run folder, and volumes larger than memory, are
workflows: :mod:`ctseg_helpers.workflows.segment_folder` and
:mod:`ctseg_helpers.workflows.volume`. Importing this package does not import TensorFlow.
"""

from ctseg_helpers.segment.segmenter import Segmenter

__all__ = ["Segmenter"]
