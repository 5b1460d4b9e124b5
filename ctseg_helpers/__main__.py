"""``python -m ctseg_helpers`` is the same as the ``ctseg`` command."""

import sys

from ctseg_helpers.cli import main

sys.exit(main())
