"""The classroom engine: worker processes, fair slices, cancel, dead workers, and the page's Session on top."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable

import numpy as np
import pytest
from threadpoolctl import threadpool_limits

from softmax_core import Dataset, SoftmaxRegression, TrainConfig, Trainer
from softmax_core import engine as engine_module
from softmax_core.engine import Engine, Job
from softmax_core.shared import share, shared_ref
from ui.session import Session, Setup

LIMIT = 120.0  # seconds any wait below may take before the test fails (a loaded CI machine is slow, not wrong)


def until(condition: Callable[[], bool], what: str, limit: float = LIMIT) -> None:
    """Poll condition until it holds; fail naming what did not happen."""
    deadline = time.monotonic() + limit
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"{what} did not happen within {limit:.0f} s")
        time.sleep(0.01)


@pytest.fixture(scope="module")
def data(fashion: Dataset) -> Dataset:
    """Fashion-MNIST on arrays the workers map too."""
    return share(fashion)


@pytest.fixture(scope="module")
def engine() -> Engine:
    pool = Engine(workers=2)
    yield pool
    pool.close()


def trainer(data: Dataset, seed: int) -> Trainer:
    rng = np.random.default_rng(seed)
    return Trainer.for_dataset(SoftmaxRegression.init(rng), data, rng)


def alone(data: Dataset, seed: int, config: TrainConfig) -> Trainer:
    """The same run in this process, with one BLAS thread as the workers have."""
    t = trainer(data, seed)
    with threadpool_limits(1, user_api="blas"):
        t.records = list(t.run(config))
    return t


def test_slices_train_exactly_what_one_process_trains(data: Dataset) -> None:
    config = TrainConfig(epochs=2, momentum=0.5, weight_decay=1e-4, schedule="cosine", batch_size=200)
    pool = Engine(workers=1, slice_seconds=0.002)  # many slices per epoch: every resume point is exercised
    try:
        job = pool.submit(Job(shared_ref(data), trainer(data, 3).state, config))
        until(lambda: not job.active, "the job's end")
    finally:
        pool.close()
    reference = alone(data, 3, config)
    assert job.status == "finished"
    assert [r.log_line() for r in job.records] == [r.log_line() for r in reference.records]
    assert [(r.train_loss, r.train_acc, r.test_loss, r.test_acc, r.lr) for r in job.records] == \
        [(r.train_loss, r.train_acc, r.test_loss, r.test_acc, r.lr) for r in reference.records]
    np.testing.assert_array_equal(job.committed.W, reference.model.W)
    np.testing.assert_array_equal(job.committed.b, reference.model.b)
    np.testing.assert_array_equal(job.committed.velocity[0], reference._velocity[0])
    assert job.committed.epochs_done == 2 and job.committed.rng_state == reference.rng.bit_generator.state


def test_four_sessions_at_once_without_crosstalk(data: Dataset, engine: Engine) -> None:
    config = TrainConfig(epochs=2)
    jobs = [engine.submit(Job(shared_ref(data), trainer(data, seed).state, config)) for seed in range(4)]
    until(lambda: not any(job.active for job in jobs), "all four jobs' end")
    for seed, job in enumerate(jobs):
        reference = alone(data, seed, config)
        assert job.status == "finished", job.message
        assert [r.log_line() for r in job.records] == [r.log_line() for r in reference.records]
        np.testing.assert_array_equal(job.committed.W, reference.model.W)
        np.testing.assert_array_equal(job.committed.b, reference.model.b)


def test_a_long_run_at_batch_size_1_does_not_hold_up_a_classmate(data: Dataset) -> None:
    pool = Engine(workers=1)  # one core for both: only the turns can keep the classmate moving
    try:
        hog = pool.submit(Job(shared_ref(data), trainer(data, 0).state, TrainConfig(batch_size=1, lr=0.01, epochs=100)))
        until(lambda: hog.progress[0] > 0, "the long run's first slice")
        classmate = pool.submit(Job(shared_ref(data), trainer(data, 1).state, TrainConfig()))
        until(lambda: not classmate.active, "the classmate's five epochs")
        # An epoch at batch size 1 is 60,000 updates, hundreds of slices: the classmate's five epochs at batch
        # 256 took their turns in between, so the long run is still in its first epoch, and it moved meanwhile.
        assert classmate.status == "finished" and len(classmate.records) == 5
        assert hog.active and hog.epochs_done == 0 and 0 < hog.progress[0] < hog.progress[1]
        loss, acc = hog.running  # the figures of the epoch on its way, for the page's live point
        assert np.isfinite(loss) and 0 <= acc <= 1
        assert hog.cancel("by you") and hog.status == "stopped"
        assert hog.stopped_during is not None and hog.stopped_during[0] == 1 and hog.stopped_during[2] == 60000
        np.testing.assert_array_equal(hog.committed.W, trainer(data, 0).model.W)  # the partial epoch is undone
    finally:
        pool.close()


def test_cancel_takes_no_record_after_it(data: Dataset, engine: Engine) -> None:
    job = engine.submit(Job(shared_ref(data), trainer(data, 5).state, TrainConfig(epochs=50)))
    until(lambda: job.epochs_done >= 1, "the first epoch")
    assert job.cancel("by you")
    kept, committed = job.epochs_done, job.committed
    assert not job.cancel("again")  # an ended job stays as it ended
    until(engine.idle, "the slice in flight at Stop to come back")
    assert job.epochs_done == kept and job.committed is committed and job.status == "stopped"


def test_a_killed_worker_is_replaced_and_its_job_says_so(data: Dataset) -> None:
    pool = Engine(workers=1)
    try:
        job = pool.submit(Job(shared_ref(data), trainer(data, 0).state, TrainConfig(batch_size=1, lr=0.01, epochs=3)))
        until(lambda: job.progress[0] > 0, "the first slice")
        os.kill(pool.worker_pids()[0], signal.SIGKILL)
        until(lambda: not job.active, "the job's end after its worker died")
        assert job.status == "failed" and "stopped unexpectedly" in job.message and "finished epochs are kept" in job.message
        assert job.epochs_done == 0
        np.testing.assert_array_equal(job.committed.W, trainer(data, 0).model.W)
        again = pool.submit(Job(shared_ref(data), trainer(data, 1).state, TrainConfig(epochs=1)))
        until(lambda: not again.active, "a job on the new worker")
        assert again.status == "finished" and again.records[0].log_line() == alone(data, 1, TrainConfig(epochs=1)).records[0].log_line()
    finally:
        pool.close()


def test_rapid_train_stop_reset_never_leaves_a_run_training(data: Dataset, engine: Engine) -> None:
    session = Session(lambda: engine)
    config = TrainConfig(epochs=3)
    for seed in range(10):  # ten Train clicks in a row
        session.new_model(data, Setup(seed=seed), config)
        session.start(config)
    session.stop()
    session.new_model(data, Setup(seed=11), config)  # Reset
    session.start(config)
    session.new_model(data, Setup(seed=12), config)  # Reset while training
    assert session.wait(LIMIT)
    until(engine.idle, "the slices in flight at the clicks to come back")  # and they must change nothing
    assert [r.id for r in session.runs] == list(range(1, 12))  # one run per click that started, in order
    assert all(r.status == "stopped" for r in session.runs), [(r.id, r.status) for r in session.runs]
    assert all(r.trained_epochs <= config.epochs for r in session.runs)
    assert session.run.status == "ready" and session.run.trained_epochs == 0
    session.start(config)  # and the next Train works
    assert session.wait(LIMIT) and session.run.status == "finished" and session.run.trained_epochs == 3


def test_a_diverging_run_stops_cleanly_with_the_last_finite_model(data: Dataset, engine: Engine) -> None:
    session = Session(lambda: engine)
    config = TrainConfig(lr=10.0, softmax="naive", epochs=5)
    session.new_model(data, Setup(), config)
    before = session.model.W.copy()
    session.start(config)
    assert session.wait(LIMIT)
    assert session.run.status == "diverged" and "diverged in epoch 1" in session.run.message
    assert session.run.trained_epochs == 0 and session.model.is_finite()
    np.testing.assert_array_equal(session.model.W, before)


def test_a_long_run_behind_a_stream_of_short_ones_still_gets_turns(data: Dataset) -> None:
    """Least work left goes first, but a job that has waited long enough gets a share of the turns."""
    pool = Engine(workers=1, starve_seconds=0.3)  # one core: every turn the long run gets is one a short run did not
    states = [trainer(data, seed).state for seed in range(12)]
    shorts: list[Job] = []
    seen: list[tuple[int, int]] = []  # the long run's (epochs done, images done) as each short run ends

    class NextShort:
        """As a short run ends, the next one comes: a class whose shorter runs never stop coming."""

        def on_epoch(self, job: Job, record) -> None:
            pass

        def on_end(self, job: Job) -> None:
            seen.append((long.epochs_done, long.progress[0]))
            if len(shorts) < len(states):
                submit_short()

    def submit_short() -> None:
        shorts.append(pool.submit(Job(shared_ref(data), states[len(shorts)], TrainConfig(epochs=1), listener=NextShort())))

    long = Job(shared_ref(data), trainer(data, 99).state, TrainConfig(epochs=3))  # made before any short run can end and read it
    try:
        submit_short()
        pool.submit(long)
        until(lambda: len(shorts) == len(states) and not any(job.active for job in shorts), "the twelve short runs' end")
        # There was always a short run waiting, with less work left than the long one: by that rule alone the
        # long run would have had no turn until the last of them ended.
        assert all(job.status == "finished" for job in shorts)
        assert seen[-1] != (0, 0), f"the long run had no turn while twelve shorter runs came and went: {seen}"
        until(lambda: not long.active, "the long run's end")
        assert long.status == "finished" and long.epochs_done == 3
    finally:
        pool.close()


def test_the_next_epoch_waits_for_the_page_to_draw_the_last_and_no_longer(data: Dataset, engine: Engine, monkeypatch) -> None:
    """One chart point per epoch: an epoch waits for the page to draw the one before, and starts once it has."""
    monkeypatch.setattr(engine_module, "DRAW_WAIT", 600.0)  # only the page's drawing can let the next epoch start in time
    job = engine.submit(Job(shared_ref(data), trainer(data, 5).state, TrainConfig(epochs=3)))
    until(lambda: job.epochs_done == 1, "epoch 1")
    time.sleep(1.0)
    assert job.epochs_done == 1 and job.progress[0] == 0, "epoch 2 began before the page had drawn epoch 1"
    for epoch in (1, 2):
        job.drawn(epoch)  # as the page's live area does when it draws the epoch
        until(lambda e=epoch: job.epochs_done > e or not job.active, f"epoch {epoch + 1} once epoch {epoch} was drawn", limit=60)
    assert job.status == "finished" and job.epochs_done == 3
