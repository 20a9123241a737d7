"""Minibatch SGD for softmax regression, as an iterator that yields one record per epoch."""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING

import numpy as np

from .functional import accuracy, cross_entropy
from .model import SoftmaxRegression

if TYPE_CHECKING:
    from .data import Dataset

SCHEDULES = ("constant", "step", "cosine")
SOFTMAXES = ("stable", "naive")  # naive: the lesson's exp(z) / sum(exp(z)), which overflows for large logits
_SCALE = np.float32(1 / 255)  # uint8 pixels -> [0, 1], folded into the small (batch, 10) products


class ConfigError(ValueError):
    """A hyperparameter outside its allowed range; the message says which and what is allowed."""


class TrainingDiverged(ArithmeticError):
    """The loss became NaN or infinite; the model was put back as it was before that epoch."""

    def __init__(self, epoch: int, lr: float, softmax: str = "stable") -> None:
        self.epoch = epoch
        self.lr = lr
        advice = f"try a smaller learning rate (e.g. {lr / 10:g})"
        if softmax == "naive":
            advice = f"exp(z) overflowed in the naive softmax: switch to the stable softmax (log-sum-exp) or {advice}"
        super().__init__(
            f"training diverged in epoch {epoch}: the loss is no longer a finite number at learning rate {lr:g}. "
            f"The model was kept as it was after epoch {epoch - 1}; {advice}."
        )


@dataclass(frozen=True)
class TrainConfig:
    """Hyperparameters of one call to Trainer.run; the defaults are the lesson's."""

    lr: float = 0.1  # learning rate of minibatch SGD
    batch_size: int = 256  # samples per update; the last, smaller batch of an epoch is used too
    epochs: int = 5  # passes over the training set
    momentum: float = 0.0  # heavy-ball momentum; 0 is the lesson's plain SGD
    weight_decay: float = 0.0  # L2 penalty on W (not b), added to the gradient
    schedule: str = "constant"  # "constant", "step" (x gamma every step_size epochs) or "cosine" (to 0)
    step_size: int = 5  # epochs between decays of the "step" schedule
    gamma: float = 0.5  # factor of each "step" decay
    softmax: str = "stable"  # "stable" (log-sum-exp) or "naive" (the lesson's formula, to show it overflow)

    def __post_init__(self) -> None:
        _check(self.lr, "learning rate", lambda v: 0 < v <= 1e4, "a number > 0 and <= 10000")
        _check(self.batch_size, "batch size", lambda v: 1 <= v <= 10**7, "a whole number from 1 to 10000000", integer=True)
        _check(self.epochs, "epochs", lambda v: 1 <= v <= 10_000, "a whole number from 1 to 10000", integer=True)
        _check(self.momentum, "momentum", lambda v: 0 <= v < 1, "a number >= 0 and < 1")
        _check(self.weight_decay, "weight decay", lambda v: 0 <= v <= 1, "a number from 0 to 1")
        _check(self.step_size, "step size", lambda v: 1 <= v <= 10_000, "a whole number from 1 to 10000", integer=True)
        _check(self.gamma, "gamma", lambda v: 0 < v <= 1, "a number > 0 and <= 1")
        if self.schedule not in SCHEDULES:
            raise ConfigError(f"schedule must be one of {', '.join(SCHEDULES)}; got {self.schedule!r}")
        if self.softmax not in SOFTMAXES:
            raise ConfigError(f"softmax must be one of {', '.join(SOFTMAXES)}; got {self.softmax!r}")

    def lr_at(self, epoch_index: int) -> float:
        """Learning rate of the epoch_index-th epoch of this run, counted from 0."""
        if self.schedule == "step":
            return self.lr * self.gamma ** (epoch_index // self.step_size)
        if self.schedule == "cosine":
            return self.lr * 0.5 * (1 + math.cos(math.pi * epoch_index / self.epochs))
        return self.lr


def _check(value: object, name: str, ok: Callable[[float], bool], allowed: str, integer: bool = False) -> None:
    kinds = (int, np.integer) if integer else (int, float, np.integer, np.floating)
    if isinstance(value, bool) or not isinstance(value, kinds) or not math.isfinite(value) or not ok(value):
        raise ConfigError(f"{name} must be {allowed}; got {value!r}")


@dataclass(frozen=True)
class EpochRecord:
    """What one epoch produced; epoch 0 describes the untrained model."""

    epoch: int
    train_loss: float  # mean loss over the epoch's batches, each measured before its update
    train_acc: float  # accuracy over the epoch's batches, measured the same way (as the lesson does)
    test_loss: float
    test_acc: float
    lr: float
    seconds: float  # wall time of the epoch, evaluation included

    def log_line(self) -> str:
        """The lesson's line, e.g. 'epoch 1, loss 0.7885, train acc 0.748, test acc 0.785'."""
        return f"epoch {self.epoch}, loss {self.train_loss:.4f}, train acc {self.train_acc:.3f}, test acc {self.test_acc:.3f}"

    def as_dict(self) -> dict[str, float]:
        """The record as a plain dict (for tables and CSV)."""
        return asdict(self)


ProgressCallback = Callable[[int, int], None]  # (samples done in this epoch, samples per epoch)
_CHUNK = 16384  # samples whose labels and one-hot targets are put in the epoch's order at a time


@dataclass
class TrainState:
    """Everything training changes: the parameters, the momentum, the shuffling generator and the epoch count."""

    W: np.ndarray  # (n_features, n_classes) float32
    b: np.ndarray  # (n_classes,) float32
    rng_state: dict  # numpy.random.Generator.bit_generator.state
    epochs_done: int = 0
    velocity: tuple[np.ndarray, np.ndarray] | None = None  # heavy-ball momentum of W and b, once used

    def copy(self) -> TrainState:
        """An independent copy (arrays copied)."""
        velocity = None if self.velocity is None else (self.velocity[0].copy(), self.velocity[1].copy())
        return TrainState(self.W.copy(), self.b.copy(), dict(self.rng_state), self.epochs_done, velocity)

    def model(self) -> SoftmaxRegression:
        """The parameters as a model of their own (copies)."""
        return SoftmaxRegression(self.W.copy(), self.b.copy())


@dataclass
class EpochProgress:
    """One epoch on its way: its shuffle and the figures of the batches trained so far (resumable in slices)."""

    index: int  # the epoch's place in the run's schedule, from 0
    lr: float
    order: np.ndarray  # (n_train,) this epoch's shuffle
    losses: np.ndarray  # (n_train,) float32: each sample's loss before its batch's update, filled up to `done`
    done: int = 0  # samples trained
    correct: int = 0  # of those, predicted right before their batch's update
    seconds: float = 0.0  # compute time so far

    @property
    def total(self) -> int:
        """Samples in the epoch."""
        return len(self.order)

    @property
    def finished(self) -> bool:
        """True once every batch of the epoch is trained."""
        return self.done >= len(self.order)

    def running(self) -> tuple[float, float]:
        """Mean loss and accuracy over the samples trained so far (nan before the first batch)."""
        if not self.done:
            return float("nan"), float("nan")
        return float(np.mean(self.losses[: self.done], dtype=np.float64)), self.correct / self.done


class Trainer:
    """Trains one model on uint8 images with minibatch SGD; keeps its RNG and momentum between runs."""

    def __init__(
        self,
        model: SoftmaxRegression,
        train_images: np.ndarray,
        train_labels: np.ndarray,
        test_images: np.ndarray,
        test_labels: np.ndarray,
        rng: np.random.Generator,
    ) -> None:
        self.model = model
        # uint8 rows are shared, never copied: four times smaller than float32 and cheap to gather.
        self.X_train = _pixels(train_images)  # (n_train, 784) uint8
        self.y_train = np.asarray(train_labels, dtype=np.intp)
        self.X_test = _pixels(test_images)  # (n_test, 784) uint8
        self.y_test = np.asarray(test_labels, dtype=np.intp)
        self.rng = rng
        self.epochs_done = 0
        self._velocity: tuple[np.ndarray, np.ndarray] | None = None
        self._eye = np.eye(model.b.shape[0], dtype=np.float32)  # one-hot rows, put in each epoch's order

    @classmethod
    def for_dataset(cls, model: SoftmaxRegression, dataset: Dataset, rng: np.random.Generator) -> Trainer:
        """A trainer on a loaded data set's train and test splits."""
        return cls(model, dataset.train_images, dataset.train_labels, dataset.test_images, dataset.test_labels, rng)

    @property
    def state(self) -> TrainState:
        """A copy of everything training changes (to hand to another process, or to go back to)."""
        velocity = None if self._velocity is None else (self._velocity[0].copy(), self._velocity[1].copy())
        return TrainState(self.model.W.copy(), self.model.b.copy(), self.rng.bit_generator.state, self.epochs_done, velocity)

    @state.setter
    def state(self, state: TrainState) -> None:
        self.model.W[...] = state.W
        self.model.b[...] = state.b
        self.rng.bit_generator.state = state.rng_state
        self.epochs_done = state.epochs_done
        self._velocity = None if state.velocity is None else (state.velocity[0].copy(), state.velocity[1].copy())

    def evaluate(self, split: str = "test") -> tuple[float, float]:
        """Mean loss and accuracy of the current model on the "train" or "test" split."""
        X, y = (self.X_train, self.y_train) if split == "train" else (self.X_test, self.y_test)
        return _evaluate(self.model, X, y)

    def initial_record(self) -> EpochRecord:
        """Epoch 0: the current model's figures before any (further) training."""
        start = time.perf_counter()
        train_loss, train_acc = self.evaluate("train")
        test_loss, test_acc = self.evaluate("test")
        return EpochRecord(self.epochs_done, train_loss, train_acc, test_loss, test_acc, 0.0, time.perf_counter() - start)

    def run(self, config: TrainConfig, on_progress: ProgressCallback | None = None, start: int = 0) -> Iterator[EpochRecord]:
        """Train config.epochs epochs from the current parameters, yielding a record after each.

        `start` skips that many epochs of the schedule: a run resumed after an interruption keeps its
        learning rates.

        Raises TrainingDiverged when the loss stops being finite. If the caller stops in the middle of
        an epoch (an exception from on_progress, or closing the iterator), that epoch is undone, so the
        model, RNG and momentum are exactly as after the last yielded record.
        """
        for index in range(start, config.epochs):
            yield self.train_epoch(config, index, on_progress)

    def train_epoch(self, config: TrainConfig, index: int, on_progress: ProgressCallback | None = None) -> EpochRecord:
        """Train the index-th epoch of config's schedule (from 0) and return its record; undone on any error."""
        snapshot = self.state
        try:
            epoch = self.begin_epoch(config, index)
            self.train_batches(config, epoch, on_progress=on_progress)
            return self.end_epoch(config, epoch)
        except BaseException:
            self.state = snapshot
            raise

    def begin_epoch(self, config: TrainConfig, index: int) -> EpochProgress:
        """Shuffle for the index-th epoch of config's schedule; train it with train_batches, close it with end_epoch."""
        n = len(self.y_train)
        return EpochProgress(index, config.lr_at(index), self.rng.permutation(n), np.empty(n, dtype=np.float32))

    def end_epoch(self, config: TrainConfig, epoch: EpochProgress) -> EpochRecord:
        """Check and count a fully trained epoch and evaluate the test split; TrainingDiverged if it is not finite.

        On TrainingDiverged the caller puts back the state from before the epoch (train_epoch does).
        """
        began = time.perf_counter()
        train_loss, train_acc = epoch.running()
        if not (math.isfinite(train_loss) and self.model.is_finite()):
            raise TrainingDiverged(self.epochs_done + 1, epoch.lr, config.softmax)
        self.epochs_done += 1
        test_loss, test_acc = self.evaluate("test")
        seconds = epoch.seconds + time.perf_counter() - began
        return EpochRecord(self.epochs_done, train_loss, train_acc, test_loss, test_acc, epoch.lr, seconds)

    def train_batches(
        self, config: TrainConfig, epoch: EpochProgress, until: float | None = None, on_progress: ProgressCallback | None = None,
    ) -> None:
        """Train the epoch's next batches until it is finished or time.perf_counter() passes `until` (at least one batch)."""
        began = time.perf_counter()
        try:
            with np.errstate(all="ignore"):  # overflow shows up as a non-finite loss, checked by end_epoch
                self._batches(config, epoch, until, on_progress)
        finally:
            epoch.seconds += time.perf_counter() - began

    def _batches(self, config: TrainConfig, epoch: EpochProgress, until: float | None, on_progress: ProgressCallback | None) -> None:
        X, W, b = self.X_train, self.model.W, self.model.b
        n, d = X.shape
        c = W.shape[1]
        k_max = min(config.batch_size, n)
        order, lr = epoch.order, epoch.lr
        # Buffers reused by every batch: after the gather a batch stays in cache for both products.
        pixels = np.empty((k_max, d), dtype=np.uint8)
        xb_buf = np.empty((k_max, d), dtype=np.float32)
        z_buf = np.empty((k_max, c), dtype=np.float32)
        total_buf = np.empty(k_max, dtype=np.float32)
        grad_W, grad_b = np.empty_like(W), np.empty_like(b)
        # Sums over a row of 10 or a column of k as products with ones: a BLAS call is several times
        # faster than NumPy's reduction along a short axis.
        ones_c, ones_k = np.ones(c, dtype=np.float32), np.ones(k_max, dtype=np.float32)
        rows = np.arange(k_max)
        momentum, decay, stable = config.momentum, config.weight_decay, config.softmax == "stable"
        if momentum and self._velocity is None:
            self._velocity = (np.zeros_like(W), np.zeros_like(b))
        chunk = k_max * max(1, _CHUNK // k_max)  # whole batches
        chunk_start = chunk_end = epoch.done
        while epoch.done < n:
            start = epoch.done
            end = min(start + k_max, n)
            if end > chunk_end:
                # Labels and one-hot targets of the next batches in the epoch's order at once: each batch
                # then takes a slice, not a gather.
                chunk_start, chunk_end = start, min(start + chunk, n)
                labels = self.y_train[order[chunk_start:chunk_end]]
                targets = self._eye[labels]  # (chunk, 10)
            k = end - start
            r = rows[:k]
            yb = labels[start - chunk_start : end - chunk_start]
            # mode="clip" skips take's bounds-check copy; the order is a permutation, always in range.
            xb = xb_buf[:k]
            np.copyto(xb, np.take(X, order[start:end], axis=0, out=pixels[:k], mode="clip"))  # (k, 784) float32, 0..255
            z = np.matmul(xb, W, out=z_buf[:k])  # (k, 10)
            z *= _SCALE
            z += b
            # argmax then a gather is much faster than max() along an axis of length 10.
            best = np.argmax(z, axis=1)
            epoch.correct += int(np.count_nonzero(best == yb))
            true_z = z[r, yb]
            if stable:
                top = z[r, best]  # (k,) row maxima: the shift that keeps exp from overflowing
                np.subtract(z, top[:, None], out=z)
            probs = np.exp(z, out=z)
            total = np.matmul(probs, ones_c, out=total_buf[:k])
            batch_loss = epoch.losses[start:end]
            np.log(total, out=batch_loss)
            if stable:
                batch_loss += top
            batch_loss -= true_z  # log-sum-exp minus the true logit: -log softmax
            probs /= total[:, None]
            probs -= targets[start - chunk_start : end - chunk_start]  # dLoss/dz, times k
            np.matmul(xb.T, probs, out=grad_W)  # (784, 10), times 255 * k
            grad_W *= np.float32(1 / (255 * k))
            np.matmul(ones_k[:k], probs, out=grad_b)
            grad_b *= np.float32(1 / k)
            if decay:
                grad_W += np.float32(decay) * W
            step_W, step_b = grad_W, grad_b
            if momentum:
                vW, vb = self._velocity
                vW *= np.float32(momentum)
                vW += grad_W
                vb *= np.float32(momentum)
                vb += grad_b
                step_W, step_b = vW, vb
            W -= np.multiply(step_W, np.float32(lr), out=grad_W)
            b -= np.multiply(step_b, np.float32(lr), out=grad_b)
            epoch.done = end
            if on_progress is not None:
                on_progress(end, n)
            if until is not None and time.perf_counter() >= until:
                return


def _pixels(images: np.ndarray) -> np.ndarray:
    images = np.asarray(images)
    if images.dtype != np.uint8:
        raise TypeError(f"images must be uint8 pixels 0..255, got {images.dtype}")
    return images.reshape(len(images), -1)


def _evaluate(model: SoftmaxRegression, X: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """Mean cross-entropy and accuracy over uint8 rows X."""
    with np.errstate(all="ignore"):
        z = model.image_logits(X)
        loss = float(np.mean(cross_entropy(z, y), dtype=np.float64))
    return loss, accuracy(z, y)
