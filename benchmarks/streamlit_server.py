"""A `streamlit run SCRIPT` server: own process group, free port, output in a temp file; and the browser to open it in.

Shared by benchmarks/bench_dashboard.py, benchmarks/load_classroom.py and the browser tests'
fixtures (benchmarks/ is not a package: each puts this folder on sys.path and imports the module by name).
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

RESERVED_PORTS = range(8600, 8700)  # used by others on this machine
# How the benchmarks and tests run the dashboard: no browser tab of its own, no file watcher, no telemetry.
STREAMLIT_FLAGS = ["--server.headless", "true", "--server.fileWatcherType", "none", "--browser.gatherUsageStats", "false",
                   "--server.address", "127.0.0.1"]
CHROMIUM = "/usr/bin/chromium"  # Debian's; `playwright install` cannot download its own here
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update", "--disable-sync", "--no-first-run"]
HEALTH_TIMEOUT = 60.0
START_ATTEMPTS = 3


def free_port() -> int:
    """A port the OS hands out (never one of 8600-8699)."""
    for _ in range(50):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        if port not in RESERVED_PORTS:
            return port
    raise RuntimeError("no free port outside 8600-8699")


class StreamlitServer:
    """`python -m streamlit run SCRIPT` in its own process group, on a free port, its output in a temp file.

    `flags` follow `--server.port PORT` on the command line; `poll` is the pause between two health
    checks. Every started server is in LIVE until stopped, so that close_all() can end what is left.
    """

    def __init__(
        self,
        script: str,
        cwd: Path,
        env: dict[str, str],
        flags: list[str],
        *,
        log_prefix: str = "streamlit_server_",
        poll: float = 0.05,
        health_timeout: float = HEALTH_TIMEOUT,
    ) -> None:
        self.script, self.cwd, self.env, self.flags = script, cwd, env, list(flags)
        self.poll, self.health_timeout = poll, health_timeout
        self.proc: subprocess.Popen | None = None
        self.port = 0
        self.log = tempfile.NamedTemporaryFile(prefix=log_prefix, suffix=".log", delete=False)  # noqa: SIM115
        self.seconds_to_health = float("nan")  # of the attempt that answered

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/"

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/_stcore/stream"

    @property
    def pid(self) -> int:
        return self.proc.pid

    def start(self) -> StreamlitServer:
        """Start the process and wait for /_stcore/health; another free port if the first one was taken."""
        for _ in range(START_ATTEMPTS):
            self.port = free_port()
            cmd = [sys.executable, "-m", "streamlit", "run", self.script, "--server.port", str(self.port), *self.flags]
            started = time.perf_counter()
            self.proc = subprocess.Popen(
                cmd, cwd=self.cwd, env=self.env, stdout=self.log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True
            )
            LIVE.append(self)
            if self._wait_healthy():
                self.seconds_to_health = time.perf_counter() - started
                return self
            self.stop()  # died (port taken in the meantime?) or never answered: try once more
        raise RuntimeError(f"`streamlit run {self.script}` did not start; its output:\n{self.output()[-3000:]}")

    def _wait_healthy(self) -> bool:
        deadline = time.monotonic() + self.health_timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                return False
            try:
                with urllib.request.urlopen(f"{self.url}_stcore/health", timeout=2) as answer:
                    if answer.status == 200:
                        return True
            except (urllib.error.URLError, ConnectionError, TimeoutError, OSError):
                pass
            time.sleep(self.poll)
        return False

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def output(self) -> str:
        try:
            return Path(self.log.name).read_text(errors="replace")
        except OSError:
            return ""

    def stop(self) -> None:
        """End the whole process group: SIGTERM, then SIGKILL after 5 s."""
        proc = self.proc
        if proc is not None:
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGTERM)
                try:
                    proc.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    with contextlib.suppress(ProcessLookupError):
                        os.killpg(proc.pid, signal.SIGKILL)
                    proc.wait(timeout=5)
            with contextlib.suppress(ProcessLookupError, PermissionError):  # children left in the group (none expected) go too
                os.killpg(proc.pid, signal.SIGKILL)
        if self in LIVE:
            LIVE.remove(self)

    def close(self) -> None:
        """Stop it and delete its output file."""
        self.stop()
        self.log.close()
        with contextlib.suppress(OSError):
            os.unlink(self.log.name)


LIVE: list[StreamlitServer] = []


def close_all() -> None:
    """Close every server still started (on the way out, errors and Ctrl-C included)."""
    for server in list(LIVE):
        server.close()
