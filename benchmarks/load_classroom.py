"""Classroom load: N browser sessions train at the same time on ONE `streamlit run dashboard.py` server.

Each session is emulated over Streamlit's websocket protocol (ws://HOST:PORT/_stcore/stream, subprotocol
"streamlit", BackMsg / ForwardMsg protobufs), as the real frontend does it:

- it opens the page with the query string `seed=i` (the app reads it on the session's first run) and
  follows the server's `page_info_changed` (the URL the browser would show) and `new_session`
  (the page script hash) for every later request;
- it clicks **Train** (user key "train"): a `rerun_script` whose widget states hold `trigger_value=True`
  for the button's element id, found in the first run's deltas; the lesson's defaults (lr 0.1, batch
  256, 5 epochs) are what the page starts with;
- like the frontend's `handleAutoRerun`, an `auto_rerun` ForwardMsg (interval, fragment_id) arms a
  timer that sends `rerun_script` for that fragment (`is_auto_rerun=True`, the last widget states, the
  current query string and page script hash) every interval; the same interval again keeps the timer;
  a full-app run (a `new_session` whose run identity has no fragment ids) or `stop_auto_rerun` clears
  the timers. The app's live area is `st.fragment(run_every=0.05)` while a job is pending, and every
  fragment run trains one queued epoch; after the last one the app reruns the whole page without it.

Every session records the lesson's log lines (the `code` element) as they appear, and when epoch 5 shows.
Checks and figures:

- all sessions finish (epoch 5 in the log) before the timeout; no exception element, no dropped socket;
- no cross-talk: each session's log lines (untrained test accuracy and epochs 1-5, every version seen)
  equal the same seed trained alone with `softmax_core` in this process, under one BLAS thread as the
  training workers run (softmax_core/engine.py);
- the memory of the server and its training workers, summed from /proc/PID/status: RSS after start-up
  (no session), after one session trained (a warm-up session, seed N, that stays connected), after the N
  sessions, and the peak (sum of VmHWM; shared pages, such as the memory-mapped data set, count once per process);
- Train click -> epoch 5 per session, median and max, against the targets (<= 10 s median, <= 15 s max);
- the time from the start of the load until the last session finished, per-session times;
- a fresh page loads during the load: Debian's Chromium through Playwright opens the dashboard once all
  sessions have pressed Train, and the time until the Train button is visible and enabled is reported.

The emulated clients run in this process on the same machine as the server: their CPU time is printed
too, since in a real classroom it is spent on the students' laptops.

    SOFTMAX_DATA_DIR=/path/to/data-root python benchmarks/load_classroom.py [--sessions 30] [--json out.json]

Exit status: 0 when every session finished without cross-talk; 1 when a session failed or cross-talk
was found; 2 when it could not run (no data, the server did not start). Memory and time targets are
reported (PASS/MISS) but do not change the exit status. The server is always ended.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import re
import resource
import signal
import statistics
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
for _folder in (REPO, Path(__file__).resolve().parent):  # the package from the checkout; its helper (also when loaded by file path)
    if str(_folder) not in sys.path:
        sys.path.insert(0, str(_folder))

from streamlit_server import CHROMIUM, CHROMIUM_ARGS, STREAMLIT_FLAGS, StreamlitServer  # noqa: E402

EPOCHS = 5  # the lesson's default, what Train queues
BOARD: dict = {}  # with --board: the class board's code, and what its projector tab saw
TARGET_BOARD_S = 2.0  # a student's epoch on the projector's board within this many seconds
# The projector's board page: per entry (trace name "#n Nickname ..."), the epochs its curve shows.
BOARD_CURVES = """() => {
  const el = document.querySelector('.st-key-board_curves .js-plotly-plot');
  if (!el || !el._fullData) return null;
  const out = {};
  for (const t of el._fullData) {
    const m = /^(?:pinned )?#([0-9]+) /.exec(t.name || '');
    if (m && t.x) out[m[1]] = Math.max(...Array.from(t.x));
  }
  return out;
}"""
TARGET_PEAK_MB = 1024.0
TARGET_PER_SESSION_MB = 15.0
TARGET_MEDIAN_S = 10.0  # Train click -> epoch 5, median over the class
TARGET_MAX_S = 15.0  # ... and for the slowest student
EPOCH_LINE = re.compile(r"^epoch (\d+), loss ")
STORE_PROBLEM = "Runs are kept for this browser tab only"
# In the page: the Train button (not the hidden copy) is visible and enabled; remember when, in page time.
TRAIN_VISIBLE = """() => {
  const btn = Array.from(document.querySelectorAll('button')).find(
    b => b.textContent.trim().endsWith('Train') && b.getBoundingClientRect().height > 0);
  const ok = !!btn && !btn.disabled;
  if (ok && window.__readyAt === undefined) window.__readyAt = performance.now();
  return ok;
}"""


# ---------------------------------------------------------------- the server


def proc_status(pid: int) -> dict[str, float]:
    """VmRSS and VmHWM of a process in MB (from /proc/PID/status); empty when it is gone."""
    out = {}
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return out
    for line in text.splitlines():
        name, _, value = line.partition(":")
        if name in ("VmRSS", "VmHWM"):
            out[name] = int(value.split()[0]) / 1024  # kB -> MB
    return out


def family(pid: int) -> list[int]:
    """The process and its children (the server and its training workers)."""
    pids = [pid]
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            parent = int(stat.read_text().rpartition(")")[2].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        if parent == pid:
            pids.append(int(stat.parent.name))
    return pids


def family_memory(pid: int) -> dict[str, float]:
    """Summed VmRSS and VmHWM (MB) of the server and its workers, and how many processes that is."""
    statuses = [proc_status(p) for p in family(pid)]
    return {"VmRSS": sum(s.get("VmRSS", 0.0) for s in statuses), "VmHWM": sum(s.get("VmHWM", 0.0) for s in statuses),
            "processes": float(len([s for s in statuses if s]))}


def proc_cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process (from /proc/PID/stat)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    except OSError:
        return float("nan")
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def dashboard_server(env: dict[str, str]) -> StreamlitServer:
    """`python -m streamlit run dashboard.py` in its own process group, on a free port, output in a temp file (not yet started)."""
    return StreamlitServer("dashboard.py", REPO, env, STREAMLIT_FLAGS, log_prefix="load_classroom_", poll=0.05)


# ---------------------------------------------------------------- one emulated browser session


@dataclass
class SessionResult:
    """What one emulated browser saw; times are seconds since the start of the load."""

    seed: int
    label: str
    connected: float | None = None
    first_run: float | None = None  # the page's first script run finished
    clicked: float | None = None
    epoch_times: dict[int, float] = field(default_factory=dict)  # epoch -> first seen in the log
    lines: dict[int, list[str]] = field(default_factory=dict)  # epoch (0: untrained) -> every distinct line seen
    success: float | None = None  # "Finished 5 epochs" shown
    settled: float | None = None  # finished, no auto-rerun timer left, the last run ended
    full_runs: int = 0
    fragment_runs: int = 0
    finished_runs: int = 0  # script_finished messages
    reruns_sent: int = 0
    messages: int = 0
    bytes_received: int = 0
    exceptions: list[str] = field(default_factory=list)
    store_problem: bool = False
    error: str | None = None

    @property
    def finished(self) -> bool:
        return EPOCHS in self.epoch_times and self.error is None and not self.exceptions

    @property
    def finish_time(self) -> float | None:
        return self.epoch_times.get(EPOCHS)


class BrowserSession:
    """One browser tab on the dashboard, over Streamlit's websocket protocol."""

    def __init__(self, ws_url: str, seed: int, t0: float, label: str = "") -> None:
        from streamlit.proto.WidgetStates_pb2 import WidgetStates  # noqa: PLC0415

        self.ws_url, self.t0 = ws_url, t0
        self.result = SessionResult(seed=seed, label=label or f"seed {seed}")
        self.query_string = f"seed={seed}" + (f"&board={BOARD['code']}" if BOARD.get("code") else "")
        self.page_script_hash = ""
        self.widget_states = WidgetStates()  # the last ones sent (a click's trigger is sent once, then dropped)
        self.train_id: str | None = None
        self.train_disabled = True
        self.timers: dict[str, tuple[float, asyncio.Task]] = {}
        self.ws = None
        self.first_run_done = asyncio.Event()
        self.settled = asyncio.Event()
        self.clicked = asyncio.Event()
        self.run_is_full = True
        self.running = False

    def now(self) -> float:
        return time.perf_counter() - self.t0

    async def send_rerun(self, widget_states=None, fragment_id: str = "", auto: bool = False) -> None:
        from streamlit.proto.BackMsg_pb2 import BackMsg  # noqa: PLC0415

        msg = BackMsg()
        rerun = msg.rerun_script
        rerun.query_string = self.query_string
        rerun.page_script_hash = self.page_script_hash
        rerun.page_name = ""
        rerun.widget_states.CopyFrom(widget_states if widget_states is not None else self.widget_states)
        if fragment_id:
            rerun.fragment_id = fragment_id
        rerun.is_auto_rerun = auto
        self.result.reruns_sent += 1
        await self.ws.send(msg.SerializeToString())

    async def click_train(self) -> None:
        from streamlit.proto.WidgetStates_pb2 import WidgetStates  # noqa: PLC0415

        states = WidgetStates()
        states.CopyFrom(self.widget_states)
        widget = states.widgets.add()
        widget.id = self.train_id
        widget.trigger_value = True
        self.result.clicked = self.now()
        self.clicked.set()
        await self.send_rerun(states)  # the frontend then deletes the trigger: later requests go without it

    async def _tick(self, fragment_id: str, interval: float) -> None:
        with contextlib.suppress(asyncio.CancelledError):
            while True:
                await asyncio.sleep(interval)
                await self.send_rerun(fragment_id=fragment_id, auto=True)

    def _clear_timer(self, fragment_id: str) -> None:
        entry = self.timers.pop(fragment_id, None)
        if entry is not None:
            entry[1].cancel()

    def _clear_timers(self) -> None:
        for fragment_id in list(self.timers):
            self._clear_timer(fragment_id)

    def _check_settled(self) -> None:
        if EPOCHS in self.result.epoch_times and not self.timers and not self.running and self.result.settled is None:
            self.result.settled = self.now()
            self.settled.set()

    def _element(self, element) -> None:
        kind = element.WhichOneof("type")
        if kind == "button":
            button = element.button
            if button.id.endswith("-train") or (self.train_id is None and button.label == "Train"):
                self.train_id, self.train_disabled = button.id, button.disabled
        elif kind == "code":
            for line in element.code.code_text.splitlines():
                match = EPOCH_LINE.match(line)
                epoch = int(match.group(1)) if match else 0 if line.startswith("untrained test acc") else None
                if epoch is None:
                    continue
                seen = self.result.lines.setdefault(epoch, [])
                if line not in seen:
                    seen.append(line)
                if epoch:
                    self.result.epoch_times.setdefault(epoch, self.now())
        elif kind == "alert":
            if element.alert.body.startswith(f"Finished {EPOCHS} epochs") and self.result.success is None:
                self.result.success = self.now()
        elif kind == "exception":
            exc = element.exception
            self.result.exceptions.append(f"{exc.type}: {exc.message}"[:500])
        elif kind == "markdown":
            if STORE_PROBLEM in element.markdown.body:
                self.result.store_problem = True

    def _handle(self, msg) -> None:
        kind = msg.WhichOneof("type")
        if kind == "new_session":
            self.running = True
            self.page_script_hash = msg.new_session.page_script_hash or self.page_script_hash
            self.run_is_full = not msg.metadata.run.fragment_ids
            if self.run_is_full:
                self.result.full_runs += 1
                self._clear_timers()  # as the frontend's cleanupAutoReruns on a full-app run
            else:
                self.result.fragment_runs += 1
        elif kind == "delta":
            if msg.delta.WhichOneof("type") == "new_element":
                self._element(msg.delta.new_element)
        elif kind == "page_info_changed":
            self.query_string = msg.page_info_changed.query_string
        elif kind == "auto_rerun":
            fragment_id, interval = msg.auto_rerun.fragment_id, msg.auto_rerun.interval
            if not fragment_id:
                return
            current = self.timers.get(fragment_id)
            if current is not None and current[0] == interval:
                return  # the frontend keeps a timer whose interval did not change
            self._clear_timer(fragment_id)
            if interval > 0:
                self.timers[fragment_id] = (interval, asyncio.get_running_loop().create_task(self._tick(fragment_id, interval)))
        elif kind == "stop_auto_rerun":
            for fragment_id in msg.stop_auto_rerun.fragment_ids:
                self._clear_timer(fragment_id)
        elif kind == "script_finished":
            self.running = False
            self.result.finished_runs += 1
            if self.result.first_run is None:
                self.result.first_run = self.now()
                self.first_run_done.set()
            self._check_settled()
        elif kind == "session_event":
            event = msg.session_event
            if event.WhichOneof("type") == "script_compilation_exception":
                self.result.exceptions.append(f"compilation: {event.script_compilation_exception.message}"[:500])

    async def run(self, click: bool = True) -> SessionResult:
        """Open the page, click Train after the first run, follow the auto-reruns until settled.

        Keeps the socket open (and reading) afterwards until cancelled: the student's tab stays open.
        """
        from streamlit.proto.ForwardMsg_pb2 import ForwardMsg  # noqa: PLC0415
        from websockets.asyncio.client import connect  # noqa: PLC0415

        reader = None
        try:
            async with connect(self.ws_url, subprotocols=["streamlit"], max_size=None, open_timeout=120,
                               ping_interval=None, proxy=None) as ws:
                self.ws = ws
                self.result.connected = self.now()

                async def read() -> None:
                    async for raw in ws:
                        self.result.messages += 1
                        self.result.bytes_received += len(raw)
                        msg = ForwardMsg()
                        msg.ParseFromString(raw)
                        self._handle(msg)

                reader = asyncio.create_task(read())
                await self.send_rerun()  # open the page
                await self._wait_or_reader(self.first_run_done, reader)
                if click:
                    if self.train_id is None:
                        raise RuntimeError("no Train button (key 'train') in the first run")
                    if self.train_disabled:
                        raise RuntimeError("the Train button is disabled")
                    await self.click_train()
                    await self._wait_or_reader(self.settled, reader)
                await reader  # keep the tab open until cancelled (or the server closes it)
                raise RuntimeError("the server closed the connection")
        except asyncio.CancelledError:
            raise
        except Exception as err:  # noqa: BLE001
            if self.result.error is None:
                self.result.error = f"{type(err).__name__}: {err}"[:500]
        finally:
            self._clear_timers()
            if reader is not None:
                reader.cancel()
        return self.result

    async def _wait_or_reader(self, event: asyncio.Event, reader: asyncio.Task) -> None:
        waiter = asyncio.create_task(event.wait())
        done, _ = await asyncio.wait({waiter, reader}, return_when=asyncio.FIRST_COMPLETED)
        if waiter not in done:
            waiter.cancel()
            reader.result()  # raises what ended the reader
            raise RuntimeError("the server closed the connection")


# ---------------------------------------------------------------- the page load in a real browser


async def page_load(url: str, launched: asyncio.Event, start: asyncio.Event, sessions: list[BrowserSession],
                    timeout_s: float = 120.0) -> dict:
    """Launch Chromium (then set `launched`); once `start` is set, open the dashboard in a fresh context, time the Train button."""
    out: dict = {"loaded": False}
    training = lambda: sum(1 for s in sessions if s.result.clicked is not None and EPOCHS not in s.result.epoch_times)  # noqa: E731
    try:
        if not Path(CHROMIUM).exists():
            out["error"] = f"{CHROMIUM} not found (apt-get install chromium)"
            return out
        try:
            from playwright.async_api import async_playwright  # noqa: PLC0415
        except ImportError as err:
            out["error"] = f"Playwright is not installed: {err}"
            return out
        async with async_playwright() as p:
            browser = await p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            try:
                launched.set()
                await start.wait()
                context = await browser.new_context(viewport={"width": 1280, "height": 720})
                page = await context.new_page()
                out["sessions_training_at_open"] = training()
                out["opened_at"] = time.perf_counter()  # the caller makes it relative to the load's start
                started = time.perf_counter()
                await page.goto(url, wait_until="commit", timeout=timeout_s * 1000)
                await page.wait_for_function(TRAIN_VISIBLE, polling="raf", timeout=timeout_s * 1000)
                out["wall_s"] = time.perf_counter() - started
                out["sessions_training_at_ready"] = training()
                out["page_ms"] = await page.evaluate("() => window.__readyAt")
                out["loaded"] = True
                await context.close()
            finally:
                await browser.close()
    except Exception as err:  # noqa: BLE001
        out["error"] = f"{type(err).__name__}: {err}"[:1000]
    finally:
        launched.set()
    return out


async def board_watch(url: str, stop: asyncio.Event, t0_of) -> dict:
    """A projector's tab on the class board page: when each entry's curve first shows each epoch (seconds since the load's start)."""
    from playwright.async_api import async_playwright  # noqa: PLC0415

    seen: dict[str, dict[int, float]] = {}  # entry number -> epoch -> first seen
    out: dict = {"seen": seen}
    try:
        async with async_playwright() as p:
            browser = await p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            try:
                page = await (await browser.new_context(viewport={"width": 1920, "height": 1080})).new_page()
                await page.goto(url, wait_until="commit", timeout=120_000)
                # The board is on the projector before the class joins (they join by its QR code): the students
                # start once it is drawn.
                await page.wait_for_selector("[data-testid='stMetric']", timeout=120_000)
                BOARD["watching"] = True
                while not stop.is_set():
                    curves = await page.evaluate(BOARD_CURVES) or {}
                    now = time.perf_counter() - t0_of()
                    for number, last in curves.items():
                        for epoch in range(1, int(last) + 1):
                            seen.setdefault(number, {}).setdefault(epoch, now)
                    await asyncio.sleep(0.1)
                if BOARD.get("screenshot"):  # the projector's view with every student's entry, to look at
                    await page.screenshot(path=BOARD["screenshot"])
            finally:
                await browser.close()
    except Exception as err:  # noqa: BLE001
        out["error"] = f"{type(err).__name__}: {err}"[:500]
    return out


# ---------------------------------------------------------------- the reference: each seed trained alone


def reference_lines(seeds: list[int], threads: int | None = 1) -> dict[int, list[str]]:
    """The log lines (untrained test acc, epochs 1-5) of each seed trained alone with the lesson's defaults.

    threads=1 runs BLAS with one thread, as the server does; None leaves BLAS as it is.
    """
    import numpy as np  # noqa: PLC0415
    from threadpoolctl import threadpool_limits  # noqa: PLC0415

    from softmax_core import SoftmaxRegression, TrainConfig, Trainer, load_dataset  # noqa: PLC0415

    data = load_dataset("fashion-mnist", download=False)
    out = {}
    with threadpool_limits(threads, user_api="blas") if threads else contextlib.nullcontext():
        for seed in seeds:
            rng = np.random.default_rng(seed)
            trainer = Trainer.for_dataset(SoftmaxRegression.init(rng), data, rng)
            lines = [f"untrained test acc {trainer.initial_record().test_acc:.3f}"]
            lines += [record.log_line() for record in trainer.run(TrainConfig())]
            out[seed] = lines
    return out


def board_delays(out: dict, results: list[SessionResult]) -> dict:
    """Seconds from a student's page showing an epoch to the projector's board showing it, per (student, epoch)."""
    entries = BOARD["entries"]
    seed_of = {str(e.number): e.settings.get("seed") for e in entries}
    by_seed = {r.seed: r for r in results if not r.label.startswith("warm-up")}  # it trained before the projector's tab opened
    delays, missing = [], []
    for number, epochs in out["board_watch"]["seen"].items():
        result = by_seed.get(seed_of.get(number))
        if result is None:
            continue
        for epoch, t_board in epochs.items():
            t_page = result.epoch_times.get(epoch)
            if t_page is not None:
                delays.append(t_board - t_page)
    shown = sum(len(e) for e in out["board_watch"]["seen"].values())
    expected = EPOCHS * len(results)
    if shown < expected:
        missing.append(f"{expected - shown} student epochs never shown on the board")
    return {"delays": delays, "entries": len(entries), "shown": shown, "missing": missing, "error": out["board_watch"].get("error")}


def compare(results: list[SessionResult], reference: dict[int, list[str]]) -> list[dict]:
    """Every line a session showed that differs from its seed's reference (any version seen of it)."""
    problems = []
    for r in results:
        expected = reference[r.seed]
        for epoch, seen in sorted(r.lines.items()):
            want = expected[epoch] if epoch < len(expected) else None
            for line in seen:
                if line != want:
                    problems.append({"session": r.label, "seed": r.seed, "epoch": epoch, "seen": line, "expected": want})
    return problems


# ---------------------------------------------------------------- the load


def data_root(given: str | None) -> Path:
    """The data root (--data-dir or $SOFTMAX_DATA_DIR), absolute, with fashion-mnist/ in it."""
    value = given or os.environ.get("SOFTMAX_DATA_DIR")
    if not value:
        raise SystemExit("load_classroom: set SOFTMAX_DATA_DIR (or --data-dir) to a folder holding fashion-mnist/")
    root = Path(value).resolve()
    if not (root / "fashion-mnist").is_dir():
        raise SystemExit(f"load_classroom: {root} has no fashion-mnist/ folder")
    return root


def run_load(sessions: int = 30, data_dir: str | Path | None = None, timeout: float = 900.0, page_check: bool = True,
             log=print, stall: float = 180.0, board: bool = False, board_screenshot: str | None = None) -> dict:
    """Start the server, train a warm-up session, then `sessions` at once; return every figure and check."""
    root = data_root(str(data_dir) if data_dir else None)
    os.environ["SOFTMAX_DATA_DIR"] = str(root)  # the reference below loads the same files as the server
    tmp = tempfile.TemporaryDirectory(prefix="load_classroom_")
    env = {**os.environ, "SOFTMAX_DATA_DIR": str(root), "SOFTMAX_RUNS_DB": str(Path(tmp.name) / "runs.sqlite3")}
    server = dashboard_server(env)
    out: dict = {"sessions": sessions, "timeout_s": timeout, "cpus": os.cpu_count(), "load_avg_start": os.getloadavg()}
    try:
        started = time.perf_counter()
        server.start()
        out["server_start_s"] = time.perf_counter() - started
        time.sleep(1.0)
        out["rss_startup_mb"] = family_memory(server.pid).get("VmRSS")
        log(f"server pid {server.pid} on {server.url} ({out['server_start_s']:.1f} s to health); RSS {out['rss_startup_mb']:.0f} MB")
        if board:  # a class board in the server's store: every student joins it with the link's ?board=CODE
            from ui import board as class_board  # noqa: PLC0415
            from ui.run_store import open_store  # noqa: PLC0415

            BOARD.clear()
            BOARD["screenshot"] = board_screenshot
            BOARD["store"] = open_store(env["SOFTMAX_RUNS_DB"])
            opened = class_board.start_board(BOARD["store"], {})
            BOARD["code"] = opened.code
            # The teacher's own link: the projector shows the teacher's view (QR code, controls), not a student's.
            BOARD["url"] = class_board.teacher_link(server.url, opened.code, opened.key)
        asyncio.run(_drive(server, sessions, timeout, stall, page_check, out, log))
        out["server_alive_at_end"] = server.alive()
    finally:
        server_log = server.output()
        server.close()
        if BOARD.get("code"):  # the board's entries as the load left them, read before the store's folder goes
            from ui import board as class_board  # noqa: PLC0415

            try:
                BOARD["entries"] = class_board.read_board(BOARD["store"], BOARD["code"]).entries
            except class_board.BoardError as err:
                BOARD["entries"], out["board_read_error"] = [], str(err)
            finally:
                BOARD["store"].close()
        tmp.cleanup()
    out["load_avg_end"] = os.getloadavg()
    out["server_log_errors"] = [line for line in server_log.splitlines() if re.search(r"Traceback|Error|Exception|Warning", line)][:40]
    seeds = sorted({r["seed"] for r in out["results"]})
    log(f"reference: {len(seeds)} seeds trained alone in this process (one BLAS thread)")
    reference = reference_lines(seeds, threads=1)
    results = [SessionResult(**{**r, "epoch_times": {int(k): v for k, v in r["epoch_times"].items()},
                                "lines": {int(k): v for k, v in r["lines"].items()}}) for r in out["results"]]
    out["crosstalk"] = compare(results, reference)
    out["reference"] = {str(seed): lines for seed, lines in reference.items()}
    if out["crosstalk"]:  # float32 BLAS results can depend on the thread count: would the default match?
        bad = sorted({p["seed"] for p in out["crosstalk"]})
        out["crosstalk_vs_default_threads"] = compare([r for r in results if r.seed in bad], reference_lines(bad, threads=None))
    if BOARD.get("code") and "board_watch" in out:
        out["board"] = board_delays(out, results)
    out["failed"] = [r.label for r in results if not r.finished]
    out["ok"] = not out["failed"] and not out["crosstalk"]
    return out


async def _drive(server: StreamlitServer, n: int, timeout: float, stall: float, page_check: bool, out: dict, log) -> None:
    pid = server.pid
    # Warm-up: one session alone (the first one pays for the app's imports and the data load).
    t_warm = time.perf_counter()
    warm = BrowserSession(server.ws_url, seed=n, t0=t_warm, label=f"warm-up (seed {n})")
    warm_task = asyncio.create_task(warm.run())
    await _wait_all([warm], [warm_task], timeout, stall)
    await asyncio.sleep(1.0)
    out["rss_one_session_mb"] = family_memory(pid).get("VmRSS")
    log(f"warm-up session: epoch 5 after {warm.result.finish_time or float('nan'):.1f} s; RSS {out['rss_one_session_mb']:.0f} MB")

    # The load: n sessions at once, and a fresh page in Chromium once they have all pressed Train.
    t0 = time.perf_counter()
    clients = [BrowserSession(server.ws_url, seed=i, t0=t0) for i in range(n)]
    start_page, launched = asyncio.Event(), asyncio.Event()
    page_task = asyncio.create_task(page_load(server.url, launched, start_page, clients)) if page_check else None
    if page_task is not None:  # Chromium starts before the load; the page opens during it
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(launched.wait(), 60)
        t0 = time.perf_counter()
        for c in clients:
            c.t0 = t0
    watch_stop = asyncio.Event()
    watcher = asyncio.create_task(board_watch(BOARD["url"], watch_stop, lambda: t0)) if BOARD.get("url") else None
    while watcher is not None and not BOARD.get("watching") and not watcher.done():
        await asyncio.sleep(0.1)
    if watcher is not None:
        t0 = time.perf_counter()
        for c in clients:
            c.t0 = t0
    cpu_before, client_cpu_before = proc_cpu_seconds(pid), _self_cpu()
    tasks = [asyncio.create_task(c.run()) for c in clients]
    peak_sampled = 0.0

    async def sample() -> None:
        nonlocal peak_sampled
        while True:
            peak_sampled = max(peak_sampled, family_memory(pid).get("VmRSS", 0.0))
            if not start_page.is_set() and (all(c.clicked.is_set() or c.result.error for c in clients) or time.perf_counter() - t0 > 60):
                start_page.set()
            await asyncio.sleep(0.1)

    sampler = asyncio.create_task(sample())
    log(f"{n} sessions started")
    await _wait_all(clients, tasks, timeout, stall, log=log)
    out["load_wall_s"] = time.perf_counter() - t0
    if watcher is not None:
        await asyncio.sleep(3.0)  # the last epochs reach the board
        watch_stop.set()
        out["board_watch"] = await watcher
    out["server_cpu_s"] = proc_cpu_seconds(pid) - cpu_before
    out["client_cpu_s"] = _self_cpu() - client_cpu_before
    start_page.set()
    if page_task is not None:
        out["page_load"] = page = await page_task
        if "opened_at" in page:
            page["opened_at_s"] = page.pop("opened_at") - t0
    await asyncio.sleep(1.0)
    sampler.cancel()
    status = family_memory(pid)
    out["rss_after_mb"] = status.get("VmRSS")
    out["vmhwm_mb"] = status.get("VmHWM")
    out["processes"] = int(status["processes"])
    out["cpu_total_s"] = sum(proc_cpu_seconds(p) for p in family(pid))
    out["rss_peak_sampled_mb"] = peak_sampled
    out["sessions_alive_at_rss_after"] = 1 + n + (1 if page_check else 0)  # warm-up, the load, the Chromium page
    for task in [*tasks, warm_task]:
        task.cancel()
    await asyncio.gather(*tasks, warm_task, return_exceptions=True)
    out["warmup"] = asdict(warm.result)
    out["results"] = [asdict(c.result) for c in clients] + [asdict(warm.result)]


async def _wait_all(clients: list[BrowserSession], tasks: list[asyncio.Task], timeout: float, stall: float = 180.0, log=None) -> None:
    """Until every client has settled or failed, the timeout, or `stall` seconds without any progress.

    Progress is any run started or finished, or an epoch line shown, in any session; a progress line every 10 s.
    """
    started = time.perf_counter()
    deadline = started + timeout
    last_note = last_progress = started
    progress = -1
    reason = f"timeout after {timeout:.0f} s"
    while time.perf_counter() < deadline:
        pending = [c for c, t in zip(clients, tasks) if not c.settled.is_set() and not t.done() and c.result.error is None]
        if not pending:
            return
        rs = [c.result for c in clients]
        now_progress = sum(r.full_runs + r.fragment_runs + r.finished_runs + len(r.epoch_times) for r in rs)
        if now_progress != progress:
            progress, last_progress = now_progress, time.perf_counter()
        elif time.perf_counter() - last_progress > stall:
            reason = f"stalled: no run started or finished and no epoch shown in any session for {stall:.0f} s"
            break
        if log is not None and time.perf_counter() - last_note > 10:
            last_note = time.perf_counter()
            log(f"  {time.perf_counter() - started:5.0f} s: {len(pending)} sessions unfinished; first run done {sum(r.first_run is not None for r in rs)}, "
                f"clicked {sum(r.clicked is not None for r in rs)}, epochs shown {sum(len(r.epoch_times) for r in rs)}; runs started "
                f"{sum(r.full_runs for r in rs)} full + {sum(r.fragment_runs for r in rs)} fragment, finished {sum(r.finished_runs for r in rs)}; "
                f"reruns sent {sum(r.reruns_sent for r in rs)}, messages received {sum(r.messages for r in rs)}")
        await asyncio.sleep(0.1)
    for c in clients:
        if not c.settled.is_set() and c.result.error is None:
            c.result.error = f"{reason} ({len(c.result.epoch_times)} epochs seen)"


def _self_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


# ---------------------------------------------------------------- the report


def verdict(ok: bool) -> str:
    return "PASS" if ok else "MISS"


def report(out: dict) -> str:
    n = out["sessions"]
    results = [r for r in out["results"] if not r["label"].startswith("warm-up")]
    lines = [f"Classroom load: {n} sessions training at once on one `streamlit run dashboard.py` "
             f"({out['cpus']} CPUs; load average {out['load_avg_start'][0]:.1f} at the start, {out['load_avg_end'][0]:.1f} at the end)"]
    finished = [r for r in results if EPOCHS in {int(k) for k in r["epoch_times"]} and not r["error"] and not r["exceptions"]]
    lines.append(f"\nSessions finished: {len(finished)} / {n}   {'PASS' if len(finished) == n else 'FAIL'}")
    for r in out["results"]:
        if r["error"] or r["exceptions"]:
            lines.append(f"  {r['label']}: {r['error'] or ''} {'; '.join(r['exceptions'])}")
    if out["crosstalk"]:
        lines.append(f"Cross-talk: {len(out['crosstalk'])} lines differ from the seed trained alone   FAIL")
        for p in out["crosstalk"][:10]:
            lines.append(f"  {p['session']} epoch {p['epoch']}: saw {p['seen']!r}, alone {p['expected']!r}")
        if "crosstalk_vs_default_threads" in out:
            lines.append(f"  against a reference with default BLAS threads: {len(out['crosstalk_vs_default_threads'])} lines differ")
    else:
        checked = sum(len(v) for r in out["results"] for v in r["lines"].values())
        if out["failed"]:
            lines.append(f"Cross-talk: none among the {checked} lines seen, but not every session finished: not conclusive")
        else:
            lines.append(f"Cross-talk: none: all {checked} lines seen (untrained + epochs 1-{EPOCHS}, every version, {n} sessions + "
                         f"warm-up) equal each seed trained alone (one BLAS thread)   PASS")
    stores = [r["label"] for r in out["results"] if r["store_problem"]]
    if stores:
        lines.append(f"Run store problem shown to {len(stores)} sessions: {', '.join(stores[:5])}")

    ends = [r["epoch_times"][str(EPOCHS)] if str(EPOCHS) in r["epoch_times"] else r["epoch_times"].get(EPOCHS) for r in finished]
    ends = [e for e in ends if e is not None]
    if ends:
        per_session = [e - r["connected"] for r, e in zip(finished, ends)]
        per_click = [e - r["clicked"] for r, e in zip(finished, ends)]
        first_runs = [r["first_run"] - r["connected"] for r in finished]
        lines.append(f"\nTime: start of the load -> last session's epoch {EPOCHS}: {max(ends):.1f} s")
        lines.append(f"  per session, page open -> epoch {EPOCHS}: median {statistics.median(per_session):.1f} s, max {max(per_session):.1f} s")
        median_click, max_click = statistics.median(per_click), max(per_click)
        lines.append(f"  per session, Train click -> epoch {EPOCHS}: median {median_click:.1f} s (target <= {TARGET_MEDIAN_S:.0f} s "
                     f"{verdict(median_click <= TARGET_MEDIAN_S)}), max {max_click:.1f} s (target <= {TARGET_MAX_S:.0f} s {verdict(max_click <= TARGET_MAX_S)})")
        lines.append(f"  first page run (open -> script finished): median {statistics.median(first_runs):.1f} s, max {max(first_runs):.1f} s")
    warm = out["warmup"]
    if warm["clicked"] is not None and warm["epoch_times"]:
        w5 = warm["epoch_times"].get(EPOCHS) or warm["epoch_times"].get(str(EPOCHS))
        if w5 is not None:
            lines.append(f"  alone (warm-up session, first of the server): Train click -> epoch {EPOCHS}: {w5 - warm['clicked']:.1f} s")
    lines.append(f"  CPU during the load: server {out['server_cpu_s']:.0f} s, the {n} emulated clients (this process) {out['client_cpu_s']:.0f} s, "
                 f"over {out['load_wall_s']:.0f} s of wall time")
    sent = sum(r["reruns_sent"] for r in results)
    runs = sum(r["fragment_runs"] for r in results)
    lines.append(f"  rerun requests sent {sent}, fragment runs done {runs}, full runs {sum(r['full_runs'] for r in results)}, "
                 f"{sum(r['bytes_received'] for r in results) / 1e6:.0f} MB received")

    r0, r1, rn, hwm = out["rss_startup_mb"], out["rss_one_session_mb"], out["rss_after_mb"], out["vmhwm_mb"]
    alive = out["sessions_alive_at_rss_after"]
    growth = (rn - r1) / (alive - 1)
    growth_brief = (rn - r1) / (n - 1) if n > 1 else float("nan")
    lines.append(f"\nMemory of the server and its {out.get('processes', 1) - 1} training workers, summed (/proc/PID/status):")
    lines.append(f"  RSS after start-up (no session) {r0:.0f} MB; after 1 session trained {r1:.0f} MB; after the load {rn:.0f} MB "
                 f"({alive} sessions alive: warm-up + {n}{' + the Chromium page' if alive > n + 1 else ''})")
    lines.append(f"  peak (sum of VmHWM) {hwm:.0f} MB (sampled peak of the summed RSS {out['rss_peak_sampled_mb']:.0f} MB)   target <= {TARGET_PEAK_MB:.0f} MB   {verdict(hwm <= TARGET_PEAK_MB)}")
    lines.append(f"  per extra session (RSS_after - RSS_1) / {alive - 1} = {growth:.1f} MB   target <= {TARGET_PER_SESSION_MB:.0f} MB   "
                 f"{verdict(growth <= TARGET_PER_SESSION_MB)}  (/ (N-1) = {n - 1}: {growth_brief:.1f} MB)")

    if "board" in out:
        b = out["board"]
        d = sorted(b["delays"])
        if d:
            late = max(d)
            lines.append(f"\nClass board (one Chromium tab at 1920x1080 on the board page, {b['entries']} entries): a student's epoch on "
                         f"the projector {statistics.median(d):.2f} s (median) and {late:.2f} s (max) after the student's own page showed it; "
                         f"{b['shown']} epochs seen   target <= {TARGET_BOARD_S:.0f} s {verdict(late <= TARGET_BOARD_S)}")
        else:
            lines.append(f"\nClass board: no epoch seen on the projector's tab ({b.get('error')})")
        for m in b["missing"]:
            lines.append(f"  {m}")
    page = out.get("page_load")
    if page is None:
        lines.append("\nFresh page during the load: not measured (--no-page)")
    elif page.get("loaded"):
        lines.append(f"\nFresh page during the load (Chromium, opened {page['opened_at_s']:.1f} s into the load with "
                     f"{page['sessions_training_at_open']} sessions training, {page['sessions_training_at_ready']} still at ready): "
                     f"Train button visible after {page['wall_s']:.1f} s (page clock {page['page_ms'] / 1000:.1f} s)   loaded")
    else:
        lines.append(f"\nFresh page during the load: did NOT load: {page.get('error')}")
    if out["server_log_errors"]:
        lines.append(f"\nServer log lines mentioning errors/warnings ({len(out['server_log_errors'])}):")
        lines += [f"  {line[:200]}" for line in out["server_log_errors"][:10]]
    if not out.get("server_alive_at_end", True):
        lines.append("The server had exited by the end of the load!")
    lines.append(f"\nResult: {'OK' if out['ok'] else 'FAILED'}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sessions", type=int, default=30, help="browser sessions training at once (default 30)")
    parser.add_argument("--timeout", type=float, default=900.0, help="seconds for all sessions to finish (default 900)")
    parser.add_argument("--stall", type=float, default=180.0,
                        help="give up when no session makes progress (a run, an epoch line) for this many seconds (default 180)")
    parser.add_argument("--data-dir", help="data root holding fashion-mnist/ (default $SOFTMAX_DATA_DIR)")
    parser.add_argument("--no-page", action="store_true", help="skip the page load in Chromium")
    parser.add_argument("--board", action="store_true", help="every student joins a class board; a Chromium tab shows it (the teacher's link, drawn before the students start) and the delay is reported")
    parser.add_argument("--board-screenshot", metavar="PNG", help="with --board: save the projector's 1920x1080 view at the end here")
    parser.add_argument("--json", help="write every figure and per-session record to this file")
    args = parser.parse_args(argv)
    if args.sessions < 1:
        parser.error("--sessions must be at least 1")
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # the finally blocks end the server
    try:
        out = run_load(args.sessions, args.data_dir, args.timeout, page_check=not args.no_page,
                       log=lambda text: print(text, flush=True), stall=args.stall, board=args.board,
                       board_screenshot=args.board_screenshot)
    except RuntimeError as err:
        print(f"load_classroom: {err}", file=sys.stderr)
        return 2
    if args.json:  # first: the figures are kept even if the report cannot be printed
        Path(args.json).write_text(json.dumps(out, indent=1, default=str))
    print()
    print(report(out))
    if args.json:
        print(f"(figures written to {args.json})")
    return 0 if out["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
