"""Segment new scans: patch/stitch 2D slices with a trained model, write the outputs of a run.

- :class:`Segmenter` (``segmenter.py``): patches, predicts and stitches slices of any size;
- ``patches.py``: where patches go and how overlapping predictions are weighted;
- :func:`run_segmentation` (``outputs.py``): the whole job for one DICOM folder (label PNGs,
  JPG previews, animation, area CSV), used by ``test.ipynb``, ``ctseg segment`` and the demo.

Importing this package does not import TensorFlow.
"""

from ctseg_helpers.segment.outputs import SegmentationRun, run_segmentation
from ctseg_helpers.segment.segmenter import Segmenter

__all__ = ["SegmentationRun", "Segmenter", "run_segmentation"]
