"""Command line: train on the real data and print the lesson's per-epoch lines."""

from __future__ import annotations

import argparse
import sys

import numpy as np

from .data import DATASETS, ENV_CACHE_DIR, ENV_DATA_DIR, DataError, load_dataset
from .model import SIGMA, SoftmaxRegression
from .training import SCHEDULES, SOFTMAXES, ConfigError, TrainConfig, Trainer, TrainingDiverged


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line, not argparse's usage block
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of `python -m softmax_core`."""
    parser = _Parser(
        prog="python -m softmax_core",
        description="Train softmax regression from scratch (NumPy) on Fashion-MNIST or MNIST.",
        epilog=(
            f"Data is looked for in --data-dir, ${ENV_DATA_DIR}, /usr/share/datasets (Debian package "
            f"dataset-fashion-mnist) and the cache (${ENV_CACHE_DIR}), then downloaded into the cache."
        ),
    )
    lesson = TrainConfig()  # the defaults are the lesson's, as the core defines them
    parser.add_argument("--epochs", type=int, default=lesson.epochs, help="passes over the training set (default %(default)s)")
    parser.add_argument("--lr", type=float, default=lesson.lr, help="learning rate (default %(default)s)")
    parser.add_argument("--batch-size", type=int, default=lesson.batch_size, help="minibatch size (default %(default)s)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the random generator (default %(default)s)")
    parser.add_argument("--sigma", type=float, default=SIGMA, help="std of the initial weights (default %(default)s)")
    parser.add_argument("--momentum", type=float, default=lesson.momentum, help="SGD momentum (default %(default)s)")
    parser.add_argument("--weight-decay", type=float, default=lesson.weight_decay, help="L2 penalty on W (default %(default)s)")
    parser.add_argument("--schedule", choices=SCHEDULES, default=lesson.schedule, help="learning-rate schedule")
    parser.add_argument("--step-size", type=int, default=lesson.step_size, help="epochs between decays of --schedule step")
    parser.add_argument("--gamma", type=float, default=lesson.gamma, help="decay factor of --schedule step")
    parser.add_argument("--softmax", choices=SOFTMAXES, default=lesson.softmax, help="naive: the lesson's exp(z)/sum, which overflows at large lr")
    parser.add_argument("--dataset", choices=list(DATASETS), default="fashion-mnist")
    parser.add_argument("--data-dir", metavar="ROOT", help="folder holding ROOT/<dataset>/*.gz")
    parser.add_argument("--no-download", action="store_true", help="fail instead of downloading missing data")
    parser.add_argument("--save", metavar="FILE.npz", help="write the trained W and b to this file")
    parser.add_argument("--load", metavar="FILE.npz", help="start from these parameters instead of a fresh init")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the command line; return the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
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
        if not (np.isfinite(args.sigma) and args.sigma >= 0):
            raise ConfigError(f"sigma must be a number >= 0; got {args.sigma}")
    except ConfigError as err:
        parser.error(str(err))  # exits with status 2 and a one-line message

    try:
        dataset = load_dataset(args.dataset, args.data_dir, download=not args.no_download, progress=_show_download)
    except DataError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    rng = np.random.default_rng(args.seed)
    if args.load:
        try:
            model = SoftmaxRegression.load(args.load)
        except (OSError, ValueError) as err:
            print(f"error: cannot use {args.load}: {err}", file=sys.stderr)
            return 1
    else:
        model = SoftmaxRegression.init(rng, sigma=args.sigma)
    trainer = Trainer.for_dataset(model, dataset, rng)

    _, test_acc = trainer.evaluate("test")
    print(f"{dataset.title} from {dataset.source}")
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
    if args.save:
        model.save(args.save)
        print(f"saved W {model.W.shape} and b {model.b.shape} to {args.save}")
    return status


def _show_download(file_name: str, done: int, total: int) -> None:
    percent = f"{100 * done / total:5.1f}%" if total else f"{done / 1e6:.1f} MB"
    end = "\n" if total and done >= total else ""
    print(f"\rdownloading {file_name}: {percent}", end=end, file=sys.stderr, flush=True)
