"""One browser session's page state: its model, run history and the job that trains it (no Streamlit here)."""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields

import numpy as np

from softmax_core import Dataset, EpochRecord, SoftmaxRegression, TrainConfig, Trainer, TrainState
from softmax_core.engine import Engine, Job
from softmax_core.model import SIGMA
from softmax_core.shared import shared_ref

from .push import Target


@dataclass(frozen=True)
class Setup:
    """Everything that defines a run besides the per-call hyperparameters: data set, seed and init scale."""

    dataset: str = "fashion-mnist"
    seed: int = 0
    sigma: float = SIGMA


SETTINGS = ("lr", "batch_size", "momentum", "weight_decay", "schedule", "softmax")  # a segment's settings a class compares
SETTING_NAMES = {"lr": "lr", "batch_size": "batch", "momentum": "momentum", "weight_decay": "weight decay",
                 "schedule": "schedule", "softmax": "softmax"}


def segment(kind: str, first_epoch: int, config: TrainConfig) -> dict:
    """One Train, Continue or Step of a run: its kind, the run epoch it began with and every setting it trained with.

    "epochs" is the length of its schedule (the epochs asked); "start" is where in that schedule it began.
    """
    return {"kind": kind, "first_epoch": first_epoch, "start": 0, **asdict(config)}


def segment_config(seg: dict) -> TrainConfig:
    """The TrainConfig a segment trained with."""
    return TrainConfig(**{f.name: seg[f.name] for f in fields(TrainConfig) if f.name in seg})


def show_setting(value: object) -> str:
    """A setting as the history shows it: 0.1, 256, constant."""
    return f"{value:g}" if isinstance(value, float) else str(value)


@dataclass
class Run:
    """One model's training history: its setup, the hyperparameters last used, a record per epoch and one segment per
    Train, Continue or Step (see `segment`), so each epoch keeps the settings it was trained with."""

    id: int
    setup: Setup
    config: TrainConfig
    records: list[EpochRecord] = field(default_factory=list)  # records[0] is epoch 0 (untrained)
    status: str = "ready"  # ready, loaded (from a file), training, finished, stopped, diverged
    message: str = ""
    label: str = ""
    segments: list[dict] = field(default_factory=list)  # in order; epochs from segments[i]["first_epoch"] on are its

    @property
    def trained_epochs(self) -> int:
        """Epochs trained so far (epoch 0 is the untrained model)."""
        return self.records[-1].epoch if self.records else 0

    @property
    def name(self) -> str:
        """A short name for legends and pickers, e.g. 'run 3 (lr 0.1 → 0.2, batch 256)'."""
        extra = f", {self.label}" if self.label else ""
        return f"run {self.id} (lr {self.setting_history('lr')}, batch {self.setting_history('batch_size')}{extra})"

    def trained_segments(self) -> list[dict]:
        """The segments that trained at least one epoch (a Continue stopped before its first epoch left nothing)."""
        return [s for s in self.segments if s["first_epoch"] <= self.trained_epochs]

    def setting_history(self, name: str) -> str:
        """A setting across the run's segments, each change once: '0.1', or '0.1 → 0.2' after a Continue at 0.2."""
        values = [show_setting(s[name]) for s in self.trained_segments()] or [show_setting(getattr(self.config, name))]
        return " → ".join(v for i, v in enumerate(values) if i == 0 or v != values[i - 1])

    def segment_of(self, epoch: int) -> dict | None:
        """The segment that trained this epoch (None for epoch 0, the untrained model)."""
        found = None
        for seg in self.segments:
            if seg["first_epoch"] <= epoch:
                found = seg
        return found if epoch > 0 else None

    @property
    def epochs_left(self) -> int:
        """Epochs of the last segment not trained because the run was interrupted (stopped, a reload), else 0."""
        if self.status != "stopped" or not self.segments:
            return 0
        seg = self.segments[-1]
        done = self.trained_epochs - seg["first_epoch"] + 1
        return max(0, seg["epochs"] - seg["start"] - done)

    def summary(self) -> dict:
        """A row for the run table: settings that changed between segments read '0.1 → 0.2'."""
        last = self.records[-1] if self.records else None
        return {  # the figures a class compares first, the settings after them
            "run": self.id,
            "status": self.status,
            "epochs": self.trained_epochs,
            "test acc": last.test_acc if last else None,
            "train acc": last.train_acc if last and last.epoch else None,
            "train loss": last.train_loss if last and last.epoch else None,
            **{SETTING_NAMES[name]: self.setting_history(name) for name in SETTINGS},
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
            "segments": [dict(seg) for seg in self.segments],
        }

    @classmethod
    def from_dict(cls, data: dict) -> Run:
        """The inverse of to_dict; a run saved before segments were kept gets one segment of its last settings."""
        run = cls(
            id=int(data["id"]),
            setup=Setup(**data["setup"]),
            config=TrainConfig(**data["config"]),
            records=[EpochRecord(**r) for r in data["records"]],
            status=data["status"],
            message=data.get("message", ""),
            label=data.get("label", ""),
        )
        if "segments" in data:
            run.segments = [{**segment("train", 1, segment_config(seg)), **seg} for seg in data["segments"]]
        elif run.trained_epochs:  # only the last settings were stored: the best that is known
            run.segments = [segment("train", 1, run.config)]
        return run


def fresh_model(setup: Setup) -> tuple[SoftmaxRegression, np.random.Generator]:
    """The lesson's initialisation for a setup, and the generator that goes on to shuffle its batches."""
    rng = np.random.default_rng(setup.seed)
    return SoftmaxRegression.init(rng, sigma=setup.sigma), rng


def untrained_record(dataset: Dataset, setup: Setup) -> EpochRecord:
    """Epoch 0 of a fresh model of this setup: the record Session.new_model would evaluate."""
    model, rng = fresh_model(setup)
    return Trainer.for_dataset(model, dataset, rng).initial_record()


class Session:
    """A browser session's page state: its runs, the current model, and the job that trains it.

    Training does not happen here: `start` hands the model's state to the engine as a Job (its worker
    processes train it in slices) and the job's listener, this session, takes each finished epoch back.
    Nothing here waits on the engine: Train, Stop and Reset return at once.
    """

    def __init__(self, engine: Callable[[], Engine]) -> None:
        self._engine = engine  # the server's engine, asked for when training starts
        self.dataset: Dataset | None = None  # the data set of the current model
        self.state: TrainState | None = None  # the current model's training state, after its last finished epoch
        self.run: Run | None = None  # the run of the current model
        self.runs: list[Run] = []  # finished, stopped or diverged runs, and the current one once trained
        self._job: Job | None = None
        self._model: tuple[TrainState | None, SoftmaxRegression | None] = (None, None)
        self.redraw = False  # a job ended: the whole page (history, buttons) needs drawing again
        self.pace = 0.0  # seconds an epoch takes at least (slow motion for a class)
        self.alive: Callable[[], bool] = lambda: True  # False once the browser tab is gone
        self.push: Target | None = None  # where the server pushes the page's live redraws (ui/push.py), set by the page
        self.on_change: Callable[[Run, SoftmaxRegression | None], None] | None = None  # e.g. save to the run store
        self.store_problem = ""  # why runs are not being saved, if they are not
        self.cache: dict[str, tuple] = {}  # the page's drawings of the current state, keyed by what they show
        self._ids = itertools.count(1)

    @property
    def job(self) -> Job | None:
        """The job training the current run, while it trains (queued or in a worker)."""
        job = self._job
        return job if job is not None and job.active else None

    @property
    def model(self) -> SoftmaxRegression | None:
        """The current model as after its last finished epoch (never half-updated); do not change it in place."""
        state, model = self._model
        if state is not self.state:
            model = None if self.state is None else SoftmaxRegression(self.state.W, self.state.b)
            self._model = (self.state, model)
        return model

    @property
    def display_model(self) -> SoftmaxRegression | None:
        """The model to show (the same as model: the state only ever holds finished epochs)."""
        return self.model

    def new_model(
        self, dataset: Dataset, setup: Setup, config: TrainConfig, model: SoftmaxRegression | None = None, label: str = "",
        initial: EpochRecord | None = None,
    ) -> Run:
        """Start a fresh, untrained model (the lesson's init from setup, or the given one) and its run.

        `initial` is the fresh model's epoch 0 when the caller already has it (see untrained_record).
        """
        self.stop("because a new run was started")
        if model is None:
            model, rng = fresh_model(setup)
        else:
            rng, initial = np.random.default_rng(setup.seed), None
        if initial is None:
            initial = Trainer.for_dataset(model, dataset, rng).initial_record()
        self.dataset = dataset
        self.state = TrainState(model.W.copy(), model.b.copy(), rng.bit_generator.state)
        # An untrained model that never made it into the history gives its number to the next one.
        reuse = self.run is not None and self.run not in self.runs
        self.run = Run(self.run.id if reuse else next(self._ids), setup, config, [initial], label=label)
        return self.run

    def load_model(self, dataset: Dataset, setup: Setup, config: TrainConfig, model: SoftmaxRegression, source: str) -> Run:
        """Make an uploaded model the current one: a run of its own ("loaded"), kept in the history at once."""
        run = self.new_model(dataset, setup, config, model=model, label=f"loaded from {source}")
        run.status = "loaded"
        self.runs.append(run)
        self.changed(run)
        return run

    def restore(self, runs: list[Run], dataset: Dataset | None, model: SoftmaxRegression | None) -> None:
        """Take back runs saved earlier (a reload); the newest becomes the current run, with its model if saved."""
        self.runs = sorted(runs, key=lambda r: r.id)
        if not self.runs:
            return
        self._ids = itertools.count(self.runs[-1].id + 1)
        last = self.runs[-1]
        if last.status == "training":
            last.status, last.message = "stopped", f"when the page was closed or reloaded, after epoch {last.trained_epochs}"
        if model is not None and dataset is not None and last.setup.dataset == dataset.name:
            rng = np.random.default_rng(last.setup.seed)
            self.dataset = dataset
            self.state = TrainState(model.W.copy(), model.b.copy(), rng.bit_generator.state, last.trained_epochs)
            self.run = last

    def changed(self, run: Run | None = None) -> None:
        """Tell the listener (the run store) that a run in the history changed."""
        run = run or self.run
        if self.on_change is not None and run is not None and run in self.runs:
            self.on_change(run, self.model if run is self.run else None)

    def start(self, config: TrainConfig, kind: str = "train", start: int = 0) -> Job:
        """Hand the current model to the engine to train epochs start .. config.epochs - 1 of config's schedule; returns at once.

        kind ("train", "continue", "step") begins a new segment of the run; "resume" goes on with the last one.
        """
        if self.run is None or self.state is None:
            raise RuntimeError("no model to train")
        self.stop("because a new job was started")
        run = self.run
        run.config = config
        if kind != "resume":
            run.segments = run.trained_segments()  # a segment stopped before its first epoch trained nothing
            run.segments.append(segment(kind, run.trained_epochs + 1, config))
            run.segments[-1]["start"] = start
        run.status, run.message = "training", ""
        if run not in self.runs:
            self.runs.append(run)
        self.changed()
        job = self._job = Job(shared_ref(self.dataset), self.state, config, start=start, pace=self.pace, listener=self)
        self._engine().submit(job)
        return job

    def resume(self) -> Job:
        """Train the epochs an interrupted segment has left, with its settings, where its schedule stopped."""
        run = self.run
        left = run.epochs_left if run is not None else 0
        if not left:
            raise RuntimeError("the current run has no interrupted epochs left")
        seg = run.segments[-1]
        return self.start(segment_config(seg), kind="resume", start=seg["epochs"] - left)

    def stop(self, why: str = "by you") -> None:
        """Stop training now: every finished epoch is kept, the epoch on its way is undone."""
        job, run = self._job, self.run
        if job is None or not job.cancel(why) or run is None:
            return
        run.status, run.message = "stopped", f"{why} after epoch {run.trained_epochs}"
        if job.stopped_during is not None:
            epoch, done, total = job.stopped_during
            kept = f"epochs 1-{epoch - 1} are kept" if epoch > 2 else "epoch 1 is kept" if epoch == 2 else "no epoch had finished"
            run.message = f"{why} during epoch {epoch}, after {done:,} of {total:,} images; that partial epoch was undone and {kept}"
        self.redraw = True
        self.changed()

    def wait(self, timeout: float = 30.0) -> bool:
        """Block until the job has ended (for tests and scripts); False on timeout."""
        deadline = time.monotonic() + timeout
        while self.job is not None:
            if time.monotonic() > deadline:
                return False
            time.sleep(0.02)
        return True

    def shown(self, epoch: int) -> None:
        """The page has drawn this epoch: the next one need not wait for it."""
        job = self.job
        if job is not None:
            job.drawn(epoch)

    def news(self) -> None:
        """The job has news for the page: the server redraws its live area (where it can push; else the page polls)."""
        if self.push is not None:
            self.push.poke()

    # ------------------------------------------------------------------ the job's listener (engine threads)

    def on_epoch(self, job: Job, record: EpochRecord) -> None:
        """A finished epoch of the current job: keep its record and its state."""
        if job is not self._job or self.run is None:
            return
        self.run.records.append(record)
        self.state = job.committed
        if job.status == "finished":
            self.run.status, self.run.message = "finished", ""
            self.redraw = True
        self.changed()
        if job.active and not self.alive():  # nobody is watching any more
            self.stop("when the page was closed")
        self.news()

    def on_end(self, job: Job) -> None:
        """The job finished, diverged or failed."""
        if job is not self._job or self.run is None or job.status == "finished":
            return
        if job.status == "diverged":
            self.run.status, self.run.message = "diverged", job.message
        else:
            self.run.status, self.run.message = "stopped", job.message
        self.redraw = True
        self.changed()
        self.news()
