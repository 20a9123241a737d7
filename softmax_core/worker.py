"""A training worker process: trains slices of epochs sent by the engine (started by softmax_core.engine).

It holds no session's state between slices: each request carries the training state in and each
answer carries it out, so any worker can train any slice and a dead worker loses at most one slice.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from multiprocessing.connection import Connection

import numpy as np

from .model import SoftmaxRegression
from .shared import SharedData
from .training import EpochProgress, EpochRecord, TrainConfig, Trainer, TrainingDiverged, TrainState

NICENESS = 10  # workers yield the cores to the page server, which has forty pages to keep moving
# (measured: at nice 3, 30 emulated sessions went from click to epoch 5 in median 42.5 s instead of 13-16 s:
# a page server that waits for the cores draws every page late; 10 real tabs gained little, 69 s against 75 s)


@dataclass
class Slice:
    """A request: train `state` on `data` for up to `seconds` (the epoch `epoch`, or a new one of schedule index `index`)."""

    data: SharedData
    state: TrainState
    config: TrainConfig
    index: int  # the epoch's place in the run's schedule, from 0
    epoch: EpochProgress | None  # the epoch on its way, or None to begin epoch `index`
    seconds: float


@dataclass
class SliceResult:
    """An answer: the state after the slice, and the epoch on its way or the record of the finished one."""

    state: TrainState
    epoch: EpochProgress | None  # None once the epoch is finished (or diverged)
    record: EpochRecord | None = None
    diverged: str = ""  # why, when the loss stopped being finite (the engine goes back to the state before the epoch)
    error: str = ""  # an unexpected error (the state is then as before the slice)
    samples: int = 0  # samples in an epoch


class SliceTrainer:
    """Trains slices on memory-mapped data sets, one Trainer kept per data set."""

    def __init__(self) -> None:
        self._trainers: dict[str, Trainer] = {}

    def _trainer(self, data: SharedData, state: TrainState) -> Trainer:
        trainer = self._trainers.get(data.folder)
        if trainer is None:
            arrays = data.arrays()
            model = SoftmaxRegression(state.W, state.b)
            trainer = Trainer(model, arrays["train_images"], arrays["train_labels"], arrays["test_images"], arrays["test_labels"],
                              np.random.default_rng())
            self._trainers[data.folder] = trainer
        trainer.state = state
        return trainer

    def run(self, job: Slice) -> SliceResult:
        """Train one slice; never raises (an error is reported in the result)."""
        try:
            trainer = self._trainer(job.data, job.state)
            epoch = job.epoch or trainer.begin_epoch(job.config, job.index)
            trainer.train_batches(job.config, epoch, until=time.perf_counter() + job.seconds)
            if not trainer.model.is_finite():  # no need to finish an epoch that has already blown up
                raise TrainingDiverged(trainer.epochs_done + 1, epoch.lr, job.config.softmax)
            if not epoch.finished:
                return SliceResult(trainer.state, epoch)
            record = trainer.end_epoch(job.config, epoch)
            return SliceResult(trainer.state, None, record, samples=epoch.total)
        except TrainingDiverged as err:
            return SliceResult(job.state, None, diverged=str(err))
        except Exception as err:  # noqa: BLE001 -- the engine reports it on the page; the worker goes on
            return SliceResult(job.state, job.epoch, error=f"{type(err).__name__}: {err}")


def serve(conn: Connection) -> None:
    """Answer Slice requests on conn until it closes or sends None."""
    trainer = SliceTrainer()
    while True:
        try:
            request = conn.recv()
        except (EOFError, OSError):
            return
        if request is None:
            return
        conn.send(trainer.run(request))


def main(argv: list[str]) -> int:
    """Entry point of a worker process: argv[0] is the file descriptor of its connection to the engine."""
    os.nice(NICENESS)
    serve(Connection(int(argv[0])))
    return 0

