"""Pure array functions of softmax regression: softmax, log-softmax, cross-entropy, accuracy."""

from __future__ import annotations

import numpy as np


def naive_softmax(logits: np.ndarray) -> np.ndarray:
    """The lesson's softmax, exp(X) / sum(exp(X)); overflows for large logits (kept for teaching)."""
    exp = np.exp(logits)
    return exp / exp.sum(axis=-1, keepdims=True)


def logsumexp(logits: np.ndarray) -> np.ndarray:
    """log(sum(exp(logits))) over the last axis, shifted by the row maximum so it cannot overflow."""
    shift = np.max(logits, axis=-1, keepdims=True)
    # A row of -inf would give nan after the shift; such a row's maximum contributes nothing.
    shift = np.where(np.isfinite(shift), shift, 0)
    return np.log(np.exp(logits - shift).sum(axis=-1)) + shift[..., 0]


def log_softmax(logits: np.ndarray) -> np.ndarray:
    """Stable log(softmax(logits)) over the last axis, of the same shape as logits."""
    return logits - logsumexp(logits)[..., None]


def softmax(logits: np.ndarray) -> np.ndarray:
    """Stable softmax over the last axis: every row is finite, non-negative and sums to 1."""
    shifted = logits - np.max(logits, axis=-1, keepdims=True)
    exp = np.exp(shifted)
    return exp / exp.sum(axis=-1, keepdims=True)


def cross_entropy(logits: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Per-sample loss -log softmax(logits)[label], of shape (n_samples,), from logits (n_samples, n_classes)."""
    rows = np.arange(len(labels))
    return logsumexp(logits) - logits[rows, labels]


def accuracy(scores: np.ndarray, labels: np.ndarray) -> float:
    """Fraction of rows whose highest score (logit or probability) is at the true label."""
    if len(labels) == 0:
        return float("nan")
    return float(np.mean(np.argmax(scores, axis=-1) == labels))
