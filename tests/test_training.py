"""The model and the SGD trainer: gradients, determinism, the lesson's figures on the real data."""

import ast
import math
import re
from pathlib import Path

import numpy as np
import pytest

from softmax_core import (
    ConfigError,
    SoftmaxRegression,
    TrainConfig,
    Trainer,
    TrainingDiverged,
    cross_entropy,
    features,
)

CORE = Path(__file__).resolve().parent.parent / "softmax_core"
# The lesson's log line, checked by its format: the digits themselves are float32 figures rounded for print.
LOG_LINE = re.compile(r"epoch (\d+), loss (\d+\.\d{4}), train acc ([01]\.\d{3}), test acc ([01]\.\d{3})")
# Seed 0, the lesson's defaults, epoch 1 on the full Fashion-MNIST: loss 0.788481, train acc 0.7479, test acc 0.7852.
# Compared as floats with tolerances: the loss is 3e-5 from where its printed 0.7885 turns into 0.7884, a step that
# another float32 BLAS (another order of the sums) could take with nothing wrong.
LESSON_EPOCH_1 = {"train_loss": (0.78848, 2e-5), "train_acc": (0.7479, 1e-3), "test_acc": (0.7852, 1e-3)}


def trainer_for(dataset, seed=0, sigma=0.01, n_train=None):
    rng = np.random.default_rng(seed)
    model = SoftmaxRegression.init(rng, sigma=sigma)
    images, labels = dataset.train_images, dataset.train_labels
    if n_train:
        images, labels = images[:n_train], labels[:n_train]
    return Trainer(model, images, labels, dataset.test_images, dataset.test_labels, rng)


def test_init_is_the_lessons():
    model = SoftmaxRegression.init(np.random.default_rng(0))
    assert model.W.shape == (784, 10) and model.W.dtype == np.float32
    assert model.b.shape == (10,) and not model.b.any()
    assert abs(model.W.std() - 0.01) < 0.0005 and abs(model.W.mean()) < 0.0005


def test_features_scale_pixels_to_unit_interval(fashion):
    X = features(fashion.test_images[:100])
    assert X.shape == (100, 784) and X.dtype == np.float32
    assert X.min() == 0.0 and X.max() == 1.0


def test_one_sgd_step_follows_the_finite_difference_gradient(fashion):
    """A full-batch step of the trainer's fast path moves W and b by -lr times the numerical gradient."""
    n, lr = 64, 0.5
    trainer = trainer_for(fashion, seed=3, sigma=0.1, n_train=n)
    model = trainer.model
    X = features(fashion.train_images[:n]).astype(np.float64)
    y = fashion.train_labels[:n].astype(np.intp)
    W0, b0 = model.W.astype(np.float64), model.b.astype(np.float64)

    def loss(W, b):
        return cross_entropy(X @ W + b, y).mean()

    eps = 1e-5
    rng = np.random.default_rng(0)
    entries = [tuple(rng.integers(0, s) for s in W0.shape) for _ in range(25)]
    entries += [(int(np.argmax(X.sum(0))), k) for k in range(10)]  # a bright pixel: a large gradient
    grad_W = {}
    for i, j in entries:
        Wp, Wm = W0.copy(), W0.copy()
        Wp[i, j] += eps
        Wm[i, j] -= eps
        grad_W[i, j] = (loss(Wp, b0) - loss(Wm, b0)) / (2 * eps)
    grad_b = np.array([(loss(W0, b0 + eps * e) - loss(W0, b0 - eps * e)) / (2 * eps) for e in np.eye(10)])

    list(trainer.run(TrainConfig(lr=lr, batch_size=n, epochs=1)))
    for (i, j), g in grad_W.items():
        assert model.W[i, j] == pytest.approx(W0[i, j] - lr * g, abs=2e-6)
    np.testing.assert_allclose(model.b, b0 - lr * grad_b, atol=2e-6)
    assert np.abs(grad_b).max() > 1e-3  # the check is not vacuous


def test_untrained_accuracy_is_about_one_in_ten(fashion):
    trainer = trainer_for(fashion)
    loss, acc = trainer.evaluate("test")
    assert 0.05 <= acc <= 0.15
    assert loss == pytest.approx(math.log(10), abs=0.1)
    assert trainer.initial_record().epoch == 0


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_lesson_defaults_reproduce_the_lessons_figures(fashion, seed, lesson_runs):
    records = lesson_runs[seed]
    assert [r.epoch for r in records] == [1, 2, 3, 4, 5]
    assert 0.77 <= records[0].train_loss <= 0.80
    assert 0.47 <= records[-1].train_loss <= 0.50
    assert records[-1].test_acc >= 0.79
    assert LOG_LINE.fullmatch(records[-1].log_line()).group(1) == "5"


def test_lesson_defaults_average_test_accuracy(lesson_runs):
    assert np.mean([records[-1].test_acc for records in lesson_runs.values()]) >= 0.81


@pytest.fixture(scope="module")
def lesson_runs(fashion):
    return {seed: list(trainer_for(fashion, seed).run(TrainConfig())) for seed in (0, 1, 2)}


def test_seed_zero_gives_the_documented_first_figures_and_line(lesson_runs):
    first = lesson_runs[0][0]
    for name, (value, tolerance) in LESSON_EPOCH_1.items():
        assert getattr(first, name) == pytest.approx(value, abs=tolerance), name
    match = LOG_LINE.fullmatch(first.log_line())
    assert match, first.log_line()
    epoch, loss, train_acc, test_acc = match.groups()
    # The line shows this record's figures, rounded to 4 and 3 decimals.
    assert int(epoch) == first.epoch == 1
    assert float(loss) == pytest.approx(first.train_loss, abs=5e-5 + 1e-9)
    assert float(train_acc) == pytest.approx(first.train_acc, abs=5e-4 + 1e-9)
    assert float(test_acc) == pytest.approx(first.test_acc, abs=5e-4 + 1e-9)


def test_one_seed_gives_identical_records(fashion):
    def figures(seed):
        return [(r.train_loss, r.train_acc, r.test_loss, r.test_acc) for r in trainer_for(fashion, seed).run(TrainConfig(epochs=2))]

    assert figures(7) == figures(7)
    assert figures(7) != figures(8)


def test_documented_extras_reach_the_convex_optimum(fashion):
    """README: momentum 0.9, lr 0.2, cosine schedule, 20 epochs reaches >= 0.84 test accuracy."""
    records = list(trainer_for(fashion).run(TrainConfig(lr=0.2, momentum=0.9, schedule="cosine", epochs=20)))
    assert records[-1].test_acc >= 0.84


def test_mnist_digits_reach_ninety_percent(mnist):
    records = list(trainer_for(mnist).run(TrainConfig()))
    assert records[-1].test_acc >= 0.90


def test_continue_keeps_training_without_reset(fashion):
    trainer = trainer_for(fashion, n_train=6000)
    first = list(trainer.run(TrainConfig(epochs=2)))
    more = list(trainer.run(TrainConfig(epochs=1, lr=0.05)))
    assert [r.epoch for r in first + more] == [1, 2, 3]
    assert more[0].lr == 0.05
    assert more[0].train_loss < first[0].train_loss


def test_an_interrupted_epoch_is_undone_exactly(fashion):
    """Stopping mid-epoch leaves model, RNG and momentum as after the last finished epoch."""
    config = TrainConfig(epochs=3, momentum=0.9)
    straight = [r.test_acc for r in trainer_for(fashion, n_train=6000).run(config)]

    trainer = trainer_for(fashion, n_train=6000)
    done = [r.test_acc for r in trainer.run(TrainConfig(epochs=1, momentum=0.9))]

    def stop_halfway(count, total):
        if count > total // 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        list(trainer.run(config, stop_halfway, start=1))
    assert trainer.epochs_done == 1
    done += [r.test_acc for r in trainer.run(config, start=1)]
    assert done == straight


def test_divergence_stops_cleanly_and_keeps_the_last_good_model(fashion):
    trainer = trainer_for(fashion, n_train=6000)
    list(trainer.run(TrainConfig(epochs=1)))
    good = trainer.model.copy()
    with pytest.raises(TrainingDiverged) as info:
        list(trainer.run(TrainConfig(lr=10, softmax="naive", epochs=5)))  # the lesson's exp(z) overflows
    assert info.value.epoch == 2
    assert "smaller learning rate" in str(info.value) and "epoch 2" in str(info.value)
    assert "stable softmax" in str(info.value)
    assert trainer.model.is_finite() and trainer.epochs_done == 1
    np.testing.assert_array_equal(trainer.model.W, good.W)
    np.testing.assert_array_equal(trainer.model.b, good.b)
    # The stable form takes the same step without overflowing: large, but finite.
    assert all(np.isfinite(r.train_loss) for r in trainer.run(TrainConfig(lr=10, epochs=2)))


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [(dict(lr=0), "learning rate"), (dict(lr=-1), "learning rate"), (dict(lr=float("nan")), "learning rate"),
     (dict(batch_size=0), "batch size"), (dict(batch_size=2.5), "batch size"), (dict(epochs=0), "epochs"),
     (dict(epochs=10**9), "epochs"), (dict(momentum=1.0), "momentum"), (dict(weight_decay=-1), "weight decay"),
     (dict(schedule="warp"), "schedule"), (dict(softmax="fast"), "softmax"), (dict(lr="0.1"), "learning rate"),
     (dict(epochs=True), "epochs"), (dict(gamma=0), "gamma"), (dict(step_size=0), "step size")],
)
def test_invalid_hyperparameters_are_refused_with_a_reason(kwargs, name):
    """The message names the hyperparameter, says what is allowed and repeats the refused value."""
    with pytest.raises(ConfigError) as info:
        TrainConfig(**kwargs)
    message = str(info.value)
    assert message.startswith(f"{name} must be ") and message.endswith(f"got {next(iter(kwargs.values()))!r}")


def test_schedules():
    assert TrainConfig().lr_at(4) == 0.1
    step = TrainConfig(lr=1.0, schedule="step", step_size=2, gamma=0.5)
    assert [step.lr_at(i) for i in range(5)] == [1.0, 1.0, 0.5, 0.5, 0.25]
    cosine = TrainConfig(lr=1.0, schedule="cosine", epochs=4)
    assert cosine.lr_at(0) == 1.0 and cosine.lr_at(2) == pytest.approx(0.5)


def test_model_files_round_trip_and_refuse_bad_ones(tmp_path):
    model = SoftmaxRegression.init(np.random.default_rng(0))
    model.save(tmp_path / "m.npz")
    loaded = SoftmaxRegression.load(tmp_path / "m.npz")
    np.testing.assert_array_equal(loaded.W, model.W)
    from softmax_core import ModelFileError

    bad = {
        "shape": dict(W=np.zeros((10, 784), np.float32), b=np.zeros(10, np.float32)),
        "nan": dict(W=np.full((784, 10), np.nan, np.float32), b=np.zeros(10, np.float32)),
        "pickle": dict(W=np.array([object()] * 7840, dtype=object).reshape(784, 10), b=np.zeros(10)),
        "names": dict(weights=np.zeros((784, 10))),
        "dtype": dict(W=np.zeros((784, 10), np.int64), b=np.zeros(10, np.int64)),
    }
    for name, arrays in bad.items():
        path = tmp_path / f"{name}.npz"
        np.savez(path, **arrays)
        with pytest.raises(ModelFileError):
            SoftmaxRegression.load(path)
    with pytest.raises(ModelFileError):
        SoftmaxRegression.load(b"not a zip file at all")


def test_the_core_imports_no_user_interface_and_never_prints():
    for path in CORE.glob("*.py"):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.Import | ast.ImportFrom):
                names = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module or ""]
                assert not any(n.split(".")[0] in {"streamlit", "plotly"} for n in names), path
            if path.name != "cli.py" and isinstance(node, ast.Call) and getattr(node.func, "id", "") == "print":
                pytest.fail(f"{path.name} prints")
