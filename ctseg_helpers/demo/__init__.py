"""The synthetic lumbar CT phantom and the end-to-end demo (``ctseg demo`` / ``make demo``).

:func:`make_phantom_dataset` writes the phantom as real DICOM with label PNGs and exact areas;
:func:`run_demo` runs train.ipynb, test.ipynb and visualize.ipynb on it and measures the area
error. Importing this package is cheap (no TensorFlow, no papermill).
"""

from ctseg_helpers.demo.phantom import PHANTOM_LABELS, make_phantom_dataset, phantom_series, read_true_areas
from ctseg_helpers.demo.run import DemoResult, DemoSettings, run_demo

__all__ = [
    "PHANTOM_LABELS",
    "DemoResult",
    "DemoSettings",
    "make_phantom_dataset",
    "phantom_series",
    "read_true_areas",
    "run_demo",
]
