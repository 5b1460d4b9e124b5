"""`make lab`: JupyterLab saves the widgets' state with each notebook, by default and not over a user's choice."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
PLUGIN = "@jupyter-widgets/jupyterlab-manager:plugin"


def _install(venv: Path) -> Path:
    """Run the Makefile rule that `make lab` uses, for an environment at ``venv``."""
    if shutil.which("make") is None:
        pytest.skip("make is not installed")
    target = venv / "share" / "jupyter" / "lab" / "settings" / "overrides.d" / "ctseg.json"
    subprocess.run(
        ["make", "--no-print-directory", "-C", str(REPO), f"VENV={venv}", str(target)],
        check=True,
        capture_output=True,
        text=True,
    )
    return target


def _save_state_default(venv: Path, tmp_path: Path) -> bool:
    """What this environment's JupyterLab would take as the default of the widgets' saveState."""
    settings_utils = pytest.importorskip("jupyterlab_server.settings_utils")
    from jupyter_core.paths import jupyter_path

    result, _ = settings_utils.get_settings(
        str(venv / "share" / "jupyter" / "lab" / "settings"),
        str(tmp_path / "no-schemas"),
        str(tmp_path / "no-user-settings"),
        schema_name=PLUGIN,
        labextensions_path=jupyter_path("labextensions"),
    )
    return result["schema"]["properties"]["saveState"]["default"]


def test_make_lab_installs_the_widget_setting_where_jupyterlab_reads_it(tmp_path):
    assert "lab: setup $(LAB_SETTINGS)" in (REPO / "Makefile").read_text()
    venv = tmp_path / "venv"
    assert _save_state_default(venv, tmp_path) is False  # JupyterLab's own default
    installed = _install(venv)
    assert json.loads(installed.read_text()) == {PLUGIN: {"saveState": True}}
    assert _save_state_default(venv, tmp_path) is True


def test_a_users_own_overrides_are_kept_and_win(tmp_path):
    venv = tmp_path / "venv"
    own = venv / "share" / "jupyter" / "lab" / "settings" / "overrides.json"
    own.parent.mkdir(parents=True)
    text = json.dumps(
        {PLUGIN: {"saveState": False}, "@jupyterlab/apputils-extension:themes": {"theme": "JupyterLab Dark"}}
    )
    own.write_text(text)
    _install(venv)
    assert own.read_text() == text
    assert _save_state_default(venv, tmp_path) is False


def test_the_settings_file_is_where_jupyterlab_looks_in_this_environment():
    import sys

    from jupyterlab.commands import get_app_dir

    if Path(sys.prefix).resolve() != (REPO / ".venv").resolve():
        pytest.skip(f"not running in the project's .venv ({sys.prefix})")
    dry_run = subprocess.run(
        ["make", "-n", "--no-print-directory", "-C", str(REPO), "lab"], check=True, capture_output=True, text=True
    ).stdout
    settings = Path(get_app_dir()).resolve().relative_to(REPO.resolve()) / "settings" / "overrides.d" / "ctseg.json"
    assert settings.as_posix() in dry_run or (REPO / settings).is_file()
