"""Fair turns: a classmate's default Train beside a run at batch size 1 for 100 epochs, against the same Train alone.

Both go through the engine the dashboard uses (softmax_core.engine: worker processes, 0.25 s slices,
round-robin), with the pool's default size. Reported: the seconds from submitting the lesson's default
job (5 epochs, batch 256) to its 5th epoch, alone (the reference, measured in the same run) and while
the long run trains, as medians over --repeats, and their ratio against the target (<= 2x).

    SOFTMAX_DATA_DIR=ROOT python benchmarks/bench_fairness.py [--repeats 5]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402

from softmax_core import SoftmaxRegression, TrainConfig, Trainer, load_dataset  # noqa: E402
from softmax_core.engine import Engine, Job, default_workers  # noqa: E402
from softmax_core.shared import share, shared_ref  # noqa: E402

TARGET_RATIO = 2.0


def state(dataset, seed: int):
    """A fresh model's training state, as a new session's."""
    rng = np.random.default_rng(seed)
    return Trainer.for_dataset(SoftmaxRegression.init(rng), dataset, rng).state


def time_job(engine: Engine, dataset, seed: int) -> float:
    """Seconds from submitting the lesson's default job to its last epoch."""
    began = time.perf_counter()
    job = engine.submit(Job(shared_ref(dataset), state(dataset, seed), TrainConfig()))
    while job.active:
        time.sleep(0.005)
    if job.status != "finished":
        raise RuntimeError(f"the job ended {job.status}: {job.message}")
    return time.perf_counter() - began


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args(argv)
    dataset = share(load_dataset("fashion-mnist", download=False))
    engine = Engine()
    try:
        time_job(engine, dataset, 99)  # the workers map the data and warm up
        alone, beside = [], []
        for k in range(args.repeats):
            alone.append(time_job(engine, dataset, k))
            hog = engine.submit(Job(shared_ref(dataset), state(dataset, 100 + k), TrainConfig(batch_size=1, lr=0.01, epochs=100)))
            while hog.progress[0] == 0:
                time.sleep(0.005)
            beside.append(time_job(engine, dataset, k))
            hog.cancel()
            done, total = hog.progress
            print(f"repeat {k + 1}: alone {alone[-1]:.2f} s, beside the batch-1 run {beside[-1]:.2f} s "
                  f"(it had trained {done:,} of {total:,} images of its first epoch by then)")
    finally:
        engine.close()
    ratio = statistics.median(beside) / statistics.median(alone)
    print(f"pool of {default_workers()} workers; default Train -> epoch 5: alone median {statistics.median(alone):.2f} s, beside a "
          f"batch-1 100-epoch run median {statistics.median(beside):.2f} s: ratio {ratio:.2f}x (target <= {TARGET_RATIO:g}x) "
          f"{'PASS' if ratio <= TARGET_RATIO else 'MISS'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
