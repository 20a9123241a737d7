"""One browser session's work: its model, trainer, run history and pending training job (no Streamlit here)."""

from __future__ import annotations

import itertools
import os
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

import numpy as np

from softmax_core import Dataset, EpochRecord, SoftmaxRegression, TrainConfig, Trainer, TrainingDiverged
from softmax_core.model import SIGMA


@dataclass(frozen=True)
class Setup:
    """Everything that defines a run besides the per-call hyperparameters: data set, seed and init scale."""

    dataset: str = "fashion-mnist"
    seed: int = 0
    sigma: float = SIGMA


@dataclass
class Run:
    """One model's training history: its setup, the hyperparameters last used and a record per epoch."""

    id: int
    setup: Setup
    config: TrainConfig
    records: list[EpochRecord] = field(default_factory=list)  # records[0] is epoch 0 (untrained)
    status: str = "ready"  # ready, training, finished, stopped, diverged
    message: str = ""
    label: str = ""

    @property
    def trained_epochs(self) -> int:
        """Epochs trained so far (epoch 0 is the untrained model)."""
        return self.records[-1].epoch if self.records else 0

    @property
    def name(self) -> str:
        """A short name for legends and pickers, e.g. 'run 3 (lr 0.1, batch 256)'."""
        extra = f", {self.label}" if self.label else ""
        return f"run {self.id} (lr {self.config.lr:g}, batch {self.config.batch_size}{extra})"

    def summary(self) -> dict:
        """A row for the run table."""
        last = self.records[-1] if self.records else None
        return {  # the figures a class compares first, the settings after them
            "run": self.id,
            "status": self.status,
            "epochs": self.trained_epochs,
            "test acc": last.test_acc if last else None,
            "train acc": last.train_acc if last and last.epoch else None,
            "train loss": last.train_loss if last and last.epoch else None,
            "lr": self.config.lr,
            "batch": self.config.batch_size,
            "momentum": self.config.momentum,
            "weight decay": self.config.weight_decay,
            "schedule": self.config.schedule,
            "softmax": self.config.softmax,
            "seed": self.setup.seed,
            "σ": self.setup.sigma,
            "data set": self.setup.dataset,
            "seconds": round(sum(r.seconds for r in self.records[1:]), 2),
        }

    def to_dict(self) -> dict:
        """A JSON-ready form (for the run store)."""
        return {
            "id": self.id,
            "setup": asdict(self.setup),
            "config": asdict(self.config),
            "records": [r.as_dict() for r in self.records],
            "status": self.status,
            "message": self.message,
            "label": self.label,
        }

    @classmethod
    def from_dict(cls, data: dict) -> Run:
        """The inverse of to_dict."""
        return cls(
            id=int(data["id"]),
            setup=Setup(**data["setup"]),
            config=TrainConfig(**data["config"]),
            records=[EpochRecord(**r) for r in data["records"]],
            status=data["status"],
            message=data.get("message", ""),
            label=data.get("label", ""),
        )


@dataclass
class Job:
    """Training asked for and not finished yet (its thread trains it in the background)."""

    config: TrainConfig
    done: int = 0  # epochs of config.epochs already trained


def fresh_model(setup: Setup) -> tuple[SoftmaxRegression, np.random.Generator]:
    """The lesson's initialisation for a setup, and the generator that goes on to shuffle its batches."""
    rng = np.random.default_rng(setup.seed)
    return SoftmaxRegression.init(rng, sigma=setup.sigma), rng


def untrained_record(dataset: Dataset, setup: Setup) -> EpochRecord:
    """Epoch 0 of a fresh model of this setup: the record Session.new_model would evaluate."""
    model, rng = fresh_model(setup)
    return Trainer.for_dataset(model, dataset, rng).initial_record()


DRAW_WAIT = 0.15  # seconds an epoch waits for the page to draw the one before (a closed or hidden page: no more)


class Session:
    """A browser session's model, trainer and runs; queued epochs train in a background thread.

    Training does not live in a script run: the page only shows the latest state, so a slow browser, a
    page switch or forty students polling at once cannot stall it. One thread trains at a time (lock).
    """

    _active = 0  # training threads of this process, to pace the pages' polling
    _active_lock = threading.Lock()
    # Epochs computed at the same time in this process: one core is left to the server. Thirty threads
    # computing at once starve the server's own threads of the GIL (pages stop updating); taking turns
    # epoch by epoch costs little throughput and every session still moves forward.
    _slots = threading.Semaphore(max(1, (os.cpu_count() or 1) - 1))

    def __init__(self) -> None:
        self.trainer: Trainer | None = None
        self.run: Run | None = None  # the run of the current model
        self.runs: list[Run] = []  # finished, stopped or diverged runs, and the current one once trained
        self.job: Job | None = None
        self.generation = 0  # bumped by Stop, Reset, Train, Continue: a thread of an older job stops
        self.lock = threading.Lock()
        self.progress = (0, 1)  # samples done in the epoch being trained, and in all
        self.waiting = False  # True while the next epoch waits for a free core
        self.drawn = -1  # the last epoch the page has drawn: training waits a moment for it, one point per epoch
        self.shown: SoftmaxRegression | None = None  # a copy of the model after the last finished epoch
        self.redraw = False  # a job ended: the whole page (history, buttons) needs drawing again
        self.pace = 0.0  # seconds an epoch takes at least (slow motion for a class)
        self.alive: Callable[[], bool] = lambda: True  # False once the browser tab is gone
        self.on_change: Callable[[Run, SoftmaxRegression | None], None] | None = None  # e.g. save to the run store
        self.store_problem = ""  # why runs are not being saved, if they are not
        self.cache: dict[str, tuple] = {}  # the page's drawings of the current state, keyed by what they show
        self._ids = itertools.count(1)

    @property
    def model(self) -> SoftmaxRegression | None:
        """The current model, if any."""
        return self.trainer.model if self.trainer else None

    @property
    def display_model(self) -> SoftmaxRegression | None:
        """The model to show: during training, as it was after the last finished epoch (never half-updated)."""
        return self.shown if self.job is not None and self.shown is not None else self.model

    @classmethod
    def active_trainers(cls) -> int:
        """How many sessions of this server process are training right now."""
        return cls._active

    def new_model(
        self, dataset: Dataset, setup: Setup, config: TrainConfig, model: SoftmaxRegression | None = None, label: str = "",
        initial: EpochRecord | None = None,
    ) -> Run:
        """Start a fresh, untrained model (the lesson's init from setup, or the given one) and its run.

        `initial` is the fresh model's epoch 0 when the caller already has it (see untrained_record).
        """
        self.cancel()
        if model is None:
            model, rng = fresh_model(setup)
        else:
            rng, initial = np.random.default_rng(setup.seed), None
        with self.lock:  # a cancelled thread leaves at its next batch
            self.trainer = Trainer.for_dataset(model, dataset, rng)
        # An untrained model that never made it into the history gives its number to the next one.
        reuse = self.run is not None and self.run not in self.runs
        self.run = Run(self.run.id if reuse else next(self._ids), setup, config, [initial or self.trainer.initial_record()], label=label)
        return self.run

    def restore(self, runs: list[Run], dataset: Dataset | None, model: SoftmaxRegression | None) -> None:
        """Take back runs saved earlier (a reload); the newest becomes the current run, with its model if saved."""
        self.runs = sorted(runs, key=lambda r: r.id)
        if not self.runs:
            return
        self._ids = itertools.count(self.runs[-1].id + 1)
        last = self.runs[-1]
        if last.status == "training":
            last.status, last.message = "stopped", "when the page was closed or reloaded"
        if model is not None and dataset is not None and last.setup.dataset == dataset.name:
            rng = np.random.default_rng(last.setup.seed)
            self.trainer = Trainer.for_dataset(model, dataset, rng)
            self.trainer.epochs_done = last.trained_epochs
            self.run = last

    def changed(self, run: Run | None = None) -> None:
        """Tell the listener (the run store) that a run in the history changed."""
        run = run or self.run
        if self.on_change is not None and run is not None and run in self.runs:
            self.on_change(run, self.display_model if run is self.run else None)  # never a half-trained epoch

    def start(self, config: TrainConfig) -> None:
        """Train the current model for config.epochs epochs, in the background."""
        if self.run is None:
            raise RuntimeError("no model to train")
        self.cancel()
        job = self.job = Job(config)
        self.run.config = config
        self.run.status, self.run.message = "training", ""
        if self.run not in self.runs:
            self.runs.append(self.run)
        self.shown = self.model.copy()  # before changed(): the store saves the model shown while training
        self.changed()
        self.progress = (0, 1)
        threading.Thread(target=self._train, args=(job, self.run, self.generation), name=f"train-run-{self.run.id}", daemon=True).start()

    def stop(self) -> None:
        """Stop training after the current batch; every finished epoch is kept."""
        if self.job is not None and self.run is not None:
            self.run.status, self.run.message = "stopped", "by you"
            self.changed()
        self.cancel()

    def cancel(self) -> None:
        """Drop the job; a thread still training it leaves at its next batch."""
        self.generation += 1
        self.job = None

    def wait(self, timeout: float = 30.0) -> bool:
        """Block until no thread trains (for tests and scripts); False on timeout."""
        deadline = time.monotonic() + timeout
        while self.job is not None or self.lock.locked():
            if time.monotonic() > deadline:
                return False
            time.sleep(0.02)
        return True

    def _train(self, job: Job, run: Run, generation: int) -> None:
        with Session._active_lock:
            Session._active += 1
        try:
            with self.lock:
                if generation == self.generation:
                    self._train_locked(job, run, generation)
        finally:
            with Session._active_lock:
                Session._active -= 1

    def _train_locked(self, job: Job, run: Run, generation: int) -> None:
        def check(done: int, total: int) -> None:
            self.progress = (done, total)
            if generation != self.generation:
                raise Superseded
            if done == total and not self.alive():  # checked once an epoch: nobody is watching any more
                raise Abandoned

        trainer = self.trainer
        started = time.monotonic()
        epochs = trainer.run(job.config, check, start=job.done)
        try:
            while True:
                self.waiting = True
                with Session._slots:
                    self.waiting = False
                    record = next(epochs, None)
                if record is None:
                    break
                run.records.append(record)
                job.done += 1
                self.shown = trainer.model.copy()
                if job.done == job.config.epochs and self.job is job:
                    run.status, run.message = "finished", ""
                    self.job, self.redraw = None, True
                self.changed(run)
                shown_by = time.monotonic() + DRAW_WAIT  # outside the slot: other sessions train meanwhile
                while self.job is job and (self.drawn < record.epoch and time.monotonic() < shown_by
                                           or time.monotonic() - started < self.pace * job.done):
                    time.sleep(0.01)  # the page draws every epoch; in slow motion a class can follow each one
        except TrainingDiverged as err:
            run.status, run.message = "diverged", str(err)
            if self.job is job:
                self.job, self.redraw = None, True
            self.changed(run)
        except Superseded:
            pass  # Stop, Reset, Train or Continue took over; they set the run's status
        except Abandoned:
            run.status, run.message = "stopped", "when the page was closed"
            if self.job is job:
                self.job = None
            self.changed(run)
        except Exception as err:  # noqa: BLE001 -- a bug must not kill the thread silently and leave "training"
            run.status, run.message = "stopped", f"by an error: {type(err).__name__}: {err}"
            if self.job is job:
                self.job, self.redraw = None, True
            self.changed(run)
            raise


class Superseded(Exception):
    """A newer job (or Stop) of the same session took over."""


class Abandoned(Exception):
    """The browser tab that asked for the training is gone."""
