"""The fast Trainer computes the lesson's algorithm: softmax_core.reference, run from the same start, agrees.

Each case trains a Trainer and the plain reference from the same W, b and the same seeded generator (so
the same shuffles) on real Fashion-MNIST, and compares train loss, train accuracy, test accuracy, W and b
after every epoch. The tolerances are float32 rounding: the two sides order their products differently.
"""

from __future__ import annotations

import ast
import itertools
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest

from softmax_core import SoftmaxRegression, TrainConfig, Trainer, TrainingDiverged, functional
from softmax_core import reference as ref

REFERENCE = Path(ref.__file__)
LOSS_RTOL = 1e-5  # observed: about 1e-7
PARAM_RTOL, PARAM_ATOL = 1e-4, 1e-6  # observed: |dW| about 1e-7 over two epochs


def twin(rng: np.random.Generator) -> np.random.Generator:
    """A generator in the same state as rng, that will draw the same permutations."""
    bit_generator = type(rng.bit_generator)()
    bit_generator.state = rng.bit_generator.state
    return np.random.Generator(bit_generator)


@dataclass
class Pair:
    """A Trainer and the reference's W, b, velocity and generator, both at the same starting point."""

    trainer: Trainer
    images: np.ndarray  # (n, 28, 28) uint8
    labels: np.ndarray  # (n,)
    test_images: np.ndarray
    test_labels: np.ndarray
    W: np.ndarray
    b: np.ndarray
    rng: np.random.Generator
    velocity: list = field(init=False)  # [v_W, v_b], zero until momentum is used

    def __post_init__(self) -> None:
        self.velocity = [np.zeros_like(self.W), np.zeros_like(self.b)]

    def reference_epoch(self, config: TrainConfig, index: int) -> tuple[float, float, float]:
        """The index-th epoch of config's schedule by the reference: (train loss, train accuracy, test accuracy)."""
        lr = ref.lr_at(index, config.lr, config.epochs, config.schedule, config.step_size, config.gamma)
        with np.errstate(all="ignore"):  # the naive softmax may overflow; the loss then says so
            loss, acc = ref.train_epoch(
                self.images, self.labels, self.W, self.b, self.velocity, self.rng,
                lr, config.batch_size, config.momentum, config.weight_decay, config.softmax == "stable",
            )  # fmt: skip
            test_acc = ref.evaluate_accuracy(self.test_images, self.test_labels, self.W, self.b)
        return loss, acc, test_acc

    def run_both(self, config: TrainConfig, start: int = 0) -> list:
        """Trainer.run(config, start=start) beside the same epochs of the reference, asserting agreement after each."""
        records = []
        for index, record in zip(range(start, config.epochs), self.trainer.run(config, start=start), strict=True):
            lr = ref.lr_at(index, config.lr, config.epochs, config.schedule, config.step_size, config.gamma)
            assert record.lr == pytest.approx(lr, rel=1e-12), f"epoch {record.epoch}: learning rate"
            self.assert_agrees(record, *self.reference_epoch(config, index))
            records.append(record)
        return records

    def assert_agrees(self, record, loss: float, acc: float, test_acc: float) -> None:
        """The record and the model match the reference's figures and parameters."""
        n, where = len(self.labels), f"epoch {record.epoch}"
        assert record.train_loss == pytest.approx(loss, rel=LOSS_RTOL), f"{where}: train loss"
        # One sample may flip where two scores tie to within float32 rounding.
        assert abs(record.train_acc - acc) <= 1 / n + 1e-12, f"{where}: train accuracy"
        assert abs(record.test_acc - test_acc) <= 1 / len(self.test_labels) + 1e-12, f"{where}: test accuracy"
        np.testing.assert_allclose(self.trainer.model.W, self.W, rtol=PARAM_RTOL, atol=PARAM_ATOL, err_msg=f"{where}: W")
        np.testing.assert_allclose(self.trainer.model.b, self.b, rtol=PARAM_RTOL, atol=PARAM_ATOL, err_msg=f"{where}: b")


def pair(dataset, n: int | None = 3000, seed: int = 0, sigma: float = 0.01) -> Pair:
    """A Trainer on the first n training images of dataset and the reference at the same start."""
    rng = np.random.default_rng(seed)
    model = SoftmaxRegression.init(rng, sigma=sigma)
    images, labels = dataset.train_images[:n], dataset.train_labels[:n]
    trainer = Trainer(model, images, labels, dataset.test_images, dataset.test_labels, rng)
    return Pair(trainer, images, labels, dataset.test_images, dataset.test_labels, model.W.copy(), model.b.copy(), twin(rng))


def train_reference(dataset, config: TrainConfig, n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """W and b after config's epochs of the reference alone."""
    twins = pair(dataset, n, seed)
    for index in range(config.epochs):
        twins.reference_epoch(config, index)
    return twins.W, twins.b


def test_plain_sgd_agrees(fashion):
    pair(fashion).run_both(TrainConfig(epochs=2))


def test_a_smaller_last_batch_agrees(fashion):
    n, batch = 1000, 96
    assert n % batch == 40  # ten batches of 96, then one of 40
    pair(fashion, n).run_both(TrainConfig(batch_size=batch, epochs=2))


def test_momentum_agrees_on_W_and_b(fashion):
    config = TrainConfig(momentum=0.9, epochs=2)
    pair(fashion).run_both(config)
    # Momentum changes the outcome well beyond the tolerance, so agreement above is not by accident.
    W_plain, b_plain = train_reference(fashion, TrainConfig(epochs=2), 3000)
    W_momentum, b_momentum = train_reference(fashion, config, 3000)
    assert not np.allclose(W_momentum, W_plain, rtol=PARAM_RTOL, atol=PARAM_ATOL)
    assert not np.allclose(b_momentum, b_plain, rtol=PARAM_RTOL, atol=PARAM_ATOL)


@pytest.mark.parametrize("momentum", [0.0, 0.9])
def test_weight_decay_agrees(fashion, momentum):
    # With momentum, the decay term goes into the velocity with the gradient (not applied to W apart).
    pair(fashion).run_both(TrainConfig(weight_decay=0.05, momentum=momentum, epochs=2))


def test_weight_decay_shrinks_W_and_leaves_b_alone(fashion):
    """One full-batch step with decay: b exactly as without it, W lower by lr * decay * W0; on both sides."""
    n, lr, decay = 500, 0.1, 0.05
    b0 = np.random.default_rng(1).normal(0, 0.5, size=10).astype(np.float32)  # not 0, or decay of b would not show
    after = {}
    for wd in (0.0, decay):
        twins = pair(fashion, n)
        twins.trainer.model.b[...] = b0
        twins.b[...] = b0
        W0 = twins.W.copy()
        config = TrainConfig(lr=lr, batch_size=n, epochs=1, weight_decay=wd)
        twins.run_both(config)
        after[wd] = (twins.trainer.model.W.copy(), twins.trainer.model.b.copy(), twins.W.copy(), twins.b.copy())
    for side, (W_index, b_index) in (("Trainer", (0, 1)), ("reference", (2, 3))):
        np.testing.assert_array_equal(after[decay][b_index], after[0.0][b_index], err_msg=f"{side}: decay touched b")
        shrink = after[0.0][W_index] - after[decay][W_index]
        np.testing.assert_allclose(shrink, lr * decay * W0, rtol=1e-3, atol=1e-8, err_msg=f"{side}: decay of W")


@pytest.mark.parametrize(
    "config",
    [
        TrainConfig(lr=0.2, schedule="step", step_size=1, gamma=0.5, epochs=4),
        TrainConfig(lr=0.2, schedule="step", step_size=2, gamma=0.3, epochs=5, momentum=0.5),
        TrainConfig(lr=0.2, schedule="cosine", epochs=4),
    ],
    ids=["step-1", "step-2-momentum", "cosine"],
)
def test_schedules_agree_over_several_epochs(fashion, config):
    records = pair(fashion, 2000).run_both(config)
    assert len({r.lr for r in records}) > 1  # the rate did change


@pytest.mark.parametrize("schedule", ["step", "cosine"])
def test_a_resumed_run_continues_the_schedule(fashion, schedule):
    """Two epochs, the run closed, then run(config, start=2): the reference's four epochs of one schedule."""
    config = TrainConfig(lr=0.2, schedule=schedule, step_size=1, gamma=0.5, epochs=4, momentum=0.5)
    twins = pair(fashion, 2000)
    run = twins.trainer.run(config)
    for index, record in enumerate(itertools.islice(run, 2)):
        twins.assert_agrees(record, *twins.reference_epoch(config, index))
    run.close()
    records = twins.run_both(config, start=2)
    assert [r.epoch for r in records] == [3, 4]
    assert records[0].lr <= config.lr / 2  # the third epoch's rate, not the first's again


def test_stable_softmax_agrees_where_the_naive_one_would_overflow(fashion):
    """Scores near 1000 (exp overflows at 89 in float32): both sides stay finite and agree with the stable softmax."""
    twins = pair(fashion, 1000)
    twins.trainer.model.b[...] = twins.b[...] = np.float32(1000) + np.arange(10, dtype=np.float32) / 10
    records = twins.run_both(TrainConfig(epochs=1))
    assert math.isfinite(records[0].train_loss)


def test_naive_softmax_agrees_where_it_does_not_overflow(fashion):
    records = pair(fashion).run_both(TrainConfig(softmax="naive", epochs=2))
    assert all(math.isfinite(r.train_loss) for r in records)


def test_naive_softmax_overflows_on_both_sides_and_the_trainer_restores_the_model(fashion):
    twins = pair(fashion, 2000)
    twins.run_both(TrainConfig(softmax="naive", epochs=1))
    W, b, rng_state = twins.trainer.model.W.copy(), twins.trainer.model.b.copy(), twins.trainer.rng.bit_generator.state
    config = TrainConfig(lr=10, softmax="naive", epochs=2)
    with pytest.raises(TrainingDiverged) as info:
        list(twins.trainer.run(config))
    loss, _, _ = twins.reference_epoch(config, 0)
    # NaN, not just infinite: inf / inf from exp(z) overflowing (the stable softmax never makes a NaN here).
    assert math.isnan(loss)
    assert info.value.epoch == 2 and twins.trainer.epochs_done == 1
    np.testing.assert_array_equal(twins.trainer.model.W, W)
    np.testing.assert_array_equal(twins.trainer.model.b, b)
    assert twins.trainer.rng.bit_generator.state == rng_state


def test_batches_across_the_trainers_label_chunks_agree(fashion):
    """The Trainer puts labels in the epoch's order 16384 samples at a time (whole batches): 20000 samples in
    batches of 7000 take a chunk of two batches, then one of the last, smaller batch."""
    pair(fashion, 20_000).run_both(TrainConfig(lr=0.5, batch_size=7000, epochs=2))


def test_a_batch_larger_than_the_data_agrees(fashion):
    pair(fashion, 500).run_both(TrainConfig(lr=0.5, batch_size=10_000, epochs=2))


def test_the_reference_defaults_are_the_lessons(fashion):
    """Stable softmax, no momentum, no weight decay, a step schedule of x0.5 every 5 epochs, unless asked otherwise."""
    z = np.array([[1000.0, 0.0], [0.0, -1000.0]], dtype=np.float32)
    np.testing.assert_array_equal(ref.softmax(z), [[1.0, 0.0], [1.0, 0.0]])
    W, b = np.zeros((784, 10), np.float32), np.full(10, 1000.0, np.float32)
    np.testing.assert_allclose(ref.net(fashion.test_images[:3], W, b), 0.1)
    favour_2 = b + np.eye(10, dtype=np.float32)[2]  # huge equal scores, class 2 ahead: the stable softmax still ranks them
    assert ref.evaluate_accuracy(fashion.test_images[:3], fashion.test_labels[:3], W, favour_2) == np.mean(fashion.test_labels[:3] == 2)
    assert [ref.lr_at(e, 1.0, 20, "step") for e in (4, 5, 10)] == [1.0, 0.5, 0.25]
    assert ref.lr_at(3, 1.0, 20) == 1.0
    runs = []
    for kwargs in ({}, dict(momentum=0.0, weight_decay=0.0, stable=True)):
        twins = pair(fashion, 300, sigma=0.5)
        velocity = [np.zeros_like(twins.W), np.zeros_like(twins.b)]
        figures = ref.train_epoch(twins.images, twins.labels, twins.W, twins.b, velocity, twins.rng, 0.5, 64, **kwargs)
        runs.append((figures, twins.W, twins.b, velocity))
    assert runs[0][0] == runs[1][0]
    for default, explicit in zip(runs[0][1:3], runs[1][1:3]):
        np.testing.assert_array_equal(default, explicit)
    assert not runs[0][3][0].any()  # without momentum the velocity is not used
    W0, grad, velocity = np.ones(3), np.full(3, 2.0), [np.zeros(3)]
    for _ in range(2):  # plain steps: the second is as long as the first
        ref.sgd([W0], [grad], 0.1, velocity)
    np.testing.assert_allclose(W0, 0.6)


def test_the_reference_epoch_counts_every_sample_once(fashion):
    """At learning rate 0 the model never moves: the epoch's loss and accuracy are the model's on the whole set."""
    twins = pair(fashion, 300, sigma=0.5)
    velocity = [np.zeros_like(twins.W), np.zeros_like(twins.b)]
    loss, acc = ref.train_epoch(twins.images, twins.labels, twins.W, twins.b, velocity, twins.rng, 0.0, 64)
    X = twins.images.reshape(300, -1).astype(np.float32) / 255
    assert acc == ref.evaluate_accuracy(twins.images, twins.labels, twins.W, twins.b) and 0.05 < acc < 0.95
    assert loss == pytest.approx(float(np.mean(functional.cross_entropy(X @ twins.W + twins.b, twins.labels))), rel=1e-5)


def test_evaluate_accuracy_scales_pixels_to_unit_interval(fashion):
    """Labels that are the model's own predictions at pixels / 255: all right, where another scale moves dozens."""
    images = fashion.test_images
    pixels = images.reshape(len(images), -1).astype(np.float64)
    W = np.random.default_rng(3).normal(0, 0.05, size=(784, 10)).astype(np.float32)
    b = -(pixels / 255 @ W).mean(axis=0).astype(np.float32)  # every class wins somewhere: many close calls
    labels = np.argmax(pixels / 255 @ W + b, axis=1)
    assert ref.evaluate_accuracy(images, labels, W, b) >= 1 - 3 / len(labels)  # float32 may flip a near tie
    for scale in (254, 256):  # the check can tell (about 40 flips each)
        assert np.mean(np.argmax(pixels / scale @ W + b, axis=1) == labels) < 1 - 20 / len(labels)


def test_batch_size_one_agrees(fashion):
    pair(fashion, 200).run_both(TrainConfig(lr=0.01, batch_size=1, epochs=2))


def test_velocity_is_kept_across_runs(fashion):
    twins = pair(fashion, 2000)
    twins.run_both(TrainConfig(momentum=0.9, epochs=1))
    twins.run_both(TrainConfig(lr=0.05, momentum=0.9, epochs=1))
    # Starting the second run from zero velocity would end elsewhere: the check above can tell.
    fresh = pair(fashion, 2000)
    fresh.reference_epoch(TrainConfig(momentum=0.9, epochs=1), 0)
    fresh.velocity = [np.zeros_like(fresh.W), np.zeros_like(fresh.b)]
    fresh.reference_epoch(TrainConfig(lr=0.05, momentum=0.9, epochs=1), 0)
    assert not np.allclose(fresh.W, twins.W, rtol=PARAM_RTOL, atol=PARAM_ATOL)


def test_lesson_defaults_on_the_full_data_agree_and_give_the_lessons_first_line(fashion):
    twins = pair(fashion, None)
    config = TrainConfig(epochs=1)
    record = twins.trainer.run(config).__next__()
    loss, acc, test_acc = twins.reference_epoch(config, 0)
    twins.assert_agrees(record, loss, acc, test_acc)
    # The lesson's epoch-1 figures for seed 0 (loss 0.788481), as floats: the printed 0.7885 is 3e-5 from
    # turning into 0.7884, which another float32 BLAS could cause with nothing wrong.
    for figure, value, tolerance in ((loss, 0.78848, 2e-5), (acc, 0.7479, 1e-3), (test_acc, 0.7852, 1e-3)):
        assert figure == pytest.approx(value, abs=tolerance)


def test_reference_functions_match_the_core_functions(fashion):
    """softmax, cross_entropy and accuracy of the reference against softmax_core.functional (logits of real images)."""
    rng = np.random.default_rng(0)
    model = SoftmaxRegression.init(rng, sigma=0.5)
    X = fashion.test_images[:500].reshape(500, -1).astype(np.float32) / 255
    y = fashion.test_labels[:500]
    z = X @ model.W + model.b  # (500, 10), a spread of a few units
    np.testing.assert_allclose(ref.softmax(z), functional.softmax(z), rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(ref.softmax(z, stable=False), functional.naive_softmax(z), rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(ref.cross_entropy(ref.softmax(z), y), functional.cross_entropy(z, y), rtol=1e-5, atol=1e-6)
    assert ref.accuracy(ref.net(X, model.W, model.b), y) == round(functional.accuracy(z, y) * 500)
    with np.errstate(over="ignore", invalid="ignore"):
        assert np.isnan(ref.softmax(z + 100, stable=False)).any()  # the lesson's formula overflows
    np.testing.assert_allclose(ref.softmax(z + 100), ref.softmax(z), rtol=1e-5, atol=1e-7)


def test_the_reference_is_plain_numpy():
    tree = ast.parse(REFERENCE.read_text())
    imports = [node for node in ast.walk(tree) if isinstance(node, ast.Import | ast.ImportFrom)]
    assert [alias.name for node in imports for alias in node.names] == ["numpy"]
