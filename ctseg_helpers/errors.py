"""Exceptions a user can act on.

Every error raised for a problem in the user's data or settings is a :class:`CtsegError`;
its message says what was wrong, where (file or folder name) and what to do. The command
line prints the message without a traceback and exits with status 2.
"""


class CtsegError(Exception):
    """Base class for errors the user can fix (bad settings, bad files)."""


class CtsegDataError(CtsegError, ValueError):
    """A file or folder the user gave cannot be used as it is."""


class CtsegSettingsError(CtsegError, ValueError):
    """Settings are inconsistent with each other or with a trained model."""
