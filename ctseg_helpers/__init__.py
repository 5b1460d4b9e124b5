"""ctseg: train a 2D U-Net on labelled CT/MR slices, segment new scans, measure what was segmented.

The package is built in layers; each imports only from the layers below it (checked by
``make lint``, see docs/DEVELOPING.md). From the bottom up, the libraries, which take arrays,
settings and open files:

- :mod:`ctseg_helpers.io` reads and writes DICOM, labels, NIfTI and chunked volumes (never imports Keras);
- :mod:`ctseg_helpers.prepare` pairs, checks, normalises and augments training data;
- :mod:`ctseg_helpers.model` builds the U-Net and holds the losses and metrics;
- :mod:`ctseg_helpers.segment` patches, predicts and stitches 2D images and the blocks of 3D volumes;
- :mod:`ctseg_helpers.measure` computes areas and evaluation metrics;
- :mod:`ctseg_helpers.show` draws overlays, plots, animations and widgets;
- :mod:`ctseg_helpers.train` runs the training loop with checkpoints and history;

then the jobs on the user's folders and the entry points:

- :mod:`ctseg_helpers.workflows` segments a DICOM folder or a large volume, evaluates and measures
  folders of label maps, and writes the outputs;
- :mod:`ctseg_helpers.demo` makes the synthetic phantom and runs the demo;
- :mod:`ctseg_helpers.cli` is the ``ctseg`` command line.

Importing this package is cheap: TensorFlow is imported only by the modules that need it,
after :func:`ctseg_helpers.tf_setup.configure_tensorflow` has set its environment.
"""

from ctseg_helpers.errors import CtsegDataError, CtsegError

__version__ = "0.1.0"
__all__ = ["CtsegError", "CtsegDataError", "__version__"]
