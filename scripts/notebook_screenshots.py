"""Retake the user manual's screenshots of the notebooks in JupyterLab (docs/figures/lab_*.png).

Usage (from the repository root)::

    .venv/bin/python scripts/notebook_screenshots.py

It runs the browser tests (tests/browser) with ``CTSEG_UPDATE_SCREENSHOTS=1``: JupyterLab is
started on tiny data, each notebook is run in Chromium as a researcher runs it, and the
screenshots the manual shows are written to docs/figures/ (every step's screenshot is in
tests/browser/artifacts/). It needs Playwright and Chromium (``make test-browser-tools``) and
fails, saying so, without them. The figures of scripts/make_manual_figures.py are left alone.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def main() -> int:
    sys.path.insert(0, str(REPO))
    from tests.browser.lab import MANUAL_FIGURES, missing_browser_tools  # noqa: PLC0415

    reason = missing_browser_tools()
    if reason:
        print(f"cannot take the screenshots: {reason}", file=sys.stderr)
        return 2
    env = {**os.environ, "CTSEG_UPDATE_SCREENSHOTS": "1"}
    # xfail'ed tests (known problems) still take their screenshots; -rxs says which
    command = [sys.executable, "-m", "pytest", "-q", "-rxs", "-s", "-p", "no:cacheprovider", "tests/browser"]
    status = subprocess.run(command, cwd=REPO, env=env, check=False).returncode
    written = sorted(MANUAL_FIGURES.glob("lab_*.png"))
    print("\n".join(["screenshots in docs/figures:", *(f"  {p.relative_to(REPO)}" for p in written)]))
    return status


if __name__ == "__main__":
    sys.exit(main())
