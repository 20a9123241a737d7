"""Seconds per training epoch on Fashion-MNIST: the matmul bound, the core's epoch and a textbook NumPy port.

Usage: python benchmarks/bench_epoch.py [--repeats N] [--json out.json] [--data-dir ROOT]

In one run, with medians over --repeats timed rounds after --warmup untimed ones (the four epochs
are interleaved within each round, so drift in the machine's speed hits them alike):

(a) bound     the forward and backward matrix products alone, X_b @ W (k, 10) and X_b.T @ G (784, 10),
              over contiguous float32 slices of X (60000, 784) prescaled to [0, 1], batch 256
              (235 batches, the last of 96 rows): what any epoch of this model must at least cost.
(b) core      softmax_core's epoch with the lesson's defaults (TrainConfig(epochs=1)). Trainer.run
              also evaluates the test set after every epoch; to time only the training pass we call
              the private Trainer._epoch(config, lr, None) directly: one reshuffled pass over the
              60000 images with its updates, train loss and train accuracy.
(c) textbook  a plain NumPy port of the D2L (MXNet) "Softmax Regression from scratch" loop: gather and
              convert each shuffled batch like ToTensor, the naive softmax, cross-entropy by fancy
              indexing, the lesson's accuracy, a hand-written gradient of the summed loss, d2l.sgd,
              and an Accumulator of Python floats. float32 throughout.
(d) memory    peak resident memory (max RSS of the child) of `python -m softmax_core --epochs 5`.
(e) floor     (a) plus what no epoch that reshuffles can skip: each batch's rows gathered from the uint8
              images in a fresh random order and converted to float32, then the same two products, and
              nothing else (no softmax, loss, accuracy or update). floor / textbook above 0.5 means that
              no NumPy epoch can reach the 0.5x target on this machine; floor / bound says how much of
              the 1.5x allowance the gather alone takes.

A sanity line checks that (b) and (c) compute the same thing: one epoch of each from the same W, b and
the same permutation must give train losses within 1e-3. The targets (core <= 1.5x bound, core <=
0.5x textbook, peak <= 400 MB) are printed as PASS/MISS; the exit status is 0 either way, since this
is a report, not a test. The data is found like the CLI finds it: --data-dir, $SOFTMAX_DATA_DIR, ...
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # a standalone script: the package is used from the checkout
    sys.path.insert(0, str(REPO))

from softmax_core import SoftmaxRegression, TrainConfig, Trainer, features, load_dataset
from softmax_core.data import ENV_DATA_DIR, DataError

TARGET_VS_BOUND = 1.5  # core epoch <= 1.5x the matmul bound
TARGET_VS_TEXTBOOK = 0.5  # core epoch <= 0.5x the textbook epoch
TARGET_PEAK_MB = 400  # `python -m softmax_core --epochs 5` peak RSS
LOSS_TOLERANCE = 1e-3  # |core loss - textbook loss| after one epoch from the same start
BLAS_ENV = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")


# ---------------------------------------------------------------- (a) the bound


def bound_epoch(X: np.ndarray, W: np.ndarray, G: np.ndarray, batch_size: int) -> None:
    """The epoch's two matrix products alone, over contiguous float32 slices of X (n, 784)."""
    z = np.empty((batch_size, W.shape[1]), dtype=np.float32)  # (k, 10)
    grad_W = np.empty_like(W)  # (784, 10)
    for start in range(0, len(X), batch_size):
        xb = X[start : start + batch_size]  # (k, 784) view, no copy
        k = len(xb)
        np.matmul(xb, W, out=z[:k])
        np.matmul(xb.T, G[:k], out=grad_W)


# ---------------------------------------------------------------- (e) the floor of a reshuffled epoch


def floor_epoch(images: np.ndarray, W: np.ndarray, G: np.ndarray, batch_size: int, order: np.ndarray) -> None:
    """Only what every reshuffled epoch must do: gather and convert each batch of uint8 rows, then the two products."""
    pixels = np.empty((batch_size, images.shape[1]), dtype=np.uint8)
    xb_buf = np.empty((batch_size, images.shape[1]), dtype=np.float32)
    z = np.empty((batch_size, W.shape[1]), dtype=np.float32)
    grad_W = np.empty_like(W)
    for start in range(0, len(order), batch_size):
        idx = order[start : start + batch_size]
        k = len(idx)
        np.copyto(xb_buf[:k], np.take(images, idx, axis=0, out=pixels[:k], mode="clip"))
        np.matmul(xb_buf[:k], W, out=z[:k])
        np.matmul(xb_buf[:k].T, G[:k], out=grad_W)


# ---------------------------------------------------------------- (c) the textbook port


def data_iter(images: np.ndarray, labels: np.ndarray, batch_size: int, order: np.ndarray) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Shuffled minibatches, each converted like gluon's ToTensor: float32 (k, 784) in [0, 1], int32 (k,)."""
    for start in range(0, len(order), batch_size):
        idx = order[start : start + batch_size]
        X = images[idx].reshape(-1, 784).astype(np.float32) / 255
        y = labels[idx].astype(np.int32)
        yield X, y


def softmax(X: np.ndarray) -> np.ndarray:
    """The lesson's softmax, without the max shift."""
    X_exp = np.exp(X)
    partition = X_exp.sum(1, keepdims=True)
    return X_exp / partition


def net(X: np.ndarray, W: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Class probabilities (k, 10) of rows X (k, 784)."""
    return softmax(np.dot(X.reshape((-1, W.shape[0])), W) + b)


def cross_entropy(y_hat: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Per-sample loss (k,) picked out by fancy indexing."""
    return -np.log(y_hat[range(len(y_hat)), y])


def accuracy(y_hat: np.ndarray, y: np.ndarray) -> float:
    """Number of correct predictions (the lesson's accuracy returns a count, not a fraction)."""
    if len(y_hat.shape) > 1 and y_hat.shape[1] > 1:
        y_hat = y_hat.argmax(axis=1)
    cmp = y_hat.astype(y.dtype) == y
    return float(cmp.astype(y.dtype).sum())


def sgd(params: list[np.ndarray], grads: list[np.ndarray], lr: float, batch_size: int) -> None:
    """d2l.sgd: the gradient is of the summed loss, hence the division by batch_size."""
    for param, grad in zip(params, grads):
        param[:] = param - lr * grad / batch_size


class Accumulator:
    """d2l's Accumulator: n running sums of Python floats."""

    def __init__(self, n: int) -> None:
        self.data = [0.0] * n

    def add(self, *args: float) -> None:
        self.data = [a + float(b) for a, b in zip(self.data, args)]

    def __getitem__(self, idx: int) -> float:
        return self.data[idx]


def textbook_epoch(
    images: np.ndarray, labels: np.ndarray, W: np.ndarray, b: np.ndarray, lr: float, batch_size: int, order: np.ndarray
) -> tuple[float, float]:
    """One epoch of train_epoch_ch3 in NumPy, updating W and b in place; returns (mean loss, accuracy)."""
    metric = Accumulator(3)  # sum of losses, number correct, number of samples
    n_classes = W.shape[1]
    for X, y in data_iter(images, labels, batch_size, order):
        y_hat = net(X, W, b)  # (k, 10)
        l = cross_entropy(y_hat, y)
        # NumPy has no autograd: d(l.sum())/dz = y_hat - onehot(y), z = X @ W + b.
        dz = y_hat - np.eye(n_classes, dtype=np.float32)[y]  # (k, 10)
        grad_W = np.dot(X.T, dz)  # (784, 10)
        grad_b = dz.sum(0)  # (10,)
        sgd([W, b], [grad_W, grad_b], lr, X.shape[0])
        metric.add(float(l.sum()), accuracy(y_hat, y), y.size)
    return metric[0] / metric[2], metric[1] / metric[2]


# ---------------------------------------------------------------- measuring


def timed(fn: Callable[[], object]) -> float:
    """Wall seconds of one call."""
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def sanity_check(dataset, seed: int) -> dict[str, float]:
    """One epoch of (b) and of (c) from the same W, b and permutation; their losses, accuracies and max |dW|."""
    rng = np.random.default_rng(seed)
    model = SoftmaxRegression.init(rng)
    W0, b0 = model.W.copy(), model.b.copy()
    trainer = Trainer.for_dataset(model, dataset, rng)
    config = TrainConfig(epochs=1)
    # The permutation _epoch will draw: a generator in the same state as the trainer's.
    twin = type(rng.bit_generator)()
    twin.state = rng.bit_generator.state
    order = np.random.Generator(twin).permutation(len(dataset.train_labels))
    core_loss, core_acc = trainer._epoch(config, config.lr_at(0), None)
    images = dataset.train_images.reshape(len(dataset.train_images), -1)
    W, b = W0.copy(), b0.copy()
    text_loss, text_acc = textbook_epoch(images, dataset.train_labels, W, b, config.lr, config.batch_size, order)
    return {
        "core_loss": core_loss,
        "textbook_loss": text_loss,
        "loss_diff": abs(core_loss - text_loss),
        "core_acc": core_acc,
        "textbook_acc": text_acc,
        "max_abs_dW": float(np.max(np.abs(model.W - W))),
    }


def peak_memory(data_dir: str | None, epochs: int) -> dict[str, object]:
    """Max RSS (MB) and wall time of `python -m softmax_core --epochs N`, from the child's own rusage."""
    cmd = [sys.executable, "-m", "softmax_core", "--epochs", str(epochs), "--no-download"]
    if data_dir:
        cmd += ["--data-dir", data_dir]
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    output = proc.stdout.read()
    proc.stdout.close()
    # wait4 gives this child's rusage alone (RUSAGE_CHILDREN would be the max over all children).
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    seconds = time.perf_counter() - start
    scale = 1 if sys.platform == "darwin" else 1024  # ru_maxrss: bytes on macOS, KiB on Linux
    return {
        "command": " ".join(["python", *cmd[1:]]),
        "exit_status": proc.returncode,
        "peak_rss_mb": usage.ru_maxrss * scale / 1e6,
        "seconds": seconds,
        "last_line": output.strip().splitlines()[-1] if output.strip() else "",
    }


def machine_info() -> dict[str, object]:
    """NumPy, BLAS and CPU facts that explain the figures (without np.show_config's printout)."""
    info: dict[str, object] = {
        "python": platform.python_version(),
        "numpy": np.__version__,
        "machine": platform.machine(),
        "cpu_count": os.cpu_count(),
        "usable_cpus": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "env": {name: os.environ[name] for name in BLAS_ENV if name in os.environ},
    }
    try:  # NumPy >= 1.26 keeps its build configuration as a dict
        blas = np.__config__.CONFIG["Build Dependencies"]["blas"]
        info["blas"] = f"{blas.get('name')} {blas.get('version')}"
    except (AttributeError, KeyError, TypeError):
        info["blas"] = "unknown"
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            info["cpu"] = next(line.split(":", 1)[1].strip() for line in cpuinfo if line.startswith("model name"))
    except (OSError, StopIteration):
        info["cpu"] = platform.processor() or "unknown"
    return info


def verdict(ok: bool) -> str:
    return "PASS" if ok else "MISS"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7, help="timed rounds; medians are reported (default 7)")
    parser.add_argument("--warmup", type=int, default=1, help="untimed rounds first (default 1)")
    parser.add_argument("--json", metavar="OUT.json", help="also write every figure and raw time to this file")
    parser.add_argument("--data-dir", metavar="ROOT", help=f"data root holding fashion-mnist/ (default: ${ENV_DATA_DIR}, ...)")
    parser.add_argument("--seed", type=int, default=0, help="seed of W's init and the shuffles (default 0)")
    parser.add_argument("--memory-epochs", type=int, default=5, help="epochs of the peak-memory run (default 5)")
    args = parser.parse_args(argv)
    if args.repeats < 1 or args.warmup < 0:
        parser.error("--repeats must be >= 1 and --warmup >= 0")

    # First, while this process is still small: Python starts the child by vfork + exec, and Linux
    # counts the parent's memory at exec time in the child's ru_maxrss (it would add the ~190 MB of
    # arrays this script holds later).
    memory = peak_memory(args.data_dir, args.memory_epochs)
    try:
        dataset = load_dataset("fashion-mnist", args.data_dir, download=False)
    except DataError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1

    info = machine_info()
    env = ", ".join(f"{k}={v}" for k, v in info["env"].items()) or "none set"
    print(f"Python {info['python']}, NumPy {info['numpy']}, BLAS {info['blas']}")
    print(f"CPU {info['cpu']} ({info['machine']}), os.cpu_count()={info['cpu_count']}, usable={info['usable_cpus']}")
    print(f"BLAS/threading env: {env}")
    print(f"data: {dataset.title} from {dataset.source}")

    config = TrainConfig(epochs=1)  # the lesson's defaults: lr 0.1, batch 256
    lr, batch = config.lr_at(0), config.batch_size
    n = len(dataset.train_labels)
    print(f"{n} images, batch {batch}: {-(-n // batch)} batches, the last of {n - (n - 1) // batch * batch} rows")

    sanity = sanity_check(dataset, args.seed)
    print(
        f"sanity: one epoch from the same W and permutation: core loss {sanity['core_loss']:.6f}, "
        f"textbook loss {sanity['textbook_loss']:.6f}, |diff| {sanity['loss_diff']:.2e} "
        f"(tolerance {LOSS_TOLERANCE:g}: {'OK' if sanity['loss_diff'] <= LOSS_TOLERANCE else 'DISAGREE'}); "
        f"acc {sanity['core_acc']:.4f} vs {sanity['textbook_acc']:.4f}; max |W diff| {sanity['max_abs_dW']:.1e}"
    )

    # (a) the bound's operands, of the epoch's shapes
    rng = np.random.default_rng(args.seed)
    X_float = np.ascontiguousarray(features(dataset.train_images))  # (60000, 784) float32 in [0, 1]
    W_bound = rng.normal(0, 0.01, size=(X_float.shape[1], 10)).astype(np.float32)  # (784, 10)
    G_bound = rng.normal(0, 0.01, size=(batch, 10)).astype(np.float32)  # (256, 10)
    # (b) the core
    model = SoftmaxRegression.init(rng)
    trainer = Trainer.for_dataset(model, dataset, rng)
    # (c) the textbook port, from its own copy of the same start, shuffling each epoch like a DataLoader
    images = dataset.train_images.reshape(n, -1)
    W_text, b_text = model.W.copy(), model.b.copy()
    text_rng = np.random.default_rng(args.seed + 1)

    epochs: dict[str, Callable[[], object]] = {
        "bound": lambda: bound_epoch(X_float, W_bound, G_bound, batch),
        "core": lambda: trainer._epoch(config, lr, None),  # the training pass of Trainer.run, no test evaluation
        "textbook": lambda: textbook_epoch(images, dataset.train_labels, W_text, b_text, lr, batch, text_rng.permutation(n)),
        "floor": lambda: floor_epoch(images, W_bound, G_bound, batch, text_rng.permutation(n)),
    }
    for _ in range(args.warmup):
        for fn in epochs.values():
            fn()
    times: dict[str, list[float]] = {name: [] for name in epochs}
    for _ in range(args.repeats):
        for name, fn in epochs.items():
            times[name].append(timed(fn))
    median = {name: statistics.median(values) for name, values in times.items()}

    print(f"\nseconds per epoch, median of {args.repeats} (min-max):")
    rows = (("bound", "(a) bound: matmuls only"), ("core", "(b) core Trainer._epoch"), ("textbook", "(c) textbook NumPy port"),
            ("floor", "(e) floor: gather + matmuls"))
    for name, label in rows:
        print(f"  {label:26s} {median[name] * 1e3:8.1f} ms   ({min(times[name]) * 1e3:.1f}-{max(times[name]) * 1e3:.1f})")
    vs_bound = median["core"] / median["bound"]
    vs_textbook = median["core"] / median["textbook"]
    # Ratios of the minima too: on a shared machine they are the less disturbed figure.
    min_vs_bound = min(times["core"]) / min(times["bound"])
    min_vs_textbook = min(times["core"]) / min(times["textbook"])
    print(
        f"core / bound    = {vs_bound:5.2f}x   target <= {TARGET_VS_BOUND}x   {verdict(vs_bound <= TARGET_VS_BOUND)}"
        f"   (ratio of minima {min_vs_bound:.2f}x)"
    )
    print(
        f"core / textbook = {vs_textbook:5.2f}x   target <= {TARGET_VS_TEXTBOOK}x   {verdict(vs_textbook <= TARGET_VS_TEXTBOOK)}"
        f"   (ratio of minima {min_vs_textbook:.2f}x)"
    )
    floor_vs_textbook = median["floor"] / median["textbook"]
    floor_vs_bound = median["floor"] / median["bound"]
    print(
        f"floor / textbook = {floor_vs_textbook:4.2f}x, floor / bound = {floor_vs_bound:4.2f}x   "
        f"(the gather and the products alone; {'above' if floor_vs_textbook > TARGET_VS_TEXTBOOK else 'within'} "
        f"the {TARGET_VS_TEXTBOOK}x textbook target)"
    )

    peak_ok = memory["exit_status"] == 0 and memory["peak_rss_mb"] <= TARGET_PEAK_MB
    print(
        f"\n(d) peak RSS of `{memory['command']}`: {memory['peak_rss_mb']:.0f} MB   target <= {TARGET_PEAK_MB} MB   "
        f"{verdict(peak_ok)}   (exit {memory['exit_status']}, {memory['seconds']:.1f} s; {memory['last_line']})"
    )

    if args.json:
        report = {
            "machine": info,
            "repeats": args.repeats,
            "warmup": args.warmup,
            "batch_size": batch,
            "sanity": sanity,
            "seconds_per_epoch_median": median,
            "seconds_per_epoch_all": times,
            "core_over_bound": vs_bound,
            "core_over_textbook": vs_textbook,
            "core_over_bound_of_minima": min_vs_bound,
            "core_over_textbook_of_minima": min_vs_textbook,
            "floor_over_textbook": floor_vs_textbook,
            "floor_over_bound": floor_vs_bound,
            "memory": memory,
            "targets": {
                "core_over_bound": [TARGET_VS_BOUND, vs_bound <= TARGET_VS_BOUND],
                "core_over_textbook": [TARGET_VS_TEXTBOOK, vs_textbook <= TARGET_VS_TEXTBOOK],
                "peak_rss_mb": [TARGET_PEAK_MB, peak_ok],
            },
        }
        Path(args.json).write_text(json.dumps(report, indent=2) + "\n")
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
