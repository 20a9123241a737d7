"""Tests that kill mutants of the NumPy core which the other tests let survive (scripts/mutation.sh, benchmarks/MUTATION.md).

Each test says what behaviour it pins down; the data are small slices of the real Fashion-MNIST so that a
mutant runs them in well under a second.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.special import logsumexp as scipy_logsumexp
from scipy.special import softmax as scipy_softmax

from softmax_core import accuracy, cross_entropy, log_softmax, logsumexp, naive_softmax, softmax

# ---------------------------------------------------------------------------------------------------------------
# functional.py: "over the last axis" means the last axis, also for a single row or a stack of batches.


@pytest.fixture
def stacked() -> np.ndarray:
    """Logits of shape (2, 3, 10): two batches of three rows, where axis 1 is not the last axis."""
    return np.random.default_rng(5).normal(0, 2, size=(2, 3, 10)).astype(np.float32)


@pytest.mark.parametrize("function", [softmax, naive_softmax])
def test_softmax_normalises_the_last_axis_of_any_shape(function, stacked):
    np.testing.assert_allclose(function(stacked), scipy_softmax(stacked, axis=-1), rtol=1e-5, atol=1e-7)
    row = stacked[0, 0]  # a single row, shape (10,)
    np.testing.assert_allclose(function(row), scipy_softmax(row), rtol=1e-5, atol=1e-7)


def test_logsumexp_and_log_softmax_reduce_the_last_axis_of_any_shape(stacked):
    np.testing.assert_allclose(logsumexp(stacked), scipy_logsumexp(stacked, axis=-1), rtol=1e-6)
    np.testing.assert_allclose(log_softmax(stacked), np.log(scipy_softmax(stacked.astype(np.float64), axis=-1)), atol=1e-5)
    row = stacked[1, 2]
    assert logsumexp(row) == pytest.approx(scipy_logsumexp(row), rel=1e-6)


def test_logsumexp_of_a_row_with_no_mass_is_minus_infinity_not_nan():
    z = np.array([[-np.inf] * 4, [0.0, -np.inf, -np.inf, -np.inf]], dtype=np.float32)
    with np.errstate(divide="ignore", invalid="raise"):  # log(0) is -inf; the -inf row must not go through inf - inf
        out = logsumexp(z)
    assert out[0] == -np.inf and out[1] == 0.0


def test_accuracy_of_a_stack_of_batches_compares_the_last_axis(stacked):
    labels = np.argmax(stacked, axis=-1)  # (2, 3): every row right
    labels[0, 0] = (labels[0, 0] + 1) % 10  # one wrong of six
    assert accuracy(stacked, labels) == pytest.approx(5 / 6)


def test_accuracy_of_one_sample_and_of_none():
    assert accuracy(np.array([[0.2, 0.8]]), np.array([1])) == 1.0
    assert accuracy(np.array([[0.2, 0.8]]), np.array([0])) == 0.0
    assert math.isnan(accuracy(np.zeros((0, 10)), np.zeros(0, dtype=int)))  # no samples: no accuracy, not 0


def test_cross_entropy_of_a_single_sample():
    z = np.array([[2.0, 0.0, -1.0]])
    assert cross_entropy(z, np.array([1]))[0] == pytest.approx(-np.log(scipy_softmax(z[0])[1]), rel=1e-12)
