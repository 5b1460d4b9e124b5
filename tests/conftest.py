"""Shared fixtures. TensorFlow's environment is set here, before anything imports it."""

from __future__ import annotations

import os
from pathlib import Path

os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("MPLBACKEND", "Agg")

import pytest  # noqa: E402

REPO_ROOT = Path(__file__).resolve().parents[1]


def shared_datasets_dir() -> Path:
    """``../shared/datasets`` beside the checkout, or ``$CTSEG_SHARED_DATASETS``."""
    env = os.environ.get("CTSEG_SHARED_DATASETS")
    return Path(env) if env else REPO_ROOT.parent / "shared" / "datasets"


@pytest.fixture(scope="session")
def sunnybrook() -> Path:
    """The real Sunnybrook cardiac MR subset; tests using it skip when it is absent."""
    path = shared_datasets_dir() / "sunnybrook"
    if not path.is_dir():
        pytest.skip(f"real data not available: {path} is absent (only CI and developers have ../shared)")
    return path


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO_ROOT
