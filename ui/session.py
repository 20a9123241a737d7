"""One browser session's work: its model, trainer, run history and pending training job (no Streamlit here)."""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field

import numpy as np

from softmax_core import Dataset, EpochRecord, SoftmaxRegression, TrainConfig, Trainer, TrainingDiverged


@dataclass(frozen=True)
class Setup:
    """Everything that defines a run besides the per-call hyperparameters: data set, seed and init scale."""

    dataset: str = "fashion-mnist"
    seed: int = 0
    sigma: float = 0.01


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
        return {
            "run": self.id,
            "data set": self.setup.dataset,
            "lr": self.config.lr,
            "batch": self.config.batch_size,
            "momentum": self.config.momentum,
            "weight decay": self.config.weight_decay,
            "schedule": self.config.schedule,
            "seed": self.setup.seed,
            "σ": self.setup.sigma,
            "epochs": self.trained_epochs,
            "status": self.status,
            "train loss": last.train_loss if last and last.epoch else None,
            "train acc": last.train_acc if last and last.epoch else None,
            "test acc": last.test_acc if last else None,
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
    """Training asked for but not finished: survives reruns, so a slider move does not stop it."""

    config: TrainConfig
    done: int = 0  # epochs of config.epochs already trained

    @property
    def remaining(self) -> int:
        """Epochs still to train."""
        return self.config.epochs - self.done


class Session:
    """A browser session's model, trainer and runs; training is guarded so only one thread trains at a time."""

    def __init__(self) -> None:
        self.trainer: Trainer | None = None
        self.run: Run | None = None  # the run of the current model
        self.runs: list[Run] = []  # finished, stopped or diverged runs, and the current one once trained
        self.job: Job | None = None
        self.generation = 0  # bumped by every script run; a training loop of an older run stops
        self.lock = threading.Lock()
        self.on_change: Callable[[Run, SoftmaxRegression | None], None] | None = None  # e.g. save to the run store
        self._ids = itertools.count(1)

    @property
    def model(self) -> SoftmaxRegression | None:
        """The current model, if any."""
        return self.trainer.model if self.trainer else None

    def new_model(self, dataset: Dataset, setup: Setup, config: TrainConfig, model: SoftmaxRegression | None = None, label: str = "") -> Run:
        """Start a fresh, untrained model (the lesson's init from setup, or the given one) and its run."""
        self.job = None
        rng = np.random.default_rng(setup.seed)
        model = model if model is not None else SoftmaxRegression.init(rng, sigma=setup.sigma)
        self.trainer = Trainer(model, dataset.train_images, dataset.train_labels, dataset.test_images, dataset.test_labels, rng)
        # An untrained model that never made it into the history gives its number to the next one.
        reuse = self.run is not None and self.run not in self.runs
        self.run = Run(self.run.id if reuse else next(self._ids), setup, config, [self.trainer.initial_record()], label=label)
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
            self.trainer = Trainer(model, dataset.train_images, dataset.train_labels, dataset.test_images, dataset.test_labels, rng)
            self.trainer.epochs_done = last.trained_epochs
            self.run = last

    def changed(self, run: Run | None = None) -> None:
        """Tell the listener (the run store) that a run in the history changed."""
        run = run or self.run
        if self.on_change is not None and run is not None and run in self.runs:
            self.on_change(run, self.model if run is self.run else None)

    def start(self, config: TrainConfig) -> None:
        """Queue training of the current model for config.epochs epochs."""
        if self.run is None:
            raise RuntimeError("no model to train")
        self.job = Job(config)
        self.run.config = config
        self.run.status = "training"
        if self.run not in self.runs:
            self.runs.append(self.run)
        self.changed()

    def stop(self) -> None:
        """Cancel queued or running training; every finished epoch is kept."""
        self.generation += 1  # a loop still running stops at its next batch
        if self.job is not None and self.run is not None:
            self.run.status, self.run.message = "stopped", "by you"
            self.changed()
        self.job = None

    def train(self, on_progress: Callable[[int, int], None] | None = None, timeout: float = 10.0) -> Iterator[EpochRecord]:
        """Carry out the queued job, yielding each epoch's record after it has been stored in the run."""
        generation = self.generation
        if not self.lock.acquire(timeout=timeout):  # an older script run is still leaving its loop
            return
        try:
            job, run = self.job, self.run
            if job is None or run is None or generation != self.generation:
                return
            try:
                for record in self.trainer.run(job.config, self._checker(generation, on_progress), start=job.done):
                    run.records.append(record)
                    job.done += 1
                    if job.done == job.config.epochs and self.job is job:  # not if stopped meanwhile
                        run.status, run.message = "finished", ""
                        self.job = None
                    self.changed(run)
                    yield record
            except TrainingDiverged as err:
                run.status, run.message = "diverged", str(err)
                if self.job is job:
                    self.job = None
                self.changed(run)
        finally:
            self.lock.release()

    def _checker(self, generation: int, on_progress: Callable[[int, int], None] | None) -> Callable[[int, int], None]:
        def check(done: int, total: int) -> None:
            if generation != self.generation:
                raise Superseded
            if on_progress is not None:
                on_progress(done, total)

        return check


class Superseded(Exception):
    """A newer script run of the same session took over the training loop."""


class Throttle:
    """Lets a call through at most every `interval` seconds (and always the last one of an epoch)."""

    def __init__(self, interval: float) -> None:
        self.interval, self.last = interval, 0.0

    def ready(self, final: bool = False) -> bool:
        """True when enough time has passed (or final is True); then the clock restarts."""
        now = time.perf_counter()
        if final or now - self.last >= self.interval:
            self.last = now
            return True
        return False
