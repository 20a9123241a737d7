"""Fixtures for end-to-end tests: a real `streamlit run dashboard.py` and Debian's headless Chromium.

- `dashboard_server` (session): starts Streamlit on a free port from the repo root, with SOFTMAX_DATA_DIR
  passed through, waits for `/_stcore/health`, yields the base URL and stops the server afterwards. If the
  server dies (at start or during the tests), the test fails with the server's log.
- `browser` (session): Debian's Chromium (/usr/bin/chromium) through Playwright's sync API.
- `page` (function): a fresh browser context (a new Streamlit session) at 1280×720 per test.
- `start_dashboards` (function): a factory, `start_dashboards(n, runs_db)`, for tests that need servers of
  their own: n more `streamlit run dashboard.py` processes on free ports sharing SOFTMAX_RUNS_DB=runs_db
  (e.g. two replicas on one SQLite file); all stopped after the test.

Nothing here skips: a missing Chromium, Playwright or data set fails the test with what to do.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "benchmarks"))  # one way to run a server and the browser, shared with the benchmarks
import streamlit_server  # noqa: E402
from streamlit_server import CHROMIUM_ARGS, STREAMLIT_FLAGS, StreamlitServer  # noqa: E402

CHROMIUM = Path(streamlit_server.CHROMIUM)
VIEWPORT = {"width": 1280, "height": 720}
SERVER_START_TIMEOUT = 60.0  # seconds for `/_stcore/health` to answer (imports take a few seconds on a slow machine)


class DashboardServer:
    """A running `streamlit run dashboard.py` process, its URL and its log."""

    def __init__(self, server: StreamlitServer) -> None:
        self.server = server
        self.url = server.url.rstrip("/")

    def log(self, tail: int = 8000) -> str:
        """The last `tail` characters of the server's stdout and stderr."""
        return self.server.output()[-tail:]

    def check_alive(self) -> None:
        """Fail the test, with the server's log, when the server has exited."""
        if not self.server.alive():
            pytest.fail(f"The Streamlit server exited with status {self.server.proc.returncode}. Its log:\n{self.log()}", pytrace=False)

    def __str__(self) -> str:
        return self.url


def _require_data_dir() -> str:
    root = os.environ.get("SOFTMAX_DATA_DIR")
    if not root:
        pytest.fail("SOFTMAX_DATA_DIR is not set: the browser tests need the real data (a folder holding fashion-mnist/), see README", pytrace=False)
    if not (Path(root) / "fashion-mnist").is_dir():
        pytest.fail(f"SOFTMAX_DATA_DIR={root} has no fashion-mnist/ folder: the browser tests need the real data, see README", pytrace=False)
    return str(Path(root).resolve())


def _start(runs_db: Path, data_dir: str) -> DashboardServer:
    """`streamlit run dashboard.py` on a free port with the real data and this run store, answering; else the test fails."""
    env = {**os.environ, "SOFTMAX_DATA_DIR": data_dir, "SOFTMAX_RUNS_DB": str(runs_db), "PYTHONUNBUFFERED": "1"}
    server = StreamlitServer("dashboard.py", REPO, env, STREAMLIT_FLAGS, log_prefix="e2e-streamlit-", poll=0.2,
                             health_timeout=SERVER_START_TIMEOUT)
    try:
        server.start()
    except RuntimeError as err:
        server.close()
        pytest.fail(f"The Streamlit server did not start: {err}", pytrace=False)
    return DashboardServer(server)


@pytest.fixture(scope="session")
def dashboard_server() -> Iterator[DashboardServer]:
    """`streamlit run dashboard.py` on a free port, with the real data; yields the server (str() is the base URL)."""
    data_dir = _require_data_dir()
    runs_dir = Path(tempfile.mkdtemp(prefix="e2e-runs-"))  # the runs the tests make go to a store of their own
    server = _start(runs_dir / "runs.sqlite3", data_dir)
    try:
        yield server
    finally:
        server.server.close()
        shutil.rmtree(runs_dir, ignore_errors=True)


@pytest.fixture
def start_dashboards() -> Iterator[Callable[[int, Path], list[DashboardServer]]]:
    """A factory: `start_dashboards(n, runs_db)` starts n dashboard servers (free ports, the real data) that share
    the run store SOFTMAX_RUNS_DB=runs_db, waits until every one answers and returns them; all stop after the test."""
    data_dir = _require_data_dir()
    started: list[DashboardServer] = []

    def start(n: int, runs_db: Path) -> list[DashboardServer]:
        launched = [_start(runs_db, data_dir) for _ in range(n)]
        started.extend(launched)
        return launched

    try:
        yield start
    finally:
        for server in started:
            server.server.close()


@pytest.fixture(scope="session")
def browser():
    """Debian's headless Chromium, driven by Playwright's sync API (no `playwright install`)."""
    if not CHROMIUM.is_file() or not os.access(CHROMIUM, os.X_OK):
        pytest.fail(f"{CHROMIUM} is missing: the browser tests need Debian's Chromium (`sudo apt-get install chromium`, "
                    "or run scripts/test.sh)", pytrace=False)
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.fail("Playwright for Python is missing: `pip install -r requirements-dev.txt`", pytrace=False)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture
def page(browser, dashboard_server: DashboardServer):
    """A new browser context (so a new Streamlit session) at 1280×720, downloads allowed; `page.goto("/")` opens the dashboard."""
    dashboard_server.check_alive()
    context = browser.new_context(base_url=dashboard_server.url, viewport=VIEWPORT, accept_downloads=True)
    context.set_default_timeout(20_000)
    page = context.new_page()
    try:
        yield page
    finally:
        context.close()
        dashboard_server.check_alive()
