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
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update", "--disable-sync", "--no-first-run"]
VIEWPORT = {"width": 1280, "height": 720}
SERVER_START_TIMEOUT = 60.0  # seconds for `/_stcore/health` to answer (imports take a few seconds on a slow machine)


def _free_port() -> int:
    """A TCP port the OS says is free now (other helpers run servers on 8600-8699)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class DashboardServer:
    """A running `streamlit run dashboard.py` process, its URL and its log."""

    def __init__(self, process: subprocess.Popen, url: str, log_path: Path) -> None:
        self.process, self.url, self.log_path = process, url, log_path

    def log(self, tail: int = 8000) -> str:
        """The last `tail` characters of the server's stdout and stderr."""
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError as err:
            return f"(no log: {err})"
        return text[-tail:]

    def check_alive(self) -> None:
        """Fail the test, with the server's log, when the server has exited."""
        code = self.process.poll()
        if code is not None:
            pytest.fail(f"The Streamlit server exited with status {code}. Its log:\n{self.log()}", pytrace=False)

    def __str__(self) -> str:
        return self.url


def _require_data_dir() -> str:
    root = os.environ.get("SOFTMAX_DATA_DIR")
    if not root:
        pytest.fail("SOFTMAX_DATA_DIR is not set: the browser tests need the real data (a folder holding fashion-mnist/), see README", pytrace=False)
    if not (Path(root) / "fashion-mnist").is_dir():
        pytest.fail(f"SOFTMAX_DATA_DIR={root} has no fashion-mnist/ folder: the browser tests need the real data, see README", pytrace=False)
    return str(Path(root).resolve())


def _wait_healthy(process: subprocess.Popen, url: str, log_path: Path) -> None:
    deadline = time.monotonic() + SERVER_START_TIMEOUT
    last_error = ""
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"The Streamlit server exited with status {process.returncode} before it was ready. Its log:\n"
                        f"{log_path.read_text(errors='replace')[-8000:]}", pytrace=False)
        try:
            with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, OSError) as err:
            last_error = str(err)
        time.sleep(0.2)
    pytest.fail(f"The Streamlit server did not answer {url}/_stcore/health within {SERVER_START_TIMEOUT:.0f} s ({last_error}). Its log:\n"
                f"{log_path.read_text(errors='replace')[-8000:]}", pytrace=False)


def _stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)


def _server_command(port: int) -> list[str]:
    return [
        sys.executable, "-m", "streamlit", "run", "dashboard.py",
        "--server.headless", "true", "--server.port", str(port), "--server.address", "127.0.0.1",
        "--server.fileWatcherType", "none", "--browser.gatherUsageStats", "false",
    ]


@pytest.fixture(scope="session")
def dashboard_server() -> Iterator[DashboardServer]:
    """`streamlit run dashboard.py` on a free port, with the real data; yields the server (str() is the base URL)."""
    data_dir = _require_data_dir()
    port = _free_port()
    log_dir = Path(tempfile.mkdtemp(prefix="e2e-streamlit-"))
    log_path = log_dir / "server.log"
    # The runs the tests make go to a run store of their own, removed afterwards.
    env = {**os.environ, "SOFTMAX_DATA_DIR": data_dir, "SOFTMAX_RUNS_DB": str(log_dir / "runs.sqlite3"), "PYTHONUNBUFFERED": "1"}
    command = _server_command(port)
    with open(log_path, "wb") as log:
        process = subprocess.Popen(command, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_healthy(process, url, log_path)
        yield DashboardServer(process, url, log_path)
    finally:
        _stop(process)
        shutil.rmtree(log_dir, ignore_errors=True)


@pytest.fixture
def start_dashboards() -> Iterator[Callable[[int, Path], list[DashboardServer]]]:
    """A factory: `start_dashboards(n, runs_db)` starts n dashboard servers (free ports, the real data) that share
    the run store SOFTMAX_RUNS_DB=runs_db, waits until every one answers and returns them; all stop after the test."""
    data_dir = _require_data_dir()
    started: list[subprocess.Popen] = []
    log_dir = Path(tempfile.mkdtemp(prefix="e2e-streamlit-extra-"))

    def start(n: int, runs_db: Path) -> list[DashboardServer]:
        env = {**os.environ, "SOFTMAX_DATA_DIR": data_dir, "SOFTMAX_RUNS_DB": str(runs_db), "PYTHONUNBUFFERED": "1"}
        launched = []
        for _ in range(n):  # all launched first, then waited for: the imports overlap
            port = _free_port()
            while any(server.url.endswith(f":{port}") for server in launched):  # not given twice in a row
                port = _free_port()
            log_path = log_dir / f"server-{port}.log"
            with open(log_path, "wb") as log:
                process = subprocess.Popen(_server_command(port), cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
            started.append(process)
            launched.append(DashboardServer(process, f"http://127.0.0.1:{port}", log_path))
        for server in launched:
            _wait_healthy(server.process, server.url, server.log_path)
        return launched

    try:
        yield start
    finally:
        for process in started:
            _stop(process)
        shutil.rmtree(log_dir, ignore_errors=True)


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
