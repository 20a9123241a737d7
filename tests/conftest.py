"""Shared fixtures: the real data sets, found through SOFTMAX_DATA_DIR (a missing data set fails, never skips)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from softmax_core import Dataset, load_dataset
from softmax_core.data import FILES

REPO = Path(__file__).resolve().parent.parent
pytest_plugins = ["tests.browser_fixtures"]  # a Streamlit server and headless Chromium, for end-to-end tests


def real_data_root() -> Path:
    """The data root given by SOFTMAX_DATA_DIR; fails the test run when it is unset or incomplete."""
    value = os.environ.get("SOFTMAX_DATA_DIR")
    if not value:
        pytest.fail("SOFTMAX_DATA_DIR is not set: point it at a folder holding fashion-mnist/ and mnist/ (see README)", pytrace=False)
    root = Path(value).resolve()  # tests chdir and symlink: a relative root must not move
    for name in ("fashion-mnist", "mnist"):
        missing = [f for f in FILES.values() if not (root / name / f).is_file()]
        if missing:
            pytest.fail(f"SOFTMAX_DATA_DIR={value} lacks {name}/{', '.join(missing)}", pytrace=False)
    return root


@pytest.fixture(scope="session")
def data_root() -> Path:
    """The real data root (Fashion-MNIST and MNIST)."""
    return real_data_root()


@pytest.fixture(scope="session")
def fashion(data_root: Path) -> Dataset:
    """The real Fashion-MNIST, loaded once."""
    return load_dataset("fashion-mnist", data_root, download=False)


@pytest.fixture(scope="session")
def mnist(data_root: Path) -> Dataset:
    """The real MNIST digits, loaded once."""
    return load_dataset("mnist", data_root, download=False)
