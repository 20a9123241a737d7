"""Seconds per training epoch on Fashion-MNIST: the matmul bound, the core's epoch and its plain reference twin.

Usage: python benchmarks/bench_epoch.py [--repeats N] [--json out.json] [--data-dir ROOT]

In one run, with medians over --repeats timed rounds after --warmup untimed ones (the four epochs
are interleaved within each round, so drift in the machine's speed hits them alike):

(a) bound     the forward and backward matrix products alone, X_b @ W (k, 10) and X_b.T @ G (784, 10),
              over contiguous float32 slices of X (60000, 784) prescaled to [0, 1], batch 256
              (235 batches, the last of 96 rows): what any epoch of this model must at least cost.
(b) core      softmax_core's epoch with the lesson's defaults (TrainConfig(epochs=1)), through the public
              Trainer.run on a Trainer whose test split is one image, so that the test evaluation run
              adds after every epoch costs nothing: one reshuffled pass over the 60000 images with its
              updates, train loss and train accuracy.
(c) reference softmax_core.reference.train_epoch, the lesson's loop in plain NumPy with the same config
              as (b): each shuffled batch gathered and converted to float32, softmax, cross-entropy by
              fancy indexing, the lesson's accuracy count, the hand-written gradient, sgd, and sums in
              Python floats. float32 throughout.
(d) memory    peak resident memory (max RSS of the child) of `python -m softmax_core --epochs 5`.
(e) floor     (a) plus what no epoch that reshuffles can skip: each batch's rows gathered from the uint8
              images in a fresh random order and converted to float32, then the same two products, and
              nothing else (no softmax, loss, accuracy or update). floor / reference above 0.5 means that
              no NumPy epoch can reach the 0.5x target on this machine; floor / bound says how much of
              the 1.5x allowance the gather alone takes.

Before timing, one epoch of (b) and of (c) from the same W, b and generator state must agree to float32
rounding (train loss, train and test accuracy, W and b, as tests/test_reference.py checks); if they do
not, the script says how they differ and exits with status 1 before timing the epochs. The targets
(core <= 1.5x bound, core <= 0.5x reference, peak <= 400 MB) are printed as PASS/MISS and do not change
the exit status: they are a report, not a test. The data is found like the CLI finds it: --data-dir,
$SOFTMAX_DATA_DIR, ...
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # a standalone script: the package is used from the checkout
    sys.path.insert(0, str(REPO))

from softmax_core import SoftmaxRegression, TrainConfig, Trainer, features, load_dataset, reference  # noqa: E402
from softmax_core.data import ENV_DATA_DIR, DataError  # noqa: E402

TARGET_VS_BOUND = 1.5  # core epoch <= 1.5x the matmul bound
TARGET_VS_REFERENCE = 0.5  # core epoch <= 0.5x the reference epoch
TARGET_PEAK_MB = 400  # `python -m softmax_core --epochs 5` peak RSS
# Core and reference after one epoch from the same start, as in tests/test_reference.py: float32 rounding.
LOSS_RTOL = 1e-5
PARAM_RTOL, PARAM_ATOL = 1e-4, 1e-6
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


# ---------------------------------------------------------------- measuring


def timed(fn: Callable[[], object]) -> float:
    """Wall seconds of one call."""
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def agreement(dataset, seed: int) -> tuple[dict[str, float], list[str]]:
    """One epoch of (b) and of (c) from the same W, b and generator state: their figures, and how they disagree."""
    rng = np.random.default_rng(seed)
    model = SoftmaxRegression.init(rng)
    W, b = model.W.copy(), model.b.copy()
    velocity = [np.zeros_like(W), np.zeros_like(b)]
    twin = np.random.Generator(type(rng.bit_generator)())  # draws the same permutation as the trainer's rng
    twin.bit_generator.state = rng.bit_generator.state
    config = TrainConfig(epochs=1)
    [record] = Trainer.for_dataset(model, dataset, rng).run(config)
    loss, acc = reference.train_epoch(
        dataset.train_images, dataset.train_labels, W, b, velocity, twin,
        config.lr_at(0), config.batch_size, config.momentum, config.weight_decay, config.softmax == "stable",
    )  # fmt: skip
    test_acc = reference.evaluate_accuracy(dataset.test_images, dataset.test_labels, W, b)
    figures = {
        "core_loss": record.train_loss,
        "reference_loss": loss,
        "core_acc": record.train_acc,
        "reference_acc": acc,
        "core_test_acc": record.test_acc,
        "reference_test_acc": test_acc,
        "max_abs_dW": float(np.max(np.abs(model.W - W))),
        "max_abs_db": float(np.max(np.abs(model.b - b))),
    }
    problems = []
    if not math.isclose(record.train_loss, loss, rel_tol=LOSS_RTOL):
        problems.append(f"train loss {record.train_loss:.8f} vs {loss:.8f}")
    # One sample may flip where two scores tie to within float32 rounding.
    if abs(record.train_acc - acc) > 1 / len(dataset.train_labels) + 1e-12:
        problems.append(f"train accuracy {record.train_acc:.5f} vs {acc:.5f}")
    if abs(record.test_acc - test_acc) > 1 / len(dataset.test_labels) + 1e-12:
        problems.append(f"test accuracy {record.test_acc:.5f} vs {test_acc:.5f}")
    for name, core, ref in (("W", model.W, W), ("b", model.b, b)):
        if not np.allclose(core, ref, rtol=PARAM_RTOL, atol=PARAM_ATOL):
            problems.append(f"{name} differs by up to {np.max(np.abs(core - ref)):.1e}")
    return figures, problems


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

    sanity, problems = agreement(dataset, args.seed)
    if problems:
        print(f"error: the core's epoch and softmax_core.reference disagree: {'; '.join(problems)}", file=sys.stderr)
        return 1
    print(
        f"agreement: one epoch from the same W, b and shuffle: loss {sanity['core_loss']:.6f} vs {sanity['reference_loss']:.6f}, "
        f"acc {sanity['core_acc']:.4f} vs {sanity['reference_acc']:.4f}, test acc {sanity['core_test_acc']:.4f} vs "
        f"{sanity['reference_test_acc']:.4f}, max |W diff| {sanity['max_abs_dW']:.1e}, max |b diff| {sanity['max_abs_db']:.1e}: OK"
    )

    # (a) the bound's operands, of the epoch's shapes
    rng = np.random.default_rng(args.seed)
    X_float = np.ascontiguousarray(features(dataset.train_images))  # (60000, 784) float32 in [0, 1]
    W_bound = rng.normal(0, 0.01, size=(X_float.shape[1], 10)).astype(np.float32)  # (784, 10)
    G_bound = rng.normal(0, 0.01, size=(batch, 10)).astype(np.float32)  # (256, 10)
    # (b) the core; a test split of one image, so that run's evaluation after the epoch costs nothing
    model = SoftmaxRegression.init(rng)
    trainer = Trainer(model, dataset.train_images, dataset.train_labels, dataset.test_images[:1], dataset.test_labels[:1], rng)
    # (c) the reference, from its own copy of the same start, with its own shuffles
    images = dataset.train_images.reshape(n, -1)
    W_ref, b_ref = model.W.copy(), model.b.copy()
    velocity = [np.zeros_like(W_ref), np.zeros_like(b_ref)]
    ref_rng = np.random.default_rng(args.seed + 1)
    floor_rng = np.random.default_rng(args.seed + 2)
    stable = config.softmax == "stable"

    epochs: dict[str, Callable[[], object]] = {
        "bound": lambda: bound_epoch(X_float, W_bound, G_bound, batch),
        "core": lambda: list(trainer.run(config)),
        "reference": lambda: reference.train_epoch(images, dataset.train_labels, W_ref, b_ref, velocity, ref_rng, lr, batch, stable=stable),
        "floor": lambda: floor_epoch(images, W_bound, G_bound, batch, floor_rng.permutation(n)),
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
    rows = (("bound", "(a) bound: matmuls only"), ("core", "(b) core Trainer.run"), ("reference", "(c) softmax_core.reference"),
            ("floor", "(e) floor: gather + matmuls"))
    for name, label in rows:
        print(f"  {label:26s} {median[name] * 1e3:8.1f} ms   ({min(times[name]) * 1e3:.1f}-{max(times[name]) * 1e3:.1f})")
    vs_bound = median["core"] / median["bound"]
    vs_reference = median["core"] / median["reference"]
    # Ratios of the minima too: on a shared machine they are the less disturbed figure.
    min_vs_bound = min(times["core"]) / min(times["bound"])
    min_vs_reference = min(times["core"]) / min(times["reference"])
    print(
        f"core / bound    = {vs_bound:5.2f}x   target <= {TARGET_VS_BOUND}x   {verdict(vs_bound <= TARGET_VS_BOUND)}"
        f"   (ratio of minima {min_vs_bound:.2f}x)"
    )
    print(
        f"core / reference = {vs_reference:5.2f}x   target <= {TARGET_VS_REFERENCE}x   {verdict(vs_reference <= TARGET_VS_REFERENCE)}"
        f"   (ratio of minima {min_vs_reference:.2f}x)"
    )
    floor_vs_reference = median["floor"] / median["reference"]
    floor_vs_bound = median["floor"] / median["bound"]
    print(
        f"floor / reference = {floor_vs_reference:4.2f}x, floor / bound = {floor_vs_bound:4.2f}x   "
        f"(the gather and the products alone; {'above' if floor_vs_reference > TARGET_VS_REFERENCE else 'within'} "
        f"the {TARGET_VS_REFERENCE}x reference target)"
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
            "core_over_reference": vs_reference,
            "core_over_bound_of_minima": min_vs_bound,
            "core_over_reference_of_minima": min_vs_reference,
            "floor_over_reference": floor_vs_reference,
            "floor_over_bound": floor_vs_bound,
            "memory": memory,
            "targets": {
                "core_over_bound": [TARGET_VS_BOUND, vs_bound <= TARGET_VS_BOUND],
                "core_over_reference": [TARGET_VS_REFERENCE, vs_reference <= TARGET_VS_REFERENCE],
                "peak_rss_mb": [TARGET_PEAK_MB, peak_ok],
            },
        }
        Path(args.json).write_text(json.dumps(report, indent=2) + "\n")
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
