"""Import TensorFlow with the environment ctseg wants, once.

TensorFlow reads some settings only at import time. ``TF_ENABLE_ONEDNN_OPTS=1`` turns on the
oneDNN kernels, which TensorFlow leaves off on AMD processors although they roughly double
training and inference speed on the CPU (measured on a 2-core AMD EPYC; results differ from the
default kernels only in round-off). A user's own value of the variable is respected.

TensorFlow's native libraries announce on import, on stderr and whatever
``TF_CPP_MIN_LOG_LEVEL`` says, that oneDNN operations are on; notebooks show that as two
error-coloured blocks. The import filters out exactly those lines and passes on any other.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import sys
import tempfile

logger = logging.getLogger(__name__)


def configure_tensorflow():
    """Set TensorFlow's import-time environment, import it and return the module.

    Returns
    -------
    module
        The ``tensorflow`` module.

    Notes
    -----
    If TensorFlow was already imported before this call, the environment can no longer take
    effect; a debug message says so and the module is returned as it is.
    """
    if "tensorflow" in sys.modules:
        if os.environ.get("TF_ENABLE_ONEDNN_OPTS") is None:
            logger.debug("tensorflow was imported before ctseg could enable oneDNN kernels")
        return sys.modules["tensorflow"]
    os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    with _native_stderr_filtered():
        import tensorflow as tf  # noqa: PLC0415 - deliberate late import

    return tf


#: Lines TensorFlow's native libraries write to stderr on import whatever TF_CPP_MIN_LOG_LEVEL says
#: (absl logs them before its logging is set up), twice: notebooks show them as error-coloured
#: blocks although nothing is wrong. Any other line is passed on.
_IMPORT_NOISE = re.compile(
    r"^(WARNING: All log messages before absl::InitializeLog\(\) is called are written to STDERR"
    r"|I\d{4} [\d:. ]+\d+ port\.cc:\d+\] oneDNN custom operations are on\..*)$"
)


@contextlib.contextmanager
def _native_stderr_filtered():
    """Catch what native code writes to file descriptor 2 meanwhile; pass on all but the noise."""
    try:
        fd = sys.stderr.fileno()
    except (AttributeError, OSError, ValueError):  # no real stderr (some embedded interpreters)
        yield
        return
    sys.stderr.flush()
    saved = os.dup(fd)
    with tempfile.TemporaryFile(mode="w+b") as caught:
        os.dup2(caught.fileno(), fd)
        try:
            yield
        finally:
            os.dup2(saved, fd)
            os.close(saved)
            caught.seek(0)
            kept = [
                line
                for line in caught.read().decode("utf-8", "replace").splitlines()
                if line.strip() and not _IMPORT_NOISE.match(line)
            ]
            if kept:
                sys.stderr.write("\n".join(kept) + "\n")
                sys.stderr.flush()
