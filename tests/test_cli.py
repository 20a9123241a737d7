"""`python -m softmax_core`: the lesson's output on the real data, one-line errors, saved parameters."""

import re
import subprocess
import sys

import numpy as np
import pytest

from softmax_core import SoftmaxRegression

from .conftest import REPO


def cli(*args, env_root=None, timeout=120):
    import os

    env = {**os.environ}
    if env_root is not None:
        env["SOFTMAX_DATA_DIR"] = str(env_root)
    return subprocess.run([sys.executable, "-m", "softmax_core", *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout, check=False)


def test_prints_the_lessons_lines_and_saves_the_model(data_root, tmp_path):
    out = cli("--epochs", "2", "--save", str(tmp_path / "m.npz"), env_root=data_root)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert re.fullmatch(r"untrained test acc 0\.\d{3}", lines[1])
    first = re.fullmatch(r"epoch 1, loss (0\.\d{4}), train acc (0\.\d{3}), test acc (0\.\d{3})", lines[2])
    assert first, lines[2]
    # Seed 0's epoch 1 is loss 0.788481, train acc 0.7479, test acc 0.7852; printed, they are rounded to 4 and 3
    # decimals. Compared as numbers: 0.788481 is 3e-5 from printing as 0.7884, a step another float32 BLAS may take.
    loss, train_acc, test_acc = map(float, first.groups())
    assert loss == pytest.approx(0.78848, abs=2e-5 + 5e-5)
    assert train_acc == pytest.approx(0.7479, abs=1e-3 + 5e-4)
    assert test_acc == pytest.approx(0.7852, abs=1e-3 + 5e-4)
    assert re.fullmatch(r"epoch 2, loss 0\.\d{4}, train acc 0\.\d{3}, test acc 0\.\d{3}", lines[3])
    model = SoftmaxRegression.load(tmp_path / "m.npz")
    assert model.W.shape == (784, 10) and model.is_finite()
    assert out.stderr == ""


@pytest.mark.parametrize(
    "args",
    [("--lr", "0"), ("--lr", "-1"), ("--batch-size", "0"), ("--epochs", "0"), ("--dataset", "cifar"), ("--epochs", "x"), ("--momentum", "1.5")],
)
def test_invalid_arguments_exit_2_with_one_line(args):
    out = cli(*args)
    assert out.returncode == 2
    assert out.stdout == ""
    assert len(out.stderr.strip().splitlines()) == 1 and "error:" in out.stderr
    assert "Traceback" not in out.stderr


def test_divergence_exits_3_with_a_warning(data_root):
    out = cli("--lr", "10", "--softmax", "naive", "--epochs", "2", env_root=data_root)
    assert out.returncode == 3
    assert "diverged in epoch 1" in out.stderr and "Traceback" not in out.stderr


def test_continues_from_a_saved_model(data_root, tmp_path):
    path = tmp_path / "m.npz"
    SoftmaxRegression(np.zeros((784, 10)), np.zeros(10)).save(path)
    out = cli("--epochs", "1", "--load", str(path), env_root=data_root)
    assert out.returncode == 0 and "untrained test acc 0.100" in out.stdout  # all-zero scores: class 0 everywhere
    bad = tmp_path / "bad.npz"
    bad.write_bytes(b"nope")
    out = cli("--epochs", "1", "--load", str(bad), env_root=data_root)
    # A model file that cannot be used is a bad argument: refused (status 2) before the data is loaded.
    assert out.returncode == 2 and f"--load: {bad} is not an .npz (zip) file" in out.stderr and "Traceback" not in out.stderr
