# ctseg: one entry point. `make setup` creates or refreshes .venv from the pinned
# requirements and is a no-op when nothing changed.
PYTHON ?= python3.11
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.ctseg-installed
export TF_ENABLE_ONEDNN_OPTS ?= 1
export TF_CPP_MIN_LOG_LEVEL ?= 2
export MPLBACKEND ?= Agg

.PHONY: setup demo test test-tools test-browser-tools lint bench lab notebooks clean-venv

setup: $(STAMP)

# GPU=1 installs tensorflow[and-cuda] (same version) in place of tensorflow-cpu.
ifeq ($(GPU),1)
REQS := $(VENV)/requirements-gpu.txt
else
REQS := requirements.txt
endif

$(STAMP): requirements.txt constraints.txt pyproject.toml
	@command -v $(PYTHON) >/dev/null 2>&1 || { echo "error: $(PYTHON) not found; install Python 3.11 or run 'make PYTHON=/path/to/python3.11 ...'"; exit 1; }
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --upgrade "pip>=24"
	@if [ "$(GPU)" = "1" ]; then sed 's/^tensorflow-cpu==/tensorflow[and-cuda]==/' requirements.txt > $(REQS); \
	  grep -v '^tensorflow-cpu==' constraints.txt > $(VENV)/constraints-gpu.txt; fi
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -r $(REQS) \
	  -c $(if $(filter 1,$(GPU)),$(VENV)/constraints-gpu.txt,constraints.txt)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --no-deps --no-build-isolation -e .
	@touch $(STAMP)
	@echo "ctseg environment ready: $(BIN)/ctseg"

demo: setup
	$(BIN)/ctseg demo

test: setup test-tools test-browser-tools lint
	$(BIN)/python -m pytest

# ruff (pyproject.toml [tool.ruff]) and the import contracts: the layers of ctseg_helpers import only
# downwards and no package has an import cycle (pyproject.toml [tool.importlinter]).
lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports

# Debian tools some tests use: dciodvfy (dicom3tools) validates the DICOM ctseg writes. Installed
# when missing and apt-get can (as root); otherwise those tests skip, saying why.
test-tools:
	@if ! command -v dciodvfy >/dev/null 2>&1; then \
	  if [ "$$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then \
	    (apt-get install -y --no-install-recommends dicom3tools >/dev/null 2>&1 || \
	     (apt-get update >/dev/null 2>&1 && apt-get install -y --no-install-recommends dicom3tools >/dev/null 2>&1)) \
	    && echo "installed dicom3tools (dciodvfy)" || echo "could not install dicom3tools: DICOM validation tests will skip"; \
	  else echo "dciodvfy (Debian package dicom3tools) not found: DICOM validation tests will skip"; fi; \
	fi

# Debian's Chromium for the browser tests (tests/browser: the notebooks in JupyterLab, driven by
# Playwright, which cannot download its own browsers here). Installed when missing and apt-get can
# (as root); otherwise those tests skip, saying why. Never fails make.
test-browser-tools:
	@if [ ! -x /usr/bin/chromium ]; then \
	  if [ "$$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then \
	    (apt-get install -y chromium >/dev/null 2>&1 || \
	     (apt-get update >/dev/null 2>&1 && apt-get install -y chromium >/dev/null 2>&1)) \
	    && echo "installed chromium" || echo "could not install chromium: the browser tests will skip"; \
	  else echo "/usr/bin/chromium (Debian package chromium) not found: the browser tests will skip"; fi; \
	fi

bench: setup
	@for f in bench/bench_*.py; do echo "== $$f"; $(BIN)/python $$f || exit 1; done

# JupyterLab saves the widgets' state (progress bars, folder chooser, slice browser) with each notebook,
# so that they show again when it is reopened instead of "Error displaying widget: model not found".
# jupyter/lab-overrides.json goes into overrides.d/ of this environment's JupyterLab settings, where
# packages put their defaults: a user's own settings/overrides.json is left alone and wins over it.
LAB_SETTINGS := $(VENV)/share/jupyter/lab/settings/overrides.d/ctseg.json

$(LAB_SETTINGS): jupyter/lab-overrides.json
	@mkdir -p $(@D)
	cp $< $@

# The kernels draw inline: the Agg backend exported above (for tests and the demo) is not passed on.
lab: setup $(LAB_SETTINGS)
	env -u MPLBACKEND $(BIN)/jupyter lab notebooks/

# Write each notebooks/<name>.ipynb from its paired percent script notebooks/<name>.py.
notebooks: setup
	$(BIN)/jupytext --sync notebooks/train.py notebooks/test.py notebooks/visualize.py

clean-venv:
	rm -rf $(VENV)
