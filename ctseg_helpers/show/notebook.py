"""How ctseg's messages read in a notebook: plain information, one-line errors.

:func:`setup_notebook`, called in the imports cell of each notebook, makes three things read
as a researcher expects:

- ctseg's information lines (``INFO: training on all 3 patients ...``) go to stdout, as plain
  text; warnings and errors stay on stderr, which notebooks colour as a warning.
- Other libraries' loggers are left as they are (matplotlib's INFO lines about animation writers
  and figure sizes do not appear, as they would with the root logger at INFO).
- ctseg's own errors (:class:`~ctseg_helpers.errors.CtsegError`: a file or setting to fix) show
  as one line naming the problem and what to do, without a Python traceback; the cell still
  fails, so *Run All* stops there. Any other exception keeps its full traceback.

Outside IPython (a script, the test suite) only the logging part applies.
"""

from __future__ import annotations

import logging
import sys

from ctseg_helpers.errors import CtsegError

#: The package's logger: everything ctseg logs goes through it.
PACKAGE_LOGGER = "ctseg_helpers"


class _BelowWarning(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno < logging.WARNING


def setup_notebook(level: int = logging.INFO) -> None:
    """Route ctseg's log lines and errors for a notebook (see the module docstring).

    Calling it again replaces the handlers it added before, so rerunning the imports cell does
    not print every line twice.

    Parameters
    ----------
    level : int
        The lowest level of ctseg's messages to show (``logging.INFO``; ``logging.DEBUG`` for
        more detail, ``logging.WARNING`` for warnings only).
    """
    logger = logging.getLogger(PACKAGE_LOGGER)
    for handler in [h for h in logger.handlers if getattr(h, "_ctseg_notebook", False)]:
        logger.removeHandler(handler)
    formatter = logging.Formatter("%(levelname)s: %(message)s")
    info = logging.StreamHandler(sys.stdout)
    info.addFilter(_BelowWarning())
    warnings = logging.StreamHandler(sys.stderr)
    warnings.setLevel(logging.WARNING)
    for handler in (info, warnings):
        handler.setFormatter(formatter)
        handler._ctseg_notebook = True
        logger.addHandler(handler)
    logger.setLevel(level)
    logger.propagate = False  # not printed a second time by a root handler (basicConfig)
    shell = _ipython()
    if shell is not None:
        shell.set_custom_exc((CtsegError,), _one_line_error)


def error_line(error: BaseException) -> str:
    """The line a notebook shows for one of ctseg's errors: ``CtsegDataError: <message>``.

    Examples
    --------
    >>> from ctseg_helpers.errors import CtsegSettingsError
    >>> error_line(CtsegSettingsError("epochs must be positive, got 0"))
    'CtsegSettingsError: epochs must be positive, got 0'
    """
    return f"{type(error).__name__}: {error}"


def table_or_note(table, note: str):
    """``table`` when it has rows, else ``note`` as a line of text to display in its place.

    A notebook showing an empty table shows a bare header row, which reads like a failure;
    the note says what the empty table means ("No abrupt area changes ...").

    Parameters
    ----------
    table : pandas.DataFrame
    note : str

    Returns
    -------
    pandas.DataFrame or IPython.display.Markdown
        The Markdown object where IPython is installed, else the note as a plain string.
    """
    if len(table):
        return table
    try:
        from IPython.display import Markdown  # noqa: PLC0415 - optional outside notebooks
    except ImportError:
        return note
    return Markdown(note)


def table_view(table, decimals: int = 1):
    """A table as a notebook should show it: numbers to ``decimals`` places, empty cells blank.

    Areas in mm² measured on pixels of about a millimetre are not meaningful to six decimals,
    and the mean and standard deviation rows of an area table have no file or slice position,
    which pandas would show as ``NaN``. The table itself (and the CSV written from it) is not
    changed.

    Parameters
    ----------
    table : pandas.DataFrame
    decimals : int
        Places after the decimal point for floating-point columns.

    Returns
    -------
    pandas.io.formats.style.Styler
    """
    # row labels ("slice number 12", "mean @ 12.5 mm") on one line each, not wrapped into three
    return table.style.format(precision=decimals, na_rep="").set_table_styles(
        [{"selector": "th.row_heading", "props": [("white-space", "nowrap")]}]
    )


def _one_line_error(shell, etype, value, tb, tb_offset=None):
    """IPython custom exception handler: the error as one red line, no traceback.

    IPython calls it for a :class:`CtsegError` escaping a cell and marks the cell as failed
    (execution stops). The line goes out through the shell's own ``_showtraceback`` (the hook
    IPython's kernels override), so a notebook gets a regular error output whose traceback is
    this one line, and tools such as papermill see the error's name and message.
    """
    structured = [f"\x1b[1;31m{error_line(value)}\x1b[0m"]
    shell._showtraceback(etype, value, structured)
    return structured


def _ipython():
    """The running IPython shell, or None outside IPython."""
    if "IPython" not in sys.modules:
        return None
    from IPython import get_ipython  # noqa: PLC0415 - only when IPython is already loaded

    return get_ipython()
