"""One minibatch SGD step and one prediction taken apart, for the "How it learns" and inspector pages (NumPy only).

Every figure comes from softmax_core.reference (the lesson's code, shown on the page) or the core: the step
below is the loop body of reference.train_epoch on one batch, so a test can check it against that function.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from softmax_core import TrainState, features, reference


@dataclass(frozen=True)
class Step:
    """One plain minibatch SGD step on a batch, before and after: what the page shows and what it applies."""

    indices: np.ndarray  # (k,) training-set indices of the batch's images
    y: np.ndarray  # (k,) true labels
    logits: np.ndarray  # (k, 10) X @ W + b
    probs: np.ndarray  # (k, 10) reference.softmax(logits), i.e. reference.net(X, W, b)
    losses: np.ndarray  # (k,) reference.cross_entropy(probs, y)
    grad_W: np.ndarray  # (784, 10) gradient of the batch's mean loss
    grad_b: np.ndarray  # (10,)
    lr: float
    W_before: np.ndarray  # (784, 10)
    b_before: np.ndarray  # (10,)
    W_after: np.ndarray  # (784, 10) W_before - lr * grad_W, by reference.sgd
    b_after: np.ndarray  # (10,)
    losses_after: np.ndarray  # (k,) the same batch's losses under the updated parameters

    @property
    def loss(self) -> float:
        """Mean loss of the batch before the step (what SGD minimises)."""
        return float(self.losses.mean(dtype=np.float64))

    @property
    def loss_after(self) -> float:
        """Mean loss of the same batch after the step."""
        return float(self.losses_after.mean(dtype=np.float64))

    @property
    def correct(self) -> int:
        """Images of the batch predicted right before the step."""
        return reference.accuracy(self.probs, self.y)


def epoch_order(rng_state: dict, n: int) -> np.ndarray:
    """The order (n,) in which the next epoch takes the training images: the trainer's permutation from this RNG state."""
    rng = np.random.Generator(np.random.PCG64())  # default_rng's bit generator; its state is replaced at once
    rng.bit_generator.state = rng_state
    return rng.permutation(n)


def batch_count(n: int, batch_size: int) -> int:
    """Batches in one pass over n images (the last may be smaller)."""
    return -(-n // batch_size)


def batch_indices(order: np.ndarray, batch_size: int, number: int) -> np.ndarray:
    """The training-set indices of batch `number` (from 0) of an epoch in this order, wrapping around after the last."""
    number %= batch_count(len(order), batch_size)
    return order[number * batch_size : (number + 1) * batch_size]


def one_step(images: np.ndarray, labels: np.ndarray, indices: np.ndarray, W: np.ndarray, b: np.ndarray, lr: float) -> Step:
    """reference.train_epoch's loop body on the batch images[indices]: plain SGD, without momentum or weight decay.

    W (784, 10) and b (10,) are not changed: the update goes to copies.
    """
    with np.errstate(divide="ignore", over="ignore", invalid="ignore"):  # a probability that rounds to 0: an infinite loss, as in the lesson
        return _step(images, labels, indices, W, b, lr)


def _step(images: np.ndarray, labels: np.ndarray, indices: np.ndarray, W: np.ndarray, b: np.ndarray, lr: float) -> Step:
    k = len(indices)
    X = images[indices].reshape(k, -1).astype(np.float32) / 255  # (k, 784) pixels in [0, 1]
    y = np.asarray(labels[indices])  # (k,)
    logits = X.reshape(-1, W.shape[0]) @ W + b  # (k, 10): reference.net before its softmax
    probs = reference.softmax(logits)  # (k, 10)
    losses = reference.cross_entropy(probs, y)  # (k,)
    y_onehot = np.eye(W.shape[1], dtype=np.float32)[y]  # (k, 10)
    dz = (probs - y_onehot) / k  # (k, 10): the gradient of the mean loss with respect to the scores
    grad_W = X.T @ dz  # (784, 10)
    grad_b = dz.sum(axis=0)  # (10,)
    W_after, b_after = W.copy(), b.copy()
    velocity = [np.zeros_like(W), np.zeros_like(b)]  # unused: momentum 0
    reference.sgd([W_after, b_after], [grad_W, grad_b], lr, velocity)
    losses_after = reference.cross_entropy(reference.net(X, W_after, b_after), y)
    return Step(
        np.asarray(indices), y, logits, probs, losses, grad_W, grad_b, float(lr),
        W.copy(), b.copy(), W_after, b_after, losses_after,
    )


def after(state: TrainState, step: Step) -> TrainState:
    """The training state with the step's parameters (copies); RNG, epoch count and momentum unchanged."""
    velocity = None if state.velocity is None else (state.velocity[0].copy(), state.velocity[1].copy())
    return TrainState(step.W_after.copy(), step.b_after.copy(), dict(state.rng_state), state.epochs_done, velocity)


@dataclass
class ManualSteps:
    """Steps applied by hand to a run's model since its last finished epoch, and the state to go back to."""

    run_id: int
    origin: TrainState  # the state before the first manual step
    current: TrainState  # the state the last manual step left (the session's, while nothing else changed it)
    steps: int = 0


def still_current(manual: ManualSteps | None, run_id: int | None, state: TrainState | None) -> ManualSteps | None:
    """manual, if the session still holds the state its last step left; None once an epoch, a reset or a new run replaced it."""
    if manual is None or state is None or manual.run_id != run_id or manual.current is not state:
        return None
    return manual


# --- Why this prediction (model inspector) ----------------------------------------------------------


def contributions(image: np.ndarray, W: np.ndarray, c: int) -> np.ndarray:
    """Each pixel's share x ⊙ W[:, c] of class c's logit, (28, 28) float32, for a uint8 image (28, 28) (x = pixels / 255)."""
    x = features(image[None])[0]  # (784,) float32, as the model scales pixels
    return (x * W[:, c]).reshape(image.shape)


def logit_parts(image: np.ndarray, W: np.ndarray, b: np.ndarray, c: int) -> tuple[float, float, float]:
    """(Σ x ⊙ W[:, c], b[c], their sum): class c's logit for a uint8 image, built from its pixel contributions."""
    total = contributions(image, W, c).sum(dtype=np.float32)
    return float(total), float(b[c]), float(total + b[c])


def random_index(n: int, draw: int) -> int:
    """The `draw`-th random pick of an index below n: reproducible, as each draw has its own seed."""
    return int(np.random.default_rng(draw).integers(n))
