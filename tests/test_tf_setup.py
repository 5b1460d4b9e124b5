"""TensorFlow's import-time noise on stderr is dropped; anything else native code writes is kept."""

from __future__ import annotations

import subprocess
import sys

SCRIPT = r"""
import os
from ctseg_helpers.tf_setup import _native_stderr_filtered
with _native_stderr_filtered():
    os.write(2, b"WARNING: All log messages before absl::InitializeLog() is called are written to STDERR\n")
    os.write(2, b"I0000 00:00:1796166806.385429   14383 port.cc:153] oneDNN custom operations are on. "
                b"You may see slightly different numerical results.\n")
    os.write(2, b"E0000 something real went wrong\n")
    os.write(1, b"stdout untouched\n")
"""


def test_only_the_known_import_noise_is_dropped(repo_root):
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT], capture_output=True, text=True, cwd=repo_root, check=True, timeout=60
    )
    assert done.stderr == "E0000 something real went wrong\n"
    assert done.stdout == "stdout untouched\n"
