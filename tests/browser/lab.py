"""JupyterLab in a real browser: a server started for the tests, and a notebook driven with the mouse.

The tests (tests/browser/test_notebooks_in_lab.py) and ``scripts/notebook_screenshots.py`` use
these helpers. A :class:`LabServer` runs ``jupyter lab`` on a free local port with a token, in
a working folder of its own, with its own settings (the widgets' state saved with each notebook,
as ``make lab`` sets it) and no workspace of the user's. A :class:`NotebookPage` drives one
notebook in Chromium through Playwright: it clicks menus and cells as a researcher would, waits
for the kernel to be idle (never for a fixed time) and reads what the page shows.

Chromium is Debian's (``/usr/bin/chromium``, ``make test-browser-tools`` installs it), or the
one named by ``$CTSEG_CHROMIUM``: Playwright does not download browsers here.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
#: Screenshots of every step of the tests go here (git-ignored).
ARTIFACTS = Path(__file__).resolve().parent / "artifacts"
#: The user manual's screenshots (written when ``$CTSEG_UPDATE_SCREENSHOTS`` is 1).
MANUAL_FIGURES = REPO / "docs" / "figures"

CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]

#: What JupyterLab shows in place of a widget whose model it cannot find.
WIDGET_ERROR = "Error displaying widget"
#: What it shows while a widget's view is being made.
WIDGET_LOADING = "Loading widget..."

# Seconds: generous, a shared 2-core CI runner imports TensorFlow in each kernel.
SERVER_START_S = 120
KERNEL_S = 120
CELL_S = 300
UI_S = 60


def chromium_path() -> Path:
    """The Chromium the tests drive: ``$CTSEG_CHROMIUM`` or Debian's ``/usr/bin/chromium``."""
    return Path(os.environ.get("CTSEG_CHROMIUM", "/usr/bin/chromium"))


def missing_browser_tools() -> str | None:
    """Why the browser tests cannot run here, or None when they can."""
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "playwright is not installed (pip install -r requirements.txt, or make setup)"
    chromium = chromium_path()
    if not (chromium.is_file() and os.access(chromium, os.X_OK)):
        return (
            f"Chromium not found at {chromium}: run 'make test-browser-tools' (apt-get install chromium) "
            "or set CTSEG_CHROMIUM to a Chromium executable"
        )
    if shutil.which("jupyter-lab", path=str(Path(sys.executable).parent)) is None:
        return f"jupyter-lab is not installed beside {sys.executable}"
    return None


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class LabServer:
    """``jupyter lab`` serving ``root`` on a free local port, with a token.

    Its settings live in ``<root>/.lab-settings``: the widgets' state is saved with each notebook
    (jupyter/lab-overrides.json, as ``make lab`` installs it), JupyterLab fetches no news, and
    every cell is kept in the page (no windowing), so the test can read every output.
    """

    def __init__(self, root: Path, log_path: Path):
        self.root = Path(root)
        self.log_path = Path(log_path)
        self.port = _free_port()
        self.token = secrets.token_hex(16)
        self.process: subprocess.Popen | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def url(self, path: str) -> str:
        """The URL of ``path`` under the server, with the token."""
        return f"{self.base_url}/{path.lstrip('/')}?token={self.token}"

    def _write_settings(self) -> dict:
        base = self.root / ".lab-settings"
        app_settings = base / "app" / "overrides.d"
        app_settings.mkdir(parents=True, exist_ok=True)
        shutil.copy(REPO / "jupyter" / "lab-overrides.json", app_settings / "ctseg.json")
        user = base / "user"
        for plugin, values in {
            "@jupyterlab/apputils-extension/notification": {"fetchNews": "false", "checkForUpdates": False},
            "@jupyterlab/notebook-extension/tracker": {"windowingMode": "none"},
        }.items():
            path = user / f"{plugin}.jupyterlab-settings"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(values))
        (base / "workspaces").mkdir(exist_ok=True)
        return {
            "app_settings": str(base / "app"),
            "JUPYTERLAB_SETTINGS_DIR": str(user),
            "JUPYTERLAB_WORKSPACES_DIR": str(base / "workspaces"),
        }

    def start(self) -> LabServer:
        dirs = self._write_settings()
        env = {k: v for k, v in os.environ.items() if k != "MPLBACKEND"}  # the kernels draw inline
        env.update(
            JUPYTERLAB_SETTINGS_DIR=dirs["JUPYTERLAB_SETTINGS_DIR"],
            JUPYTERLAB_WORKSPACES_DIR=dirs["JUPYTERLAB_WORKSPACES_DIR"],
            JUPYTER_RUNTIME_DIR=str(self.root / ".lab-settings" / "runtime"),
            PYTHONPATH=os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")])),
        )
        command = [
            str(Path(sys.executable).parent / "jupyter-lab"),
            "--no-browser",
            "--ip=127.0.0.1",
            f"--port={self.port}",
            "--ServerApp.port_retries=0",
            f"--IdentityProvider.token={self.token}",
            f"--ServerApp.root_dir={self.root}",
            f"--LabApp.app_settings_dir={dirs['app_settings']}",
            "--LabApp.news_url=",
            "--ServerApp.open_browser=False",
        ]
        if hasattr(os, "geteuid") and os.geteuid() == 0:
            command.append("--allow-root")  # CI containers run as root
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        log = self.log_path.open("w")
        self.process = subprocess.Popen(command, cwd=self.root, env=env, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + SERVER_START_S
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"jupyter lab exited with {self.process.returncode}; see {self.log_path}")
            try:
                with urllib.request.urlopen(self.url("api/status"), timeout=5) as response:
                    if response.status == 200:
                        return self
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass
            time.sleep(0.5)
        self.stop()
        raise RuntimeError(f"jupyter lab did not answer within {SERVER_START_S} s; see {self.log_path}")

    def shut_down_kernels(self) -> None:
        """Shut down every kernel the server runs (a test's notebooks, once it is done with them)."""
        with urllib.request.urlopen(self.url("api/kernels"), timeout=30) as response:
            kernels = json.load(response)
        for kernel in kernels:
            request = urllib.request.Request(self.url(f"api/kernels/{kernel['id']}"), method="DELETE")
            urllib.request.urlopen(request, timeout=60).close()

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)


class NotebookPage:
    """One notebook open in JupyterLab, driven with the mouse and menus.

    Parameters
    ----------
    page : playwright.sync_api.Page
    server : LabServer
    path : str
        The notebook's path under the server's root, e.g. ``"notebooks/test.ipynb"``.
    shots : Path
        Folder for this notebook's screenshots.
    """

    def __init__(self, page, server: LabServer, path: str, shots: Path):
        self.page = page
        self.server = server
        self.path = path
        self.shots = Path(shots)
        self.shots.mkdir(parents=True, exist_ok=True)
        self._step = 0
        self._started = time.monotonic()
        #: (seconds since the start, screenshot) of every step, for the test's log
        self.steps: list[tuple[float, Path]] = []

    # ---------------------------------------------------------------- opening

    def open(self) -> NotebookPage:
        """Open the notebook in a fresh JupyterLab page and wait for its kernel to be idle."""
        self.page.goto(self.server.url(f"lab/tree/{self.path}") + "&reset", wait_until="domcontentloaded")
        self.wait_for_notebook()
        return self

    def reopen_from_file_browser(self) -> NotebookPage:
        """Open the notebook again by double-clicking it in the file browser."""
        folder, _, name = self.path.rpartition("/")
        self.page.goto(self.server.url(f"lab/tree/{folder}") + "&reset", wait_until="domcontentloaded")
        item = self.page.locator(".jp-DirListing-item", has_text=name).first
        item.wait_for(timeout=UI_S * 1000)
        item.dblclick()
        self.wait_for_notebook()
        return self

    def wait_for_notebook(self) -> None:
        """Wait until every cell of the file is on the page and the kernel has started and is idle."""
        import nbformat  # noqa: PLC0415

        n_cells = len(nbformat.read(self.server.root / self.path, as_version=4).cells)
        self.page.wait_for_function(
            """(n) => {
                const panel = document.querySelector('.jp-NotebookPanel:not(.lm-mod-hidden)');
                return panel && panel.querySelectorAll('.jp-Notebook .jp-Cell').length === n;
            }""",
            arg=n_cells,
            timeout=UI_S * 1000,
        )
        self.page.locator(".jp-StatusBar-TextItem", has_text="| Idle").first.wait_for(timeout=KERNEL_S * 1000)
        self.wait_idle(KERNEL_S)

    @property
    def panel(self):
        """The notebook's panel (the current tab)."""
        return self.page.locator(".jp-NotebookPanel:not(.lm-mod-hidden)").first

    @property
    def notebook(self):
        return self.panel.locator(".jp-Notebook")

    @property
    def cells(self):
        return self.notebook.locator(".jp-Cell")

    # ---------------------------------------------------------------- running

    def kernel_status(self) -> str:
        return self.panel.locator(".jp-Notebook-ExecutionIndicator").get_attribute("data-status") or ""

    def wait_idle(self, timeout_s: float = CELL_S) -> None:
        """Wait until the kernel is idle and no cell is queued or running ("[*]")."""
        self.page.wait_for_function(
            """() => {
                const panel = document.querySelector('.jp-NotebookPanel:not(.lm-mod-hidden)');
                if (!panel) return false;
                const indicator = panel.querySelector('.jp-Notebook-ExecutionIndicator');
                if (!indicator || indicator.getAttribute('data-status') !== 'idle') return false;
                const prompts = [...panel.querySelectorAll('.jp-InputArea-prompt')];
                return !prompts.some(p => p.textContent.includes('*'));
            }""",
            timeout=timeout_s * 1000,
            polling=500,
        )

    def cell_with(self, text: str):
        """The first code cell whose source contains ``text``."""
        return self.notebook.locator(".jp-CodeCell", has=self.page.locator(".jp-InputArea-editor", has_text=text)).first

    def select(self, cell) -> None:
        """Make ``cell`` the active cell by clicking its prompt (command mode, nothing is edited)."""
        cell.scroll_into_view_if_needed()
        cell.locator(".jp-InputArea-prompt").click()
        self.page.wait_for_function(
            "(el) => el.classList.contains('jp-mod-active')", arg=cell.element_handle(), timeout=UI_S * 1000
        )

    def menu(self, menu: str, item: str) -> None:
        """Click ``menu`` in the menu bar, then ``item`` in it."""
        self.page.locator(".lm-MenuBar-itemLabel", has_text=menu).first.click()
        entry = self.page.locator(".lm-Menu-item:not(.lm-mod-disabled)", has_text=item).first
        entry.wait_for(timeout=UI_S * 1000)
        entry.click()

    def run_above(self, cell, timeout_s: float = CELL_S) -> None:
        """Run every cell above ``cell`` (Run → Run All Above Selected Cell)."""
        self.select(cell)
        self.menu("Run", "Run All Above Selected Cell")
        self._wait_started()
        self.wait_idle(timeout_s)

    def run_from(self, cell, timeout_s: float = CELL_S) -> None:
        """Run ``cell`` and every cell below it (Run → Run Selected Cell and All Below)."""
        self.select(cell)
        self.menu("Run", "Run Selected Cell and All Below")
        self._wait_started()
        self.wait_idle(timeout_s)

    def run_all(self, timeout_s: float = CELL_S) -> None:
        """Run → Run All Cells."""
        self.menu("Run", "Run All Cells")
        self._wait_started()
        self.wait_idle(timeout_s)

    def _wait_started(self) -> None:
        # A queued cell shows "[*]" at once; waiting for it keeps wait_idle from seeing the idle
        # kernel of the moment before the run.
        self.page.wait_for_function(
            """() => {
                const panel = document.querySelector('.jp-NotebookPanel:not(.lm-mod-hidden)');
                return [...panel.querySelectorAll('.jp-InputArea-prompt')].some(p => p.textContent.includes('*'))
                    || panel.querySelector('.jp-Notebook-ExecutionIndicator').getAttribute('data-status') !== 'idle';
            }""",
            timeout=UI_S * 1000,
            polling=100,
        )

    # ---------------------------------------------------------------- saving

    def save(self) -> None:
        """File → Save Notebook, then wait until the tab no longer shows unsaved changes."""
        self.menu("File", "Save Notebook")
        self.page.wait_for_function(
            """() => !document.querySelector('.jp-mod-current.lm-TabBar-tab.jp-mod-dirty')""",
            timeout=UI_S * 1000,
        )

    def close_and_shut_down(self) -> None:
        """File → Close and Shut Down Notebook, confirming the dialog."""
        self.menu("File", "Close and Shut Down Notebook")
        dialog = self.page.locator(".jp-Dialog")
        try:
            dialog.wait_for(timeout=5000)
            dialog.locator("button.jp-mod-accept").click()
        except Exception:  # noqa: BLE001 - no confirmation asked: the tab is closing already
            pass
        self.page.locator(".jp-NotebookPanel:not(.lm-mod-hidden)").wait_for(state="detached", timeout=UI_S * 1000)

    # ---------------------------------------------------------------- reading

    def text(self) -> str:
        """All text the notebook's outputs show."""
        return "\n".join(self.notebook.locator(".jp-OutputArea-output").all_inner_texts())

    def error_outputs(self) -> list[str]:
        """Texts of error outputs and tracebacks the page shows (stderr that reads like a failure)."""
        found = []
        for text in self.notebook.locator(
            ".jp-OutputArea-output[data-mime-type='application/vnd.jupyter.stderr']"
        ).all_inner_texts():
            if any(word in text for word in ("Traceback", "Error", "Exception")):
                found.append(text)
        return found

    def widget_errors(self) -> list[str]:
        """Outputs that show no widget: "Error displaying widget", or "Loading widget..." for good.

        Waits (up to a minute) for the widgets still loading to show first.
        """
        try:
            self.page.wait_for_function(
                """(loading) => {
                    const panel = document.querySelector('.jp-NotebookPanel:not(.lm-mod-hidden)');
                    return ![...panel.querySelectorAll('.jp-OutputArea-output')]
                        .some(o => o.textContent.trim() === loading);
                }""",
                arg=WIDGET_LOADING,
                timeout=UI_S * 1000,
            )
        except Exception:  # noqa: BLE001 - reported below, as outputs that show no widget
            pass
        return [
            text
            for text in self.notebook.locator(".jp-OutputArea-output").all_inner_texts()
            if WIDGET_ERROR in text or text.strip() == WIDGET_LOADING
        ]

    def outputs_overflowing(self) -> list[str]:
        """Widgets that run past their output area's right edge (by more than half a pixel), and where."""
        return self.page.evaluate(
            """() => {
                const out = [];
                const panel = document.querySelector('.jp-NotebookPanel:not(.lm-mod-hidden)');
                for (const area of panel.querySelectorAll('.jp-OutputArea-output')) {
                    const right = area.getBoundingClientRect().right;
                    for (const el of area.querySelectorAll('.jupyter-widgets')) {
                        const r = el.getBoundingClientRect();
                        if (r.width > 0 && r.right > right + 0.5) out.push(
                            (el.innerText || el.className).trim().slice(0, 60) + ' (' + el.className + ') ends at '
                            + Math.round(r.right) + ' px, the output area at ' + Math.round(right) + ' px');
                    }
                }
                return out;
            }"""
        )

    # ---------------------------------------------------------------- pictures

    def shot(self, name: str, element=None) -> Path:
        """Save a screenshot of the page (or of ``element``) as ``<shots>/<step>_<name>.png``."""
        self._step += 1
        path = self.shots / f"{self._step:02d}_{name}.png"
        if element is None:
            self.page.screenshot(path=str(path))
        else:
            # at the top of the notebook's scrolled area, so that as much of it as fits is inside it
            element.evaluate("(el) => el.scrollIntoView({block: 'start'})")
            element.screenshot(path=str(path))
        self.steps.append((time.monotonic() - self._started, path))
        return path
