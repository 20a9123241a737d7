"""Command line: train on the real data and print the lesson's per-epoch lines."""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
from pathlib import Path

import numpy as np

from .data import DATASETS, ENV_CACHE_DIR, ENV_DATA_DIR, DataError, load_dataset
from .model import SIGMA, ModelFileError, SoftmaxRegression, temporary_path
from .training import SCHEDULES, SOFTMAXES, ConfigError, TrainConfig, Trainer, TrainingDiverged

# Ranges TrainConfig checks but whose messages there do not state the upper limit (see _check_ranges).
MAX_BATCH_SIZE = 10**7
MAX_STEP_SIZE = 10_000
MAX_SIGMA = 1.0  # the dashboard's range too; larger inits only saturate the softmax


class _BadFile(Exception):
    """A --save or --load path that cannot be used; the message is the one line shown."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line, not argparse's usage block
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of `python -m softmax_core`."""
    parser = _Parser(
        prog="python -m softmax_core",
        description="Train softmax regression from scratch (NumPy) on Fashion-MNIST or MNIST.",
        epilog=(
            f"With --data-dir, the data is read from ROOT/<dataset> and nowhere else. Without it, it is looked for "
            f"in ${ENV_DATA_DIR}, /usr/share/datasets (Debian package dataset-fashion-mnist) and the cache "
            f"(${ENV_CACHE_DIR}), then downloaded into the cache."
        ),
    )
    lesson = TrainConfig()  # the defaults are the lesson's, as the core defines them
    parser.add_argument("--epochs", type=int, default=lesson.epochs, help="passes over the training set (default %(default)s)")
    parser.add_argument("--lr", type=float, default=lesson.lr, help="learning rate (default %(default)s)")
    parser.add_argument("--batch-size", type=int, default=lesson.batch_size, help="minibatch size (default %(default)s)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the random generator, >= 0 (default %(default)s)")
    parser.add_argument("--sigma", type=float, default=SIGMA, help="std of the initial weights, 0 to 1 (default %(default)s)")
    parser.add_argument("--momentum", type=float, default=lesson.momentum, help="SGD momentum (default %(default)s)")
    parser.add_argument("--weight-decay", type=float, default=lesson.weight_decay, help="L2 penalty on W (default %(default)s)")
    parser.add_argument("--schedule", choices=SCHEDULES, default=lesson.schedule, help="learning-rate schedule")
    parser.add_argument("--step-size", type=int, default=lesson.step_size, help="epochs between decays of --schedule step")
    parser.add_argument("--gamma", type=float, default=lesson.gamma, help="decay factor of --schedule step")
    parser.add_argument("--softmax", choices=SOFTMAXES, default=lesson.softmax, help="naive: the lesson's exp(z)/sum, which overflows at large lr")
    parser.add_argument("--dataset", choices=list(DATASETS), default="fashion-mnist")
    parser.add_argument("--data-dir", metavar="ROOT", help="read the data from ROOT/<dataset>/*.gz only")
    parser.add_argument("--no-download", action="store_true", help="fail instead of downloading missing data")
    parser.add_argument("--save", metavar="FILE.npz", help="write the trained W and b to this file")
    parser.add_argument("--load", metavar="FILE.npz", help="start from these parameters instead of a fresh init")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the command line; return the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    # Every argument is checked before the data is loaded: a mistake costs no wait and no training.
    try:
        _check_ranges(args)
        config = TrainConfig(
            lr=args.lr,
            batch_size=args.batch_size,
            epochs=args.epochs,
            momentum=args.momentum,
            weight_decay=args.weight_decay,
            schedule=args.schedule,
            step_size=args.step_size,
            gamma=args.gamma,
            softmax=args.softmax,
        )
    except ConfigError as err:
        parser.error(str(err))  # exits with status 2 and a one-line message
    try:
        if args.save is not None:
            _check_save(args.save)
        loaded = None if args.load is None else _load_model(args.load)
    except _BadFile as err:
        parser.exit(2, f"{parser.prog}: error: {err}\n")  # like parser.error, without pointing at --help

    try:
        dataset = load_dataset(args.dataset, args.data_dir, download=not args.no_download, progress=_show_download)
    except DataError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("stopped before training", file=sys.stderr)
        return 130
    rng = np.random.default_rng(args.seed)
    model = loaded if loaded is not None else SoftmaxRegression.init(rng, sigma=args.sigma)
    trainer = Trainer.for_dataset(model, dataset, rng)

    _, test_acc = trainer.evaluate("test")
    print(f"{dataset.title} from {dataset.source} ({dataset.source_kind})")
    print(f"untrained test acc {test_acc:.3f}")
    status = 0
    try:
        for record in trainer.run(config):
            print(record.log_line(), flush=True)
    except TrainingDiverged as err:
        print(f"warning: {err}", file=sys.stderr)
        status = 3
    except KeyboardInterrupt:
        print("stopped; the finished epochs are kept", file=sys.stderr)
        status = 130
    if args.save is not None:
        if not model.is_finite():
            print(f"error: {args.save} was not written: the parameters are not finite numbers", file=sys.stderr)
            return status or 1
        try:
            model.save(args.save)
        except OSError as err:  # checked up front, but the disk may have filled or the folder changed since
            print(f"error: could not write {args.save} ({err.strerror or err})", file=sys.stderr)
            return 1
        print(f"saved W {model.W.shape} and b {model.b.shape} to {args.save}")
    return status


def _check_ranges(args: argparse.Namespace) -> None:
    """The ranges whose TrainConfig messages leave out the upper limit, and the seed and sigma TrainConfig does not hold."""
    if not 1 <= args.batch_size <= MAX_BATCH_SIZE:
        raise ConfigError(f"batch size must be a whole number from 1 to {MAX_BATCH_SIZE}; got {args.batch_size}")
    if not 1 <= args.step_size <= MAX_STEP_SIZE:
        raise ConfigError(f"step size must be a whole number from 1 to {MAX_STEP_SIZE}; got {args.step_size}")
    if args.seed < 0:
        raise ConfigError(f"seed must be a whole number >= 0; got {args.seed}")
    if not (np.isfinite(args.sigma) and 0 <= args.sigma <= MAX_SIGMA):
        raise ConfigError(f"sigma must be a number from 0 to {MAX_SIGMA:g}; got {args.sigma}")
    if args.data_dir is not None and not args.data_dir:
        raise ConfigError("--data-dir needs a folder; got an empty path")


def _check_save(path: str) -> None:
    """Refuse a --save path that could not be written, before any training (nothing is created or changed)."""
    if not path:
        raise _BadFile("--save needs a file name; got an empty path")
    target = Path(os.path.realpath(path))  # SoftmaxRegression.save writes through symlinks
    folder = target.parent
    try:
        if target.is_dir():
            raise _BadFile(f"--save {path} is a folder; give a file name such as {Path(path) / 'model.npz'}")
        if target.exists() and not target.is_file():
            raise _BadFile(f"--save {path} is not a regular file")
        if not folder.exists():
            raise _BadFile(f"--save {path}: the folder {folder} does not exist")
        if not folder.is_dir():
            raise _BadFile(f"--save {path}: {folder} is not a folder")
    except OSError as err:  # e.g. a folder on the way that we may not look into
        raise _BadFile(f"--save {path}: cannot look there ({err.strerror or err})") from None
    # The save writes a temporary file there and renames it, so creating one is the true test.
    probe = temporary_path(target)
    try:
        fd = os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except OSError as err:
        raise _BadFile(f"--save {path}: cannot create a file in {folder} ({err.strerror or err})") from None
    os.close(fd)
    with contextlib.suppress(OSError):
        os.unlink(probe)


def _load_model(path: str) -> SoftmaxRegression:
    """The --load model, or _BadFile with the one reason it cannot be used."""
    try:
        return SoftmaxRegression.load(path)
    except ModelFileError as err:
        raise _BadFile(f"--load: {err}") from None


def _show_download(file_name: str, done: int, total: int) -> None:
    percent = f"{100 * done / total:5.1f}%" if total else f"{done / 1e6:.1f} MB"
    end = "\n" if total and done >= total else ""
    print(f"\rdownloading {file_name}: {percent}", end=end, file=sys.stderr, flush=True)
