"""Training for many sessions on one server: a pool of worker processes that takes fair turns.

A session hands its training to the engine as a `Job` (state in) and reads what comes back (records
out); it never waits on a worker or holds a lock while one computes. The engine cuts every job into
slices of at most `SLICE_SECONDS` of batches and hands the next slice to the job with the least work
left, unless a job has waited `STARVE_SECONDS` for its turn, which then goes first. So a run at batch
size 1 or of 100 epochs never holds up a classmate's five epochs, it still moves at least every few
seconds, and when a whole class presses Train at once, half of it sees epoch 5 in half the time. Each slice carries the training state to a
worker and back: any worker can train any slice, and a worker that dies costs one slice (its job
stops with its finished epochs kept; a new worker takes its place).
"""

from __future__ import annotations

import atexit
import contextlib
import math
import os
import socket
import subprocess
import sys
import threading
import time
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Protocol

from .shared import SharedData
from .training import EpochRecord, TrainConfig, TrainState
from .worker import Slice, SliceResult

ENV_WORKERS = "SOFTMAX_WORKERS"  # how many worker processes (default: one per core)
SLICE_SECONDS = 0.25  # the longest turn a job gets before the next job's
STARVE_SECONDS = 4.0  # a job that has waited this long for its next turn is starving
STARVE_SHARE = 4  # every STARVE_SHARE-th turn goes to the longest-starving job (the others: least work left first)
DRAW_WAIT = 0.15  # an epoch waits this long at most for the page to draw the one before (one chart point each)
# Work left is estimated from the samples and batches still to train (seconds on one core, roughly): small
# batches cost far more per sample than large ones.
SAMPLE_COST = 1.5e-6
BATCH_COST = 2e-5
_THREAD_ENV = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")  # one core per worker: the pool is the parallelism


def default_workers() -> int:
    """The pool's size: $SOFTMAX_WORKERS when it is a whole number >= 1, else the number of cores."""
    text = os.environ.get(ENV_WORKERS, "").strip()
    if text.isdigit() and int(text) >= 1:
        return min(int(text), 64)
    return max(1, os.cpu_count() or 1)


class JobListener(Protocol):
    """Told about a job's progress, in the engine's thread: it must be quick and must not wait."""

    def on_epoch(self, job: Job, record: EpochRecord) -> None:
        """An epoch finished; job.committed is the state after it."""

    def on_end(self, job: Job) -> None:
        """The job finished, diverged or failed (not called for cancel: the caller of cancel knows)."""


class Job:
    """One run's request to train epochs `start` .. config.epochs - 1 of its schedule, from `state`.

    The page reads `status`, `records`, `committed`, `progress` and `running`; the engine writes them.
    """

    def __init__(self, data: SharedData, state: TrainState, config: TrainConfig, start: int = 0, pace: float = 0.0,
                 listener: JobListener | None = None) -> None:
        self.data = data
        self.config = config
        self.start = start
        self.pace = pace  # seconds an epoch takes at least (slow motion for a class)
        self.listener = listener
        self.committed = state  # after the last finished epoch; replaced, never changed in place
        self.records: list[EpochRecord] = []
        self.status = "queued"  # queued, training, finished, stopped, diverged, failed
        self.message = ""
        self.progress = (0, 0)  # samples done in the epoch on its way, and in all (0 before its first slice)
        self.running = (math.nan, math.nan)  # loss and accuracy so far in the epoch on its way
        self.stopped_during: tuple[int, int, int] | None = None  # (epoch, samples done, samples) when stopped mid-epoch
        self.epoch_began: float | None = None  # time.monotonic() of the first slice of the epoch on its way
        self.lock = threading.RLock()  # held for microseconds: applying a result, or cancelling
        self._current = state  # the state the next slice starts from (the engine's)
        self._epoch = None  # the epoch on its way (EpochProgress), the engine's
        self._began = time.monotonic()
        self._paced_until = 0.0  # time.monotonic() before which the pace holds its next epoch back
        self._draw_until = 0.0  # ... and the page not having drawn its last epoch yet (cleared once it has)
        self._waiting_since = time.monotonic()  # when its last turn ended (or it was submitted)
        self._samples = 60000  # per epoch, until the first slice says
        self._drawn = -1
        self._wake = lambda: None

    @property
    def active(self) -> bool:
        """True until the job has finished, stopped, diverged or failed."""
        return self.status in ("queued", "training")

    @property
    def epochs_done(self) -> int:
        """Epochs this job has finished."""
        return len(self.records)

    @property
    def epochs_asked(self) -> int:
        """Epochs this job was asked to train."""
        return self.config.epochs - self.start

    def cancel(self, message: str = "by you") -> bool:
        """Stop now (the epoch on its way is undone); False when the job had already ended. Never waits."""
        with self.lock:
            if not self.active:
                return False
            done, total = self.progress
            if self._epoch is not None and 0 < done < total:
                self.stopped_during = (self.committed.epochs_done + 1, done, total)
            self.status, self.message = "stopped", message
            self._epoch = None
            return True

    def work_left(self) -> float:
        """Roughly how many seconds of one core this job still needs."""
        epochs = self.epochs_asked - len(self.records)
        samples = epochs * self._samples - self.progress[0]
        return samples * SAMPLE_COST + samples / min(self.config.batch_size, self._samples) * BATCH_COST

    def drawn(self, epoch: int) -> None:
        """The page has shown this epoch: the next one need not wait for it."""
        with self.lock:
            if epoch <= self._drawn:
                return
            self._drawn = epoch
            if self.records and epoch >= self.records[-1].epoch:
                self._draw_until = 0.0
        self._wake()

    @property
    def _not_before(self) -> float:
        """time.monotonic() before which the job takes no turn."""
        return max(self._paced_until, self._draw_until)

    # ------------------------------------------------------------------ the engine's side

    def _request(self, seconds: float) -> Slice | None:
        with self.lock:
            if not self.active:
                return None
            self.status = "training"
            if self._epoch is None:
                self.epoch_began = time.monotonic()
            index = self.start + len(self.records)
            return Slice(self.data, self._current, self.config, index, self._epoch, seconds)

    def _apply(self, result: SliceResult) -> bool:
        """Take a worker's answer; True when there is more to train."""
        with self.lock:
            if not self.active:
                return False  # cancelled meanwhile: the slice is dropped
            if result.error or result.diverged:
                self._end("failed" if result.error else "diverged",
                          f"by an error in training: {result.error}" if result.error else result.diverged)
                return False
            self._current, self._epoch = result.state, result.epoch
            if result.epoch is not None:
                self._samples = result.epoch.total
                self.progress = (result.epoch.done, result.epoch.total)
                self.running = result.epoch.running()
                return True
            record = result.record
            self._samples = result.samples or self._samples
            self.committed = result.state
            self.records.append(record)
            self.progress, self.running = (0, result.samples), (math.nan, math.nan)  # the next epoch's, not yet begun
            finished = len(self.records) >= self.epochs_asked
            if finished:
                self.status = "finished"
            else:
                self._paced_until = self._began + self.pace * len(self.records)
                self._draw_until = time.monotonic() + DRAW_WAIT if self._drawn < record.epoch else 0.0
            if self.listener is not None:
                self.listener.on_epoch(self, record)
            if finished and self.listener is not None:
                self.listener.on_end(self)
            return not finished

    def _fail(self, message: str) -> None:
        with self.lock:
            if self.active:
                self._end("failed", message)

    def _end(self, status: str, message: str) -> None:
        """Stop with this status: back to the state after the last finished epoch, and tell the listener."""
        self.status, self.message = status, message
        self._current, self._epoch = self.committed, None
        if self.listener is not None:
            self.listener.on_end(self)


class WorkerDied(Exception):
    """The worker process ended (killed, out of memory) while it trained a slice."""


class _Worker:
    """One worker process and its connection."""

    def __init__(self) -> None:
        self.process: subprocess.Popen | None = None
        self.conn: Connection | None = None
        self.start()

    def start(self) -> None:
        ours, theirs = socket.socketpair()
        package_root = str(Path(__file__).resolve().parent.parent)
        env = {**os.environ, **dict.fromkeys(_THREAD_ENV, "1")}
        env["PYTHONPATH"] = os.pathsep.join(p for p in (package_root, os.environ.get("PYTHONPATH", "")) if p)
        with theirs:
            self.process = subprocess.Popen(
                [sys.executable, "-c", f"import sys; from softmax_core.worker import main; sys.exit(main([{theirs.fileno()!r}]))"],
                pass_fds=(theirs.fileno(),), env=env, stdin=subprocess.DEVNULL, close_fds=True,
            )
        self.conn = Connection(ours.detach())

    def run(self, request: Slice) -> SliceResult:
        try:
            self.conn.send(request)
            return self.conn.recv()
        except (EOFError, OSError) as err:
            code = self.process.poll()
            raise WorkerDied(f"exit code {code}" if code is not None else type(err).__name__) from None

    def restart(self) -> None:
        self.stop()
        self.start()

    def stop(self) -> None:
        with contextlib.suppress(OSError):
            self.conn.close()
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(2)


class Engine:
    """A pool of worker processes training the submitted jobs in fair turns (slices, least work left first, none starved)."""

    def __init__(self, workers: int | None = None, slice_seconds: float = SLICE_SECONDS, starve_seconds: float = STARVE_SECONDS) -> None:
        self.slice_seconds = slice_seconds
        self.starve_seconds = starve_seconds
        self._queue: list[Job] = []  # jobs waiting for their next turn
        self._active: set[Job] = set()
        self._cond = threading.Condition()
        self._closed = False
        self._in_flight = 0  # slices being trained right now
        self._turns = 0  # turns handed out (every STARVE_SHARE-th may go to a starving job)
        self._workers = [_Worker() for _ in range(workers or default_workers())]
        self._threads = [threading.Thread(target=self._serve, args=(w,), name=f"engine-{i}", daemon=True)
                         for i, w in enumerate(self._workers)]
        for thread in self._threads:
            thread.start()
        atexit.register(self.close)

    def submit(self, job: Job) -> Job:
        """Queue a job; returns at once."""
        job._wake = self._notify
        with self._cond:
            self._active.add(job)
            self._queue.append(job)
            self._cond.notify()
        return job

    def training(self) -> int:
        """How many jobs are queued or training."""
        with self._cond:
            self._active = {job for job in self._active if job.active}
            return len(self._active)

    def idle(self) -> bool:
        """True when no slice is being trained (every answer, even for a stopped job, has come back)."""
        with self._cond:
            return self._in_flight == 0

    def worker_pids(self) -> list[int]:
        """The worker processes' ids (for tests and benchmarks)."""
        return [w.process.pid for w in self._workers]

    def close(self) -> None:
        """Stop the workers; queued jobs are left as they are."""
        with self._cond:
            if self._closed:
                return
            self._closed = True
            self._cond.notify_all()
        for worker in self._workers:
            worker.stop()

    def _notify(self) -> None:
        with self._cond:
            self._cond.notify_all()

    def _take(self) -> Job | None:
        """The next job whose turn it is; waits for one. None once closed.

        The job with the least work left goes first: a class that presses Train together then sees its runs
        finish one after another from the first seconds on, rather than all at the end. So that no job waits
        for ever behind shorter ones, every STARVE_SHARE-th turn goes to the job that has waited longest, once
        it has waited `starve_seconds`.
        """
        with self._cond:
            while not self._closed:
                now = time.monotonic()
                self._queue = [job for job in self._queue if job.active]  # stopped while they waited
                ready = [job for job in self._queue if job._not_before <= now]
                if ready:
                    self._turns += 1
                    starving = [job for job in ready if now - job._waiting_since >= self.starve_seconds]
                    if starving and self._turns % STARVE_SHARE == 0:
                        job = min(starving, key=lambda j: j._waiting_since)
                    else:
                        job = min(ready, key=Job.work_left)
                    self._queue.remove(job)
                    self._in_flight += 1
                    return job
                self._cond.wait(min((job._not_before - now for job in self._queue), default=None))
            return None

    def _serve(self, worker: _Worker) -> None:
        while (job := self._take()) is not None:
            again = False
            try:
                again = self._turn(worker, job)
            finally:
                with self._cond:
                    self._in_flight -= 1
                    if again:
                        job._waiting_since = time.monotonic()
                        self._queue.append(job)
                    self._cond.notify_all()

    def _turn(self, worker: _Worker, job: Job) -> bool:
        """Train one slice of job on worker; True when the job has more to train."""
        request = job._request(self.slice_seconds)
        if request is None:
            return False
        try:
            result = worker.run(request)
        except Exception as err:  # noqa: BLE001 -- a dead worker (or a broken answer) must not end this thread
            if not self._closed:
                why = str(err) if isinstance(err, WorkerDied) else f"{type(err).__name__}: {err}"
                job._fail(f"by an error: the training process stopped unexpectedly ({why}); the finished epochs are kept")
                worker.restart()
            return False
        return job._apply(result)
