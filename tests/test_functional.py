"""softmax, log_softmax, cross_entropy and accuracy against SciPy and against their definitions."""

import numpy as np
import pytest
from scipy.special import log_softmax as scipy_log_softmax
from scipy.special import logsumexp as scipy_logsumexp
from scipy.special import softmax as scipy_softmax

from softmax_core import accuracy, cross_entropy, log_softmax, logsumexp, naive_softmax, softmax


@pytest.fixture
def logits() -> np.ndarray:
    return np.random.default_rng(0).normal(0, 3, size=(50, 10)).astype(np.float32)


def test_softmax_matches_scipy(logits):
    np.testing.assert_allclose(softmax(logits), scipy_softmax(logits, axis=1), rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(log_softmax(logits), scipy_log_softmax(logits, axis=1), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(logsumexp(logits), scipy_logsumexp(logits, axis=1), rtol=1e-6)


def test_naive_softmax_agrees_on_small_logits(logits):
    np.testing.assert_allclose(naive_softmax(logits), softmax(logits), rtol=1e-5, atol=1e-7)


def test_the_lessons_2x5_example_rows_sum_to_one():
    X = np.random.default_rng(1).normal(0, 1, (2, 5))
    P = softmax(X)
    assert P.shape == (2, 5) and (P > 0).all()
    np.testing.assert_allclose(P.sum(axis=1), [1.0, 1.0])


@pytest.mark.parametrize("scale", [1000.0, -1000.0])
def test_stable_forms_stay_finite_where_naive_overflows(scale):
    z = np.array([[1.0, 2.0, 3.0], [0.5, 0.0, -0.5]], dtype=np.float32) * scale
    with np.errstate(all="ignore"):
        naive = naive_softmax(z)
    assert not np.isfinite(naive).all()  # exp(±3000) overflows to inf (or 0/0)
    for out in (softmax(z), log_softmax(z), logsumexp(z), cross_entropy(z, np.array([0, 1]))):
        assert np.isfinite(out).all()
    np.testing.assert_allclose(softmax(z), scipy_softmax(z.astype(np.float64), axis=1), atol=1e-6)
    np.testing.assert_allclose(softmax(z).sum(axis=1), 1.0, rtol=1e-6)


def test_cross_entropy_is_minus_log_of_the_true_class_probability(logits):
    labels = np.random.default_rng(2).integers(0, 10, len(logits))
    expected = -np.log(scipy_softmax(logits.astype(np.float64), axis=1)[np.arange(len(labels)), labels])
    np.testing.assert_allclose(cross_entropy(logits, labels), expected, rtol=1e-4)
    # The lesson's example: y_hat = [[0.1, 0.3, 0.6], [0.3, 0.2, 0.5]], y = [0, 2] -> -log 0.1, -log 0.5
    y_hat = np.log(np.array([[0.1, 0.3, 0.6], [0.3, 0.2, 0.5]]))
    np.testing.assert_allclose(cross_entropy(y_hat, np.array([0, 2])), [-np.log(0.1), -np.log(0.5)], rtol=1e-12)


def test_accuracy_counts_rows_whose_maximum_is_the_label():
    y_hat = np.array([[0.1, 0.3, 0.6], [0.3, 0.2, 0.5]])
    assert accuracy(y_hat, np.array([0, 2])) == 0.5  # the lesson's example
    assert accuracy(y_hat, np.array([2, 2])) == 1.0
