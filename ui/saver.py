"""Saving runs in the background: the page hands a run over and never waits for the store (no Streamlit here).

One `Saver` per store and process (`saver_for`); its one thread writes, and retries with backoff while the
store fails (locked by another process, unreachable, a full disk), until it works again. Per (owner, run id)
only the newest state waits to be written: memory stays bounded, and the newest state wins. `delete_all`
waits in the same queue, so an owner's saves before it are dropped and those after it are written after it.
"""

from __future__ import annotations

import atexit
import itertools
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from .run_store import InvalidRun, RunStore, RunStoreError, open_store

SAVER_BUSY_TIMEOUT = 0.25  # seconds the saver's connection waits for another writer's lock before backing off
FIRST_BACKOFF = 0.2  # seconds before the first retry; doubled after every failure in a row ...
MAX_BACKOFF = 5.0  # ... up to this
EXIT_FLUSH = 5.0  # seconds a stopping server gives the saver to write what is still waiting
RETRYING = "saving is retried every few seconds, and this tab's runs are saved once it works"

log = logging.getLogger(__name__)


@dataclass
class _Work:
    """One owner's waiting work: a delete_all (done first), then the newest state of each run, oldest first."""

    clear: int = 0  # sequence number of a waiting delete_all (0: none)
    saves: dict[int, tuple[int, dict]] = field(default_factory=dict)  # run id -> (sequence number, newest state)

    def size(self) -> int:
        return bool(self.clear) + len(self.saves)


class Saver:
    """Writes runs to a RunStore in one background thread; save() and delete_all() return at once."""

    def __init__(self, store: RunStore | Callable[[], RunStore], first_backoff: float = FIRST_BACKOFF, max_backoff: float = MAX_BACKOFF) -> None:
        # a callable is called in the saver's thread, so even opening the store never holds up a page
        self._store, self._open = (store, None) if isinstance(store, RunStore) else (None, store)
        self.first_backoff, self.max_backoff = first_backoff, max_backoff
        self._cond = threading.Condition()
        self._work: dict[str, _Work] = {}  # owner -> waiting work; owners are served in this order
        self._seq = itertools.count(1)
        self._in_flight = False
        self._store_problem = ""  # why the last attempt failed ("" when it succeeded)
        self._problems: dict[str, str] = {}  # owner -> why the owner's last attempt failed
        self._notices: dict[str, str] = {}  # owner -> what the store dropped to keep its cap
        self._wake = False
        self._closed = False
        self._thread: threading.Thread | None = None

    def save(self, owner: str, run: dict) -> None:
        """Queue the newest state of one run (a `Run.to_dict()` dict, not changed afterwards); returns at once."""
        key = _key(run)
        with self._cond:
            work = self._queue(owner)
            work.saves.pop(key, None)  # re-queued at the end: an older waiting state is dropped
            work.saves[key] = (next(self._seq), run)

    def delete_all(self, owner: str) -> None:
        """Queue the deletion of all the owner's runs, after what is being written and before later saves."""
        with self._cond:
            work = self._queue(owner)
            work.saves.clear()  # they would be deleted anyway
            work.clear = next(self._seq)

    def problem(self, owner: str) -> str:
        """Why the owner's runs are not saved yet ("" when the last attempt for them, or the store's, succeeded)."""
        with self._cond:
            if owner in self._problems:
                return self._problems[owner]
            return self._store_problem if owner in self._work else ""

    def notice(self, owner: str) -> str:
        """What the store dropped to keep its cap on runs per owner ("" when nothing)."""
        with self._cond:
            return self._notices.get(owner, "")

    def pending(self, owner: str | None = None) -> int:
        """How many writes wait (for one owner, or for all): at most one per (owner, run) plus one delete_all."""
        with self._cond:
            if owner is not None:
                return self._work[owner].size() if owner in self._work else 0
            return sum(work.size() for work in self._work.values())

    def load(self, owner: str, read: Callable[[str], list[dict]]) -> list[dict]:
        """read(owner) (the store's runs), with what still waits to be written on top: a reload finds its newest runs."""
        with self._cond:  # taken before the read: a write that ends meanwhile is in the read or in this copy
            work = self._work.get(owner)
            cleared, waiting = (bool(work.clear), {i: run for i, (_, run) in work.saves.items() if isinstance(i, int)}) if work else (False, {})
        runs = {} if cleared else {_key(run): run for run in read(owner)}
        runs.update(waiting)
        return [runs[i] for i in sorted(runs)]

    def flush(self, timeout: float) -> bool:
        """Retry now, and wait until nothing waits (True) or timeout seconds pass (False)."""
        deadline = time.monotonic() + timeout
        with self._cond:
            self._wake = True
            self._cond.notify_all()
            while self._work or self._in_flight:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._cond.wait(remaining)
            return True

    def close(self, timeout: float = EXIT_FLUSH) -> bool:
        """Write what waits (up to timeout seconds), stop the thread and close a store the saver opened; True when nothing was left."""
        flushed = self.flush(timeout)
        with self._cond:
            self._closed = True
            self._cond.notify_all()
            thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)
        if self._open is not None and self._store is not None:
            self._store.close()
        return flushed

    # --- the saver's thread ------------------------------------------------------------------------------

    def _queue(self, owner: str) -> _Work:
        """The owner's work (called under the lock); starts the thread on first use."""
        if self._closed:
            raise RuntimeError("the saver is closed")
        if self._thread is None:
            self._thread = threading.Thread(target=self._serve, name="run-store-saver", daemon=True)
            self._thread.start()
            atexit.register(self.close)
        self._cond.notify_all()
        return self._work.setdefault(owner, _Work())

    def _serve(self) -> None:
        backoff = 0.0
        while True:
            with self._cond:
                while not self._work and not self._closed:
                    self._cond.wait()
                if self._closed:
                    return
                owner, work = next(iter(self._work.items()))
                run_id, (seq, run) = (None, (work.clear, None)) if work.clear else next(iter(work.saves.items()))
                self._in_flight = True
            try:
                dropped, error, retry = self._write(owner, run), "", False
            except InvalidRun as err:  # this save can never work: drop it
                dropped, error, retry = [], str(err), False
            except RunStoreError as err:
                dropped, error, retry = [], f"{str(err).rstrip('.')}; {RETRYING}.", True
            except Exception as err:  # noqa: BLE001 -- a bug must not stop the saving of everyone's runs
                log.exception("saving a run failed")
                dropped, error, retry = [], f"A run was not saved because of an error ({type(err).__name__}).", False
            with self._cond:
                self._in_flight = False
                self._settle(owner, run_id, seq, done=not retry)
                if error:
                    self._problems[owner] = error
                    if retry:
                        self._store_problem = error
                        if owner in self._work:  # the others get a turn: one failing owner does not stall them all
                            self._work[owner] = self._work.pop(owner)
                else:
                    self._problems.pop(owner, None)
                    self._store_problem = ""
                if dropped:
                    ids = ", ".join(map(str, dropped))
                    self._notices[owner] = (f"This server keeps {self._store_limit()} runs per link: the oldest ended "
                                            f"{'run' if len(dropped) == 1 else 'runs'} ({ids}) {'was' if len(dropped) == 1 else 'were'} deleted from it.")
                self._cond.notify_all()
                backoff = min(self.max_backoff, backoff * 2 or self.first_backoff) if retry else 0.0
                if retry:
                    self._wake = False
                    deadline = time.monotonic() + backoff
                    while not self._wake and not self._closed and (remaining := deadline - time.monotonic()) > 0:
                        self._cond.wait(remaining)

    def _write(self, owner: str, run: dict | None) -> list[int]:
        """One store call (outside the lock): delete_all when run is None, else save; the ids the store dropped."""
        if self._store is None:
            self._store = self._open()
        if run is None:
            self._store.clear(owner)
            return []
        return self._store.save(owner, run) or []

    def _settle(self, owner: str, run_id: int | None, seq: int, done: bool) -> None:
        """Take a finished write off the queue unless a newer one for the same run (or a delete_all) replaced it."""
        work = self._work.get(owner)
        if work is None or not done:
            return
        if run_id is None:
            if work.clear == seq:
                work.clear = 0
        elif run_id in work.saves and work.saves[run_id][0] == seq:
            del work.saves[run_id]
        if not work.size():
            del self._work[owner]

    def _store_limit(self) -> int:
        return getattr(self._store, "max_runs", 0)


def _key(run: object) -> object:
    """The run's id as a queue key (junk too: the store refuses it in the saver's thread, with a message)."""
    run_id = run.get("id") if isinstance(run, dict) else None
    return run_id if isinstance(run_id, int) else repr(run_id)


_savers: dict[str, Saver] = {}
_savers_lock = threading.Lock()


def saver_for(location: str | None = None) -> Saver:
    """The process's one Saver for the store at location (as open_store takes it; None: $SOFTMAX_RUNS_DB or the default).

    Its store is opened in the saver's thread with a short busy timeout: the saver waits for the store, the page never does.
    """
    key = location or ""
    with _savers_lock:
        if key not in _savers:
            _savers[key] = Saver(lambda: open_store(location or None, busy_timeout=SAVER_BUSY_TIMEOUT))
        return _savers[key]
