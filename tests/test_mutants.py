"""Tests that kill mutants of the NumPy core which the other tests let survive (scripts/mutation.sh, benchmarks/MUTATION.md).

Each test says what behaviour it pins down; the data are small slices of the real Fashion-MNIST so that a
mutant runs them in well under a second.
"""

from __future__ import annotations

import dataclasses
import math
import os
import re
import time

import numpy as np
import pytest
from scipy.special import logsumexp as scipy_logsumexp
from scipy.special import softmax as scipy_softmax

from softmax_core import (
    ConfigError,
    EpochRecord,
    ModelFileError,
    SoftmaxRegression,
    TrainConfig,
    Trainer,
    TrainingDiverged,
    TrainState,
    accuracy,
    cross_entropy,
    features,
    log_softmax,
    logsumexp,
    naive_softmax,
    softmax,
    training,
)
from softmax_core.model import _and, _bytes, _listing, _short, temporary_path

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


# ---------------------------------------------------------------------------------------------------------------
# training.py: the messages, ranges and small objects around the trainer.


def small_trainer(dataset, n_train: int = 600, n_test: int = 300, seed: int = 0, sigma: float = 0.01) -> Trainer:
    """A trainer on the first n_train training and n_test test images of the real data set."""
    rng = np.random.default_rng(seed)
    model = SoftmaxRegression.init(rng, sigma=sigma)
    return Trainer(model, dataset.train_images[:n_train], dataset.train_labels[:n_train],
                   dataset.test_images[:n_test], dataset.test_labels[:n_test], rng)  # fmt: skip


def test_divergence_message_says_where_and_what_to_try():
    stable = TrainingDiverged(3, 0.5)
    assert (stable.epoch, stable.lr) == (3, 0.5)
    assert str(stable) == (
        "training diverged in epoch 3: the loss is no longer a finite number at learning rate 0.5. "
        "The model was kept as it was after epoch 2; try a smaller learning rate (e.g. 0.05)."
    )
    naive = TrainingDiverged(1, 10.0, "naive")
    assert str(naive) == (
        "training diverged in epoch 1: the loss is no longer a finite number at learning rate 10. "
        "The model was kept as it was after epoch 0; exp(z) overflowed in the naive softmax: switch to the stable "
        "softmax (log-sum-exp) or try a smaller learning rate (e.g. 1)."
    )


# (field, the lowest and highest allowed value, a value just outside each end, what the message says is allowed)
RANGES = [
    ("lr", "learning rate", 1e-12, 1e4, 0.0, np.nextafter(1e4, 2e4), "a number > 0 and <= 10000"),
    ("batch_size", "batch size", 1, 10**7, 0, 10**7 + 1, "a whole number from 1 to 10000000"),
    ("epochs", "epochs", 1, 10_000, 0, 10_001, "a whole number from 1 to 10000"),
    ("momentum", "momentum", 0.0, np.nextafter(1.0, 0.0), -1e-12, 1.0, "a number >= 0 and < 1"),
    ("weight_decay", "weight decay", 0.0, 1.0, -1e-12, np.nextafter(1.0, 2.0), "a number from 0 to 1"),
    ("step_size", "step size", 1, 10_000, 0, 10_001, "a whole number from 1 to 10000"),
    ("gamma", "gamma", 1e-12, 1.0, 0.0, np.nextafter(1.0, 2.0), "a number > 0 and <= 1"),
]


@pytest.mark.parametrize(("field", "name", "low", "high", "below", "above", "allowed"), RANGES, ids=[r[0] for r in RANGES])
def test_hyperparameter_ranges_include_their_ends_and_nothing_past_them(field, name, low, high, below, above, allowed):
    for value in (low, high):
        assert getattr(TrainConfig(**{field: value}), field) == value
    for value in (below, above, float("inf")):
        with pytest.raises(ConfigError) as info:
            TrainConfig(**{field: value})
        assert str(info.value) == f"{name} must be {allowed}; got {value!r}"


def test_numpy_numbers_are_accepted_and_floats_are_not_whole_numbers():
    config = TrainConfig(lr=np.float32(0.5), batch_size=np.int64(64), epochs=np.int32(2), momentum=np.float64(0.5))
    assert (config.lr, config.batch_size, config.epochs, config.momentum) == (0.5, 64, 2, 0.5)
    with pytest.raises(ConfigError, match=r"^batch size must be a whole number from 1 to 10000000; got 64\.0$"):
        TrainConfig(batch_size=64.0)
    for field, name in (("epochs", "epochs"), ("step_size", "step size")):
        with pytest.raises(ConfigError, match=rf"^{name} must be a whole number from 1 to 10000; got 3\.0$"):
            TrainConfig(**{field: 3.0})
    with pytest.raises(ConfigError, match=r"^momentum must be a number >= 0 and < 1; got False$"):
        TrainConfig(momentum=False)


def test_schedule_and_softmax_choices_are_named_in_the_message():
    with pytest.raises(ConfigError) as info:
        TrainConfig(schedule="warp")
    assert str(info.value) == "schedule must be one of constant, step, cosine; got 'warp'"
    with pytest.raises(ConfigError) as info:
        TrainConfig(softmax="fast")
    assert str(info.value) == "softmax must be one of stable, naive; got 'fast'"
    for schedule in ("constant", "step", "cosine"):
        assert TrainConfig(schedule=schedule).schedule == schedule
    assert TrainConfig(softmax="naive").softmax == "naive"


def test_lr_schedules_at_their_steps():
    step = TrainConfig(lr=0.8, schedule="step", step_size=3, gamma=0.25)
    assert [step.lr_at(i) for i in (0, 2, 3, 5, 6)] == [0.8, 0.8, 0.2, 0.2, 0.05]
    cosine = TrainConfig(lr=0.8, schedule="cosine", epochs=3)
    assert [cosine.lr_at(i) for i in range(3)] == pytest.approx([0.8, 0.6, 0.2])
    assert TrainConfig(lr=0.3, step_size=1, gamma=0.5, epochs=4).lr_at(3) == 0.3  # constant ignores both


def test_log_line_and_dict_of_a_record():
    record = EpochRecord(3, 0.123456, 0.5, 0.7, 0.81234, 0.1, 1.5)
    assert record.log_line() == "epoch 3, loss 0.1235, train acc 0.500, test acc 0.812"
    assert record.as_dict() == {"epoch": 3, "train_loss": 0.123456, "train_acc": 0.5, "test_loss": 0.7, "test_acc": 0.81234,
                                "lr": 0.1, "seconds": 1.5}  # fmt: skip


def test_train_state_copy_and_model_are_independent_copies():
    rng = np.random.default_rng(4)
    W, b = rng.normal(size=(784, 10)).astype(np.float32), rng.normal(size=10).astype(np.float32)
    velocity = (rng.normal(size=(784, 10)).astype(np.float32), rng.normal(size=10).astype(np.float32))
    state = TrainState(W, b, rng.bit_generator.state, 7, velocity)
    copy = state.copy()
    assert copy.epochs_done == 7 and copy.rng_state == state.rng_state and copy.rng_state is not state.rng_state
    for mine, theirs in ((copy.W, W), (copy.b, b), (copy.velocity[0], velocity[0]), (copy.velocity[1], velocity[1])):
        np.testing.assert_array_equal(mine, theirs)
        np.add(mine, 1, out=mine)  # a copy, not a view
    np.testing.assert_array_equal(state.W, W)
    assert state.W[0, 0] != copy.W[0, 0] and state.velocity[1][0] != copy.velocity[1][0]
    assert TrainState(W, b, {}, 0).copy().velocity is None
    model = state.model()
    np.testing.assert_array_equal(model.W, W)
    np.testing.assert_array_equal(model.b, b)
    model.W += 1
    model.b += 1
    assert model.W[0, 0] != W[0, 0] and model.b[0] != b[0]


def test_trainer_for_a_dataset_trains_on_train_and_reports_test(fashion):
    rng = np.random.default_rng(0)
    trainer = Trainer.for_dataset(SoftmaxRegression.init(rng), fashion, rng)
    assert trainer.X_train.shape == (60_000, 784) and trainer.X_test.shape == (10_000, 784)
    np.testing.assert_array_equal(trainer.y_train, fashion.train_labels)
    np.testing.assert_array_equal(trainer.y_test, fashion.test_labels)
    np.testing.assert_array_equal(trainer.X_train[123], fashion.train_images[123].ravel())
    np.testing.assert_array_equal(trainer.X_test[45], fashion.test_images[45].ravel())
    assert trainer.rng is rng and trainer.epochs_done == 0


def test_initial_record_is_the_current_models_figures(fashion):
    trainer = small_trainer(fashion, sigma=0.5)
    for split, images, labels in (("train", fashion.train_images[:600], fashion.train_labels[:600]),
                                  ("test", fashion.test_images[:300], fashion.test_labels[:300])):  # fmt: skip
        expected = trainer.model.evaluate(features(images), labels.astype(np.intp))
        assert trainer.evaluate(split) == pytest.approx(expected, rel=1e-5), split
    before = time.perf_counter()
    record = trainer.initial_record()
    took = time.perf_counter() - before
    assert (record.epoch, record.lr) == (0, 0.0)
    assert (record.train_loss, record.train_acc) == trainer.evaluate("train")
    assert (record.test_loss, record.test_acc) == trainer.evaluate("test")
    assert record.train_acc != record.test_acc  # the two splits, not one of them twice
    assert 0 <= record.seconds <= took  # the time it took, not a clock reading
    list(trainer.run(TrainConfig(epochs=2)))
    assert trainer.initial_record().epoch == 2


def test_an_epoch_trained_in_slices_is_the_epoch_trained_at_once(fashion):
    """begin_epoch, train_batches until a time (one batch when it has passed), end_epoch: as train_epoch, to the bit."""
    config = TrainConfig(batch_size=100, epochs=2, momentum=0.5)
    whole, sliced = small_trainer(fashion, seed=2), small_trainer(fashion, seed=2)
    expected = [whole.train_epoch(config, index) for index in range(2)]
    seen = []
    for index in range(2):
        epoch = sliced.begin_epoch(config, index)
        assert (epoch.index, epoch.lr, epoch.total, epoch.done, epoch.finished) == (index, 0.1, 600, 0, False)
        assert epoch.losses.dtype == np.float32 and epoch.losses.shape == (600,)  # one float32 per sample
        assert all(math.isnan(figure) for figure in epoch.running())
        sliced.train_batches(config, epoch, until=0.0)  # the time has passed: exactly one batch
        assert epoch.done == 100 and not epoch.finished
        assert epoch.running() == (pytest.approx(float(np.mean(epoch.losses[:100], dtype=np.float64))), epoch.correct / 100)
        assert 0 < epoch.correct < 100
        sliced.train_batches(config, epoch, until=time.perf_counter() + 3600, on_progress=lambda done, total: seen.append((done, total)))
        assert epoch.finished and epoch.done == epoch.total
        record = sliced.end_epoch(config, epoch)
        assert record.train_loss == float(np.mean(epoch.losses, dtype=np.float64))  # summed in float64
        assert (record.test_loss, record.test_acc) == sliced.evaluate("test")
        assert dataclasses.replace(record, seconds=0.0) == dataclasses.replace(expected[index], seconds=0.0)
        assert record.seconds >= epoch.seconds > 0
    assert seen[:5] == [(200, 600), (300, 600), (400, 600), (500, 600), (600, 600)]
    np.testing.assert_array_equal(sliced.model.W, whole.model.W)
    np.testing.assert_array_equal(sliced.model.b, whole.model.b)
    assert sliced.state.rng_state == whole.state.rng_state and sliced.epochs_done == 2


def test_a_failed_epoch_is_undone_with_its_momentum(fashion):
    """An error from on_progress in the first momentum epoch: no velocity is kept, as if the epoch never began."""
    trainer = small_trainer(fashion)
    before = trainer.state
    config = TrainConfig(momentum=0.9, batch_size=100)

    def fail(done, total):
        raise RuntimeError("stop")

    with pytest.raises(RuntimeError):
        trainer.train_epoch(config, 0, fail)
    after = trainer.state
    assert after.velocity is None and after.epochs_done == 0 and after.rng_state == before.rng_state
    np.testing.assert_array_equal(after.W, before.W)
    record = trainer.train_epoch(config, 0)
    assert record.epoch == 1 and trainer.state.velocity is not None
    restored = trainer.state
    trainer.state = before
    trainer.state = restored  # the setter copies the velocity: the state handed in stays as it was
    trainer.train_epoch(config, 1)
    assert not np.array_equal(trainer.state.velocity[0], restored.velocity[0])


# ---------------------------------------------------------------------------------------------------------------
# model.py: the model's own methods, and the pieces of its file messages.


def test_init_scale_is_checked_and_zero_is_allowed():
    assert not SoftmaxRegression.init(np.random.default_rng(0), sigma=0.0).W.any()
    for sigma in (-0.01, float("nan"), float("inf")):
        with pytest.raises(ValueError) as info:
            SoftmaxRegression.init(np.random.default_rng(0), sigma=sigma)
        assert str(info.value) == f"init scale sigma must be a finite number >= 0, got {sigma}"
    small = SoftmaxRegression.init(np.random.default_rng(0), sigma=1.0, n_features=4, n_classes=3)
    assert small.W.shape == (4, 3) and small.b.shape == (3,) and small.W.dtype == small.b.dtype == np.float32
    assert 0.3 < small.W.std() < 2.0  # sigma 1, not the default 0.01


def test_parameters_of_the_wrong_shape_are_refused():
    with pytest.raises(ModelFileError) as info:
        SoftmaxRegression(np.zeros(784), np.zeros(10))
    assert str(info.value) == "W must be (features, classes) and b (classes,); got (784,) and (10,)"
    with pytest.raises(ModelFileError):
        SoftmaxRegression(np.zeros((784, 10)), np.zeros(9))
    model = SoftmaxRegression(np.zeros((784, 10), dtype=np.float64), [0.0] * 10)
    assert model.W.dtype == model.b.dtype == np.float32 and model.W.flags.c_contiguous


def test_scores_probabilities_and_predictions_of_real_images(fashion):
    model = SoftmaxRegression.init(np.random.default_rng(1), sigma=0.05)
    model.b[...] = np.linspace(-1, 1, 10, dtype=np.float32)
    images, labels = fashion.test_images[:50], fashion.test_labels[:50].astype(np.intp)
    X = features(images)
    z = X.astype(np.float64) @ model.W + model.b
    np.testing.assert_allclose(model.logits(X), z, rtol=1e-5, atol=1e-5)
    # In chunks of 7 rows (the last one short), as a single chunk, and as training computes them.
    for chunk in (7, 50, 4096):
        np.testing.assert_allclose(model.image_logits(images, chunk=chunk), z, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(model.predict_proba(X), scipy_softmax(z, axis=1), rtol=1e-4, atol=1e-7)
    np.testing.assert_array_equal(model.predict(X), np.argmax(z, axis=1))
    loss, acc = model.evaluate(X, labels)
    assert loss == pytest.approx(float(np.mean(scipy_logsumexp(z, axis=1) - z[np.arange(50), labels])), rel=1e-5)
    assert acc == np.mean(np.argmax(z, axis=1) == labels) and 0 < acc < 1
    assert loss == float(np.mean(cross_entropy(model.logits(X), labels), dtype=np.float64))  # summed in float64


def test_copy_is_independent_and_finiteness_looks_at_both_arrays():
    model = SoftmaxRegression.init(np.random.default_rng(0))
    twin = model.copy()
    twin.W[0, 0] = np.nan
    assert model.is_finite() and not twin.is_finite()
    twin = model.copy()
    twin.b[3] = np.inf
    assert model.is_finite() and not twin.is_finite()
    np.testing.assert_array_equal(model.copy().W, model.W)


def test_save_writes_atomically_through_a_symlink(tmp_path):
    model = SoftmaxRegression.init(np.random.default_rng(0))
    (tmp_path / "real.npz").write_bytes(b"old")
    (tmp_path / "link.npz").symlink_to(tmp_path / "real.npz")
    model.save(tmp_path / "link.npz")
    assert (tmp_path / "link.npz").is_symlink()
    np.testing.assert_array_equal(SoftmaxRegression.load(tmp_path / "real.npz").W, model.W)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["link.npz", "real.npz"]  # no temporary file left
    model.save(tmp_path / "new.npz")
    umask = os.umask(0)
    os.umask(umask)
    assert (tmp_path / "new.npz").stat().st_mode & 0o777 == 0o666 & ~umask  # a data file: never executable
    name = temporary_path(tmp_path / "m.npz").name
    assert re.fullmatch(rf"\.m\.npz\.{os.getpid()}-[0-9a-f]{{8}}\.tmp", name)
    assert temporary_path(tmp_path / "m.npz") != temporary_path(tmp_path / "m.npz")


def test_a_failed_save_leaves_the_earlier_file_and_no_temporary(tmp_path, monkeypatch):
    model = SoftmaxRegression.init(np.random.default_rng(0))
    (tmp_path / "m.npz").write_bytes(b"earlier")

    def broken(self):
        raise OSError("disk full")

    monkeypatch.setattr(SoftmaxRegression, "to_bytes", broken)
    with pytest.raises(OSError, match="disk full"):
        model.save(tmp_path / "m.npz")
    assert (tmp_path / "m.npz").read_bytes() == b"earlier"
    assert [p.name for p in tmp_path.iterdir()] == ["m.npz"]


def test_the_pieces_of_file_messages():
    assert [_bytes(n) for n in (0, 9_999, 10_000, 73_000, 999_999, 1_000_000, 4_600_000)] == [
        "0 bytes", "9999 bytes", "10 kB", "73 kB", "1000 kB", "1.0 MB", "4.6 MB"]  # fmt: skip
    assert _and({"W": (1,), "b": (1,)}) == "W and b"
    assert _and({"W": (1,), "b": (1,), "c": (1,)}) == "W, b and c"
    assert _and({"W": (1,)}) == "W"
    assert _listing({}) == "no arrays"
    assert _listing({"W.npy": None}) == "array W"
    assert _listing({f"a{i}.npy": None for i in range(7)}) == "arrays a0, a1, a2, a3, a4 and 2 more"
    assert _listing({f"a{i}.npy": None for i in range(6)}) == "arrays a0, a1, a2, a3, a4 and 1 more"
    assert _listing({f"a{i}.npy": None for i in range(5)}) == "arrays a0, a1, a2, a3, a4"
    assert _listing({"b.npy": None, "<b>x</b>.npy": None}) == "arrays (an oddly named entry), b"
    assert _listing({"x" * 40: None, "y" * 41: None}) == f"arrays {'x' * 40}, (an oddly named entry)"
    assert _short("x" * 40) == "x" * 40
    assert _short("y" * 41) == "y" * 39 + "…"


@pytest.mark.parametrize("broken", ["loss", "W", "b"])
def test_end_epoch_refuses_a_non_finite_loss_or_model(fashion, broken):
    trainer = small_trainer(fashion)
    config = TrainConfig(batch_size=200)
    epoch = trainer.begin_epoch(config, 0)
    trainer.train_batches(config, epoch)
    target = {"loss": epoch.losses, "W": trainer.model.W, "b": trainer.model.b}[broken]
    target.flat[0] = np.nan
    with pytest.raises(TrainingDiverged) as info:
        trainer.end_epoch(config, epoch)
    assert info.value.epoch == 1 and trainer.epochs_done == 0


def test_epoch_seconds_add_up_over_slices_and_the_evaluation(fashion, monkeypatch):
    """With a clock that moves 10 s per reading: 20 s for a slice that read it once between batches, 10 s for the rest,
    then 10 s for the evaluation."""
    trainer = small_trainer(fashion)
    config = TrainConfig(batch_size=200)
    epoch = trainer.begin_epoch(config, 0)
    readings = iter(range(1000, 100_000, 10))
    monkeypatch.setattr(training.time, "perf_counter", lambda: float(next(readings)))
    trainer.train_batches(config, epoch, until=0.0)
    assert (epoch.done, epoch.seconds) == (200, 20.0)
    trainer.train_batches(config, epoch)
    assert (epoch.done, epoch.seconds) == (600, 30.0)
    assert trainer.end_epoch(config, epoch).seconds == 40.0


def test_training_keeps_floating_point_errors_to_itself(fashion):
    """Overflow in the naive softmax is a TrainingDiverged, even when the caller has asked NumPy to raise."""
    trainer = small_trainer(fashion)
    with np.errstate(all="raise"), pytest.raises(TrainingDiverged):
        trainer.train_epoch(TrainConfig(lr=10, softmax="naive", batch_size=50), 0)


def test_image_logits_are_float32_and_the_float64_product_to_its_rounding():
    """The app's scores stay float32 (the guide's numerics), whatever the chunk, and agree with a float64 product."""
    rng = np.random.default_rng(3)
    model = SoftmaxRegression.init(rng)
    model.b[:] = rng.normal(0, 0.1, 10).astype(np.float32)
    images = rng.integers(0, 256, (700, 28, 28), dtype=np.uint8)
    want = images.reshape(700, -1).astype(np.float64) @ model.W.astype(np.float64) / 255 + model.b
    for chunk in (1, 256, 699, 4096):
        z = model.image_logits(images, chunk=chunk)
        assert z.dtype == np.float32 and z.shape == (700, 10)
        np.testing.assert_allclose(z, want, rtol=0, atol=2e-6)


def test_a_trainer_refuses_pixels_that_are_not_uint8_and_says_so():
    rng = np.random.default_rng(0)
    with pytest.raises(TypeError, match=r"uint8 pixels 0\.\.255, got float32"):
        Trainer(SoftmaxRegression.init(rng), np.zeros((4, 28, 28), np.float32), np.zeros(4, np.intp),
                np.zeros((2, 28, 28), np.uint8), np.zeros(2, np.intp), rng)
