"""ctseg's messages in a notebook: information on stdout, one-line errors without a traceback."""

from __future__ import annotations

import logging

import pytest

from ctseg_helpers.errors import CtsegDataError
from ctseg_helpers.show.notebook import PACKAGE_LOGGER, error_line, setup_notebook


@pytest.fixture
def restore_package_logger():
    logger = logging.getLogger(PACKAGE_LOGGER)
    saved = (list(logger.handlers), logger.level, logger.propagate)
    yield logger
    logger.handlers[:], logger.level, logger.propagate = saved[0], saved[1], saved[2]


def test_information_goes_to_stdout_and_warnings_to_stderr_once(restore_package_logger, capsys):
    setup_notebook()
    setup_notebook()  # rerunning the imports cell does not double the lines
    log = logging.getLogger("ctseg_helpers.train.loop")
    log.info("training on all 3 patients")
    log.warning("scan.dcm: 2 pixels changed")
    log.debug("not shown at INFO")
    logging.getLogger("matplotlib.animation").info("Animation.save using PillowWriter")
    out, err = capsys.readouterr()
    assert out == "INFO: training on all 3 patients\n"
    assert err == "WARNING: scan.dcm: 2 pixels changed\n"


def test_a_ctseg_error_is_one_line_in_ipython(restore_package_logger, capsys):
    interactiveshell = pytest.importorskip("IPython.core.interactiveshell")
    shell = interactiveshell.InteractiveShell.instance()
    try:
        setup_notebook()
        shell.run_cell(
            "from ctseg_helpers.errors import CtsegSettingsError\n"
            "raise CtsegSettingsError('trained_model already holds a run named unet; set resume=True')"
        )
        shell.run_cell("1 / 0")
    finally:
        shell.set_custom_exc((), None)
    out = capsys.readouterr().out
    ctseg_part, other_part = out.split("ZeroDivisionError", 1)[0].split("\n", 1)[0], out
    assert ctseg_part == (
        "\x1b[1;31mCtsegSettingsError: trained_model already holds a run named unet; set resume=True\x1b[0m"
    )
    assert out.count("CtsegSettingsError") == 1 and "Traceback" not in out.split("-----", 1)[0]
    assert "ZeroDivisionError" in other_part  # other exceptions keep their traceback


def test_error_line_names_the_error_class():
    assert error_line(CtsegDataError("a.dcm: no pixel data")) == "CtsegDataError: a.dcm: no pixel data"


def test_an_empty_table_is_replaced_by_its_note():
    import pandas as pd

    from ctseg_helpers.show.notebook import table_or_note

    table = pd.DataFrame({"slice_index": [3], "roi": ["disc"]})
    assert table_or_note(table, "no jumps") is table
    note = table_or_note(table.iloc[:0], "*No abrupt area change.*")
    assert note.data == "*No abrupt area change.*"


def test_a_table_is_shown_rounded_with_blank_empty_cells():
    import numpy as np
    import pandas as pd

    from ctseg_helpers.show.notebook import table_view

    table = pd.DataFrame(
        {"file": ["a.dcm", np.nan], "slice_position_mm": [12.345678, np.nan], "muscle": [1234.56789, 1234.56789]},
        index=["0", "mean"],
    )
    html = table_view(table).to_html()
    assert "1234.6" in html and "1234.56789" not in html and "12.3" in html
    assert "nan" not in html.lower()
    assert table.loc["0", "muscle"] == 1234.56789  # the table itself is unchanged
    assert "white-space: nowrap" in html  # row labels on one line
