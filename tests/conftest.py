"""Shared fixtures: the real data sets, as a data root (ROOT/fashion-mnist/, ROOT/mnist/) and loaded.

- SOFTMAX_DATA_DIR set (CI): that root must hold both data sets; a missing or incomplete one FAILS, never skips.
- SOFTMAX_DATA_DIR unset (a fresh machine): the data sets are found as the app finds them, Fashion-MNIST through
  load_dataset's search order (Debian's dataset-fashion-mnist in /usr/share/datasets, the cache, else a download
  into the cache) and MNIST in the cache or downloaded. The tests get a temporary root of links to those folders,
  which SOFTMAX_DATA_DIR names for the whole run (the servers and subprocesses the tests start read it). Missing Fashion-MNIST fails; a test that needs
  MNIST is skipped, with the reason, only when MNIST cannot be downloaded (no network).

A test needs MNIST when it is marked `needs_mnist`, uses the `mnist` or `real_bytes` fixture, has "mnist" as a
parameter, or names the data set "mnist" (quoted) in its code.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from softmax_core import Dataset, data, load_dataset
from softmax_core.data import ENV_DATA_DIR, FILES, DataError, default_cache_dir, fetch, search_roots

REPO = Path(__file__).resolve().parent.parent
pytest_plugins = ["tests.browser_fixtures"]  # a Streamlit server and headless Chromium, for end-to-end tests
GIVEN_ROOT = os.environ.get(ENV_DATA_DIR)  # as the run was started
# Without it, the run's own root (SOFTMAX_DATA_DIR from pytest_configure on; data_root fills it with links).
OWN_ROOT = None if GIVEN_ROOT else Path(tempfile.mkdtemp(prefix="softmax-test-data-"))
NAMES = ("fashion-mnist", "mnist")
# The machine as the run found it: a session fixture first asked for inside a test that patches these (tests/test_data.py
# empties the system roots, the cache and the mirrors) must still find the data where a user's run would.
START_ENVIRON = dict(os.environ)
START_SYSTEM_ROOTS = data.SYSTEM_ROOTS
START_DATASETS = dict(data.DATASETS)


def real_data_root() -> Path:
    """The data root given by SOFTMAX_DATA_DIR; fails the test run when it is unset or incomplete."""
    value = os.environ.get(ENV_DATA_DIR)
    if not value:
        pytest.fail("SOFTMAX_DATA_DIR is not set: point it at a folder holding fashion-mnist/ and mnist/ (see README)", pytrace=False)
    root = Path(value).resolve()  # tests chdir and symlink: a relative root must not move
    for name in NAMES:
        missing = [f for f in FILES.values() if not (root / name / f).is_file()]
        if missing:
            pytest.fail(f"SOFTMAX_DATA_DIR={value} lacks {name}/{', '.join(missing)}", pytrace=False)
    return root


@dataclass(frozen=True)
class Found:
    """Where this machine has a data set, or why it has none (can_skip: only because it cannot be downloaded)."""

    folder: Path | None
    problem: str = ""
    can_skip: bool = False


@contextlib.contextmanager
def as_started() -> Iterator[None]:
    """The environment, system roots and data set specs as they were when the run started."""
    with pytest.MonkeyPatch.context() as mp:
        for key in set(os.environ) | set(START_ENVIRON):
            if key in START_ENVIRON:
                mp.setenv(key, START_ENVIRON[key])
            else:
                mp.delenv(key)
        mp.setattr(data, "SYSTEM_ROOTS", START_SYSTEM_ROOTS)
        for name, spec in START_DATASETS.items():
            mp.setitem(data.DATASETS, name, spec)
        yield


@functools.cache
def find_on_this_machine(name: str) -> Found:
    """The data set's folder as load_dataset(name, download=True) finds it on this machine: search roots, then a download."""
    with as_started():
        return _find(name)


def _find(name: str) -> Found:
    try:
        return Found(load_dataset(name, download=False).source)
    except DataError as err:
        local_error = str(err)
    cache = default_cache_dir()
    present = [root / name for root in search_roots(cache_dir=cache) if root != cache
               and any((root / name / f).exists() for f in FILES.values())]
    if present:  # a damaged or partial copy outside the cache is a problem to fix, not to download around
        return Found(None, local_error)
    try:
        fetch(name, cache)  # what load_dataset does next with download=True
    except DataError as err:
        lines = str(err).splitlines()  # "could not download X of Y. Tried:", then one line per mirror
        first_try = f": {lines[1].strip()[:160]}" if len(lines) > 1 else ""
        return Found(None, f"{name} is not on this machine and cannot be downloaded ({lines[0].removesuffix(' Tried:')} "
                           f"No network?{first_try})", can_skip=True)
    try:
        return Found(load_dataset(name, download=False).source)
    except DataError as err:
        return Found(None, str(err))


def needs_mnist(item: pytest.Item) -> bool:
    """Whether the test reads MNIST (see the module docstring for the rule)."""
    if item.get_closest_marker("needs_mnist"):
        return True
    if {"mnist", "real_bytes"} & set(getattr(item, "fixturenames", ())):
        return True
    callspec = getattr(item, "callspec", None)
    if callspec and any(v == "mnist" or (isinstance(v, tuple) and "mnist" in v) for v in callspec.params.values()):
        return True
    function = getattr(item, "function", None)
    try:
        source = inspect.getsource(function) if function is not None else ""
    except (OSError, TypeError):
        return False
    body = source[source.find("def "):]  # not the decorators: a parametrize over both data sets names "mnist" too
    return '"mnist"' in body


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "needs_mnist: the test reads the MNIST digits (skipped only as the module docstring says)")
    if OWN_ROOT is not None:  # set before any test: a test's monkeypatch.delenv, undone, puts it back, not "unset"
        os.environ[ENV_DATA_DIR] = str(OWN_ROOT)


def pytest_unconfigure(config: pytest.Config) -> None:
    if OWN_ROOT is not None:
        os.environ.pop(ENV_DATA_DIR, None)
        shutil.rmtree(OWN_ROOT, ignore_errors=True)  # links only: the data stays where it is


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    """Before any fixture reads files: skip or fail a test that needs MNIST when this machine cannot have it."""
    if GIVEN_ROOT or not needs_mnist(item):
        return  # with SOFTMAX_DATA_DIR given, data_root fails on a missing data set
    found = find_on_this_machine("mnist")
    if found.folder is None:
        if found.can_skip:
            pytest.skip(f"needs MNIST: {found.problem}; set SOFTMAX_DATA_DIR to a root holding mnist/ to run it")
        pytest.fail(found.problem, pytrace=False)


@pytest.fixture(scope="session")
def data_root() -> Path:
    """The real data root: SOFTMAX_DATA_DIR, else the run's own root, filled here with links to this machine's data sets."""
    if GIVEN_ROOT:
        return real_data_root()
    for name in NAMES:
        found = find_on_this_machine(name)
        if found.folder is not None:
            if not (OWN_ROOT / name).exists():
                (OWN_ROOT / name).symlink_to(found.folder.resolve(), target_is_directory=True)
        elif name == "fashion-mnist":
            pytest.fail(f"Fashion-MNIST is needed for the tests and was not found: {found.problem}", pytrace=False)
    return OWN_ROOT


@pytest.fixture(scope="session")
def dashboard_server(data_root: Path, dashboard_server):
    """tests.browser_fixtures' server, started once data_root is filled (SOFTMAX_DATA_DIR points there)."""
    return dashboard_server


@pytest.fixture
def start_dashboards(data_root: Path, start_dashboards):
    """tests.browser_fixtures' server factory, once data_root is filled (SOFTMAX_DATA_DIR points there)."""
    return start_dashboards


@pytest.fixture(scope="session")
def fashion(data_root: Path) -> Dataset:
    """The real Fashion-MNIST, loaded once."""
    return load_dataset("fashion-mnist", data_root, download=False)


@pytest.fixture(scope="session")
def mnist(data_root: Path) -> Dataset:
    """The real MNIST digits, loaded once."""
    return load_dataset("mnist", data_root, download=False)


NOBODY = 65534  # the unprivileged user of Debian systems


@contextlib.contextmanager
def as_other_user() -> Iterator[None]:
    """Run the block as a user without root's powers (root reads and writes anywhere); as anyone else, as is."""
    if os.geteuid() != 0:
        yield
        return
    os.setegid(NOBODY)
    os.seteuid(NOBODY)
    try:
        yield
    finally:
        os.seteuid(0)
        os.setegid(0)


LESSON_EPOCH_1 = {"loss": 0.78848, "train acc": 0.748, "test acc": 0.785}  # seed 0, lr 0.1, batch 256, float32
_EPOCH_LINE = re.compile(r"epoch 1, loss (\d\.\d{4}), train acc (\d\.\d{3}), test acc (\d\.\d{3})")


def is_lesson_epoch_1(line: str) -> bool:
    """True for the lesson's first epoch line: its format exactly, its figures within a printed digit of the lesson's.

    The loss is 0.788481, 3e-5 from a rounding edge: another float32 BLAS may print 0.7884, which is as right.
    """
    match = _EPOCH_LINE.fullmatch(line)
    if match is None:
        return False
    loss, train_acc, test_acc = (float(g) for g in match.groups())
    return (abs(loss - LESSON_EPOCH_1["loss"]) <= 1.5e-4 and abs(train_acc - LESSON_EPOCH_1["train acc"]) <= 1.5e-3
            and abs(test_acc - LESSON_EPOCH_1["test acc"]) <= 1.5e-3)
