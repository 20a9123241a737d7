"""The run store: round trips of real Run data, owner isolation, threads, processes, crashes and bad files."""

from __future__ import annotations

import json
import math
import os
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from softmax_core import EpochRecord, TrainConfig
from ui.run_store import (
    ENV_RUNS_DB,
    MAX_RUNS,
    SCHEMA_VERSION,
    TABLE,
    RunStore,
    RunStoreError,
    SQLiteRunStore,
    default_path,
    new_owner_token,
    open_store,
    valid_token,
)
from ui.saver import SAVER_BUSY_TIMEOUT, Saver
from ui.session import Run, Setup

REPO = Path(__file__).resolve().parent.parent
CHILD_TIMEOUT = 30  # seconds for a helper process (it imports only the store)


def make_run(run_id: int, epochs: int = 3, status: str = "finished", **config) -> Run:
    """A Run with hand-made records: epoch 0 (untrained) and `epochs` trained epochs."""
    records = [EpochRecord(0, math.nan, math.nan, 2.3026, 0.1, 0.0, 0.0)]
    records += [EpochRecord(e, 0.8 / e, 0.7 + 0.01 * e, 0.6 / e, 0.75 + 0.01 * e, 0.1, 0.25) for e in range(1, epochs + 1)]
    return Run(run_id, Setup("fashion-mnist", seed=run_id, sigma=0.01), TrainConfig(epochs=epochs, **config), records, status, label=f"r{run_id}")


def same_run(a: Run, b: Run) -> bool:
    """Equal runs, NaN equal to NaN (epoch 0 has no training loss)."""
    return json.dumps(a.to_dict(), sort_keys=True) == json.dumps(b.to_dict(), sort_keys=True)


def free_port() -> int:
    """A port the OS hands out now (it may be taken again before it is used: the caller retries)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="session")
def postgres_url() -> str:
    """A throwaway PostgreSQL server (Debian's postgresql package) on loopback, run as the postgres user."""
    binaries = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"))
    if not binaries:
        pytest.fail("PostgreSQL is not installed: apt-get install postgresql (CI installs it)", pytrace=False)
    bin_dir = binaries[-1].parent
    folder = Path(tempfile.mkdtemp(prefix="softmax-pg-"))  # not under pytest's 0700 folder: postgres must enter it
    os.chmod(folder, 0o777)
    as_postgres = ["su", "postgres", "-s", "/bin/sh", "-c"] if os.geteuid() == 0 else ["sh", "-c"]
    subprocess.run([*as_postgres, f"{bin_dir}/initdb -D {folder}/data -U postgres --auth=trust -E UTF8 >/dev/null"], check=True, timeout=120)
    for _ in range(5):  # a free port can be taken by another process before the server binds it: take another
        port = free_port()
        started = subprocess.run([*as_postgres, f"{bin_dir}/pg_ctl -D {folder}/data -o '-k {folder} -p {port} "
                                  f"-c listen_addresses=127.0.0.1' -l {folder}/log -w start >/dev/null"], check=False, timeout=120)
        if started.returncode == 0:
            break
    else:
        pytest.fail(f"PostgreSQL did not start in 5 tries; its log:\n{(folder / 'log').read_text()[-2000:]}", pytrace=False)
    yield f"postgresql://postgres@127.0.0.1:{port}/postgres"
    subprocess.run([*as_postgres, f"{bin_dir}/pg_ctl -D {folder}/data -m immediate stop >/dev/null"], check=False, timeout=60)
    shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request, tmp_path: Path) -> RunStore:
    """The same tests for both stores: SQLite (the default) and PostgreSQL (for several servers)."""
    if request.param == "sqlite":
        store = SQLiteRunStore(tmp_path / "runs.sqlite3")
    else:
        store = open_store(request.getfixturevalue("postgres_url"))
    yield store
    store.close()


def run_child(code: str, *args: str, **popen) -> subprocess.Popen:
    """Start a Python process running code (with the repo importable)."""
    return subprocess.Popen([sys.executable, "-c", textwrap.dedent(code), *args], cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **popen)


def test_tokens() -> None:
    tokens = {new_owner_token() for _ in range(100)}
    assert len(tokens) == 100 and all(valid_token(t) for t in tokens)
    token = next(iter(tokens))
    for junk in ["", token[:-1], token + "A", token[:-1] + "=", token[:-1] + "/", token + "\n", " " + token[1:], "é" * 22, None, 12, [token]]:
        assert not valid_token(junk), junk


def test_round_trip_of_real_runs(store: SQLiteRunStore) -> None:
    owner = new_owner_token()
    runs = [
        make_run(2, epochs=5, momentum=0.9, schedule="cosine", lr=0.2),
        make_run(1),
        Run(3, Setup("mnist", 2, 0.1), TrainConfig(lr=50.0, softmax="naive"),
            make_run(3).records[:2] + [EpochRecord(2, math.inf, 0.1, math.nan, 0.1, 50.0, 0.3)], "diverged", "epoch 2: the loss is not finite"),
        Run(4, Setup(), TrainConfig(), make_run(4).records[:1], "stopped", "stopped by you after epoch 0"),
    ]
    for run in runs:
        store.save(owner, run.to_dict())
    loaded = store.load(owner)
    assert [r["id"] for r in loaded] == [1, 2, 3, 4]  # ordered by id, not by save
    for data, run in zip(loaded, sorted(runs, key=lambda r: r.id), strict=True):
        back = Run.from_dict(data)
        assert same_run(back, run)
        assert back.summary().keys() == run.summary().keys()
    assert math.isinf(Run.from_dict(loaded[2]).records[-1].train_loss)  # a diverged run's inf survives


def test_numpy_scalars_are_stored_as_numbers(store: SQLiteRunStore) -> None:
    np = pytest.importorskip("numpy")
    owner = new_owner_token()
    run = make_run(1).to_dict()
    run["records"][1]["train_loss"] = np.float32(0.5)
    run["records"][1]["epoch"] = np.int64(1)
    store.save(owner, run)
    record = store.load(owner)[0]["records"][1]
    assert record["train_loss"] == 0.5 and record["epoch"] == 1 and type(record["epoch"]) is int


def test_owners_are_isolated(store: SQLiteRunStore) -> None:
    alice, bob = new_owner_token(), new_owner_token()
    store.save(alice, make_run(1).to_dict())
    store.save(alice, make_run(2).to_dict())
    store.save(bob, make_run(1, epochs=7).to_dict())
    assert [r["id"] for r in store.load(alice)] == [1, 2]
    assert [(r["id"], r["config"]["epochs"]) for r in store.load(bob)] == [(1, 7)]
    assert store.load(new_owner_token()) == []
    for junk in ["", "' OR 1=1 --", alice[:-1], alice + "x", "%", "*"]:
        assert store.load(junk) == []
        store.delete(junk, 1)
        store.clear(junk)
    assert len(store.load(alice)) == 2
    store.delete(bob, 2)  # bob has no run 2; alice's run 2 stays
    store.delete(bob, 1)
    assert store.load(bob) == [] and [r["id"] for r in store.load(alice)] == [1, 2]
    store.clear(alice)
    assert store.load(alice) == []


def test_save_replaces_and_refuses_bad_input(store: SQLiteRunStore) -> None:
    owner = new_owner_token()
    run = make_run(5, epochs=1, status="training")
    store.save(owner, run.to_dict())
    run.records.append(EpochRecord(2, 0.5, 0.8, 0.5, 0.81, 0.1, 0.2))
    run.status = "finished"
    store.save(owner, run.to_dict())
    [data] = store.load(owner)
    assert data["status"] == "finished" and len(data["records"]) == 3
    with pytest.raises(RunStoreError, match="owner token"):
        store.save("not a token", run.to_dict())
    for bad in [{"id": "5"}, {"id": True}, {"id": 2**64}, {}, [1]]:
        with pytest.raises(RunStoreError, match="id"):
            store.save(owner, bad)
    with pytest.raises(RunStoreError, match="not JSON"):
        store.save(owner, {"id": 6, "x": object()})
    assert len(store.load(owner)) == 1


def test_concurrent_saves_from_threads(store: SQLiteRunStore) -> None:
    owners = [new_owner_token() for _ in range(8)]
    shared = new_owner_token()
    payloads = {i: make_run(i, epochs=10).to_dict() for i in range(1, 26)}
    errors: list[BaseException] = []
    barrier = threading.Barrier(len(owners))

    def work(k: int, owner: str) -> None:
        try:
            barrier.wait()
            for run_id, data in payloads.items():
                store.save(owner, data)
                store.save(shared, {**data, "id": 1000 * (k + 1) + run_id})
                store.save(shared, {**data, "id": 1})  # everyone replaces the same row
                assert len(store.load(owner)) == run_id
        except BaseException as err:  # noqa: BLE001 -- reported by the main thread
            errors.append(err)

    threads = [threading.Thread(target=work, args=(k, owner)) for k, owner in enumerate(owners)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not errors, errors
    for owner in owners:
        assert json.dumps(store.load(owner)) == json.dumps(list(payloads.values()))  # NaN == NaN
    assert 1 + 8 * 25 > MAX_RUNS and len(store.load(shared)) == MAX_RUNS  # the cap holds under concurrent saves too


def test_a_read_does_not_wait_behind_a_write_of_the_same_process(store: SQLiteRunStore) -> None:
    """A class board's redraw and a new tab's runs are reads: thirty sessions' saves must not hold them up."""
    owner = new_owner_token()
    store.save(owner, make_run(1).to_dict())
    started, release = threading.Event(), threading.Event()

    def stalled_write(execute) -> None:
        execute(f"DELETE FROM {TABLE} WHERE owner = {store.PARAM}", (owner,))  # not committed while it waits
        started.set()
        release.wait(60)

    writer = threading.Thread(target=store._transaction, args=(stalled_write,))
    writer.start()
    try:
        assert started.wait(30), "the write did not begin"
        seen: list[list[dict]] = []
        reader = threading.Thread(target=lambda: seen.append(store.load(owner)))
        reader.start()
        reader.join(10)
        assert not reader.is_alive(), "the read waited for the write to end"
        assert [run["id"] for run in seen[0]] == [1]  # the last commit, not the write under way
    finally:
        release.set()
        writer.join(30)
    assert store.load(owner) == []  # the write, once committed, is seen


def test_two_processes_share_one_file(tmp_path: Path) -> None:
    path = tmp_path / "shared" / "runs.sqlite3"
    owner = new_owner_token()
    writer = run_child("""
        import sys
        from tests.test_run_store import make_run
        from ui.run_store import open_store
        store = open_store("sqlite:///" + sys.argv[1])
        for i in range(1, 4):
            store.save(sys.argv[2], make_run(i).to_dict())
    """, str(path), owner)
    _, err = writer.communicate(timeout=CHILD_TIMEOUT)
    assert writer.returncode == 0, err
    store = open_store(str(path))  # opened after the writer: a server restart
    assert [Run.from_dict(d).id for d in store.load(owner)] == [1, 2, 3]
    # both at once: this process writes while another writes and then reads everything back
    reader = run_child("""
        import json, sys
        from tests.test_run_store import make_run
        from ui.run_store import SQLiteRunStore
        store = SQLiteRunStore(sys.argv[1])
        for i in range(100, 140):
            store.save(sys.argv[2], make_run(i).to_dict())
        print(json.dumps([r["id"] for r in store.load(sys.argv[2])]))
    """, str(path), owner)
    for i in range(200, 240):
        store.save(owner, make_run(i).to_dict())
    out, err = reader.communicate(timeout=CHILD_TIMEOUT)
    assert reader.returncode == 0, err
    seen = json.loads(out)
    assert set(range(100, 140)) <= set(seen)  # the child's own runs, and whatever of ours was committed by then
    assert [d["id"] for d in store.load(owner)] == [1, 2, 3, *range(100, 140), *range(200, 240)]
    store.close()


def test_a_crash_mid_write_loses_only_that_run(tmp_path: Path) -> None:
    """SIGKILL a process after it has written most of a 48 MB run into the WAL but before its COMMIT."""
    path = tmp_path / "runs.sqlite3"
    owner = new_owner_token()
    store = SQLiteRunStore(path)
    earlier = [make_run(i) for i in (1, 2)]
    for run in earlier:
        store.save(owner, run.to_dict())
    store.close()
    child = run_child("""
        import os, sys, time
        from tests.test_run_store import make_run
        from ui.run_store import SQLiteRunStore

        class Stalling:  # the connection, but the process hangs after the big INSERT, before COMMIT
            def __init__(self, conn):
                self.conn = conn
            def __getattr__(self, name):
                return getattr(self.conn, name)
            def execute(self, sql, params=()):
                cursor = self.conn.execute(sql, params)
                if sql.startswith("INSERT"):
                    print("mid-write", os.path.getsize(sys.argv[1] + "-wal"), flush=True)
                    time.sleep(60)
                return cursor

        store = SQLiteRunStore(sys.argv[1])
        store._conn = Stalling(store._conn)
        run = make_run(3).to_dict()
        run["message"] = "x" * (48 << 20)
        store.save(sys.argv[2], run)
        print("committed", flush=True)
    """, str(path), owner)
    try:
        line = child.stdout.readline()
        assert line.startswith("mid-write"), line + child.stderr.read()
        assert int(line.split()[1]) > 8 << 20  # most of the run is on disk, uncommitted: the page cache spilled into the WAL
        child.send_signal(signal.SIGKILL)
    finally:
        child.kill()
        child.communicate(timeout=CHILD_TIMEOUT)
    assert child.returncode == -signal.SIGKILL
    store = SQLiteRunStore(path)  # recovers: the uncommitted frames in the WAL are ignored
    loaded = [Run.from_dict(d) for d in store.load(owner)]
    assert [r.id for r in loaded] == [1, 2] and all(same_run(a, b) for a, b in zip(loaded, earlier, strict=True))
    store.save(owner, make_run(3).to_dict())  # and takes writes again
    assert [d["id"] for d in store.load(owner)] == [1, 2, 3]
    store.close()
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)


def test_unwritable_location(tmp_path: Path) -> None:
    (tmp_path / "afile").write_text("a regular file, not a folder")
    with pytest.raises(RunStoreError, match=ENV_RUNS_DB):
        SQLiteRunStore(tmp_path / "afile" / "runs.db")
    with pytest.raises(RunStoreError, match="cannot be opened"):
        SQLiteRunStore(tmp_path)  # a folder, not a file


def test_corrupt_database_file(tmp_path: Path) -> None:
    path = tmp_path / "runs.sqlite3"
    path.write_bytes(os.urandom(8192))
    with pytest.raises(RunStoreError, match="damaged or is not a SQLite database"):
        SQLiteRunStore(path)
    assert path.stat().st_size == 8192  # left alone, for the user to rescue or remove


def test_a_file_damaged_after_opening(tmp_path: Path) -> None:
    path = tmp_path / "runs.sqlite3"
    store = SQLiteRunStore(path)
    owner = new_owner_token()
    for i in range(1, 40):
        store.save(owner, make_run(i, epochs=20).to_dict())
    store.close()
    with sqlite3.connect(path) as conn:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    with open(path, "r+b") as f:  # overwrite the table's pages, keep the header
        f.seek(4096)
        f.write(b"\xff" * (path.stat().st_size - 4096))
    with pytest.raises(RunStoreError, match="damaged"):
        SQLiteRunStore(path).load(owner)


def test_a_newer_schema_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "runs.sqlite3"
    with sqlite3.connect(path) as conn:
        conn.execute("PRAGMA user_version = 99")
    with pytest.raises(RunStoreError, match="newer version"):
        SQLiteRunStore(path)


def test_open_store_urls(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    owner = new_owner_token()
    store = open_store(f"sqlite:///{tmp_path}/a/runs.db")  # sqlite:////abs/path, as in SQLAlchemy
    assert isinstance(store, RunStore) and Path(store.path) == tmp_path / "a" / "runs.db"
    store.save(owner, {"id": 1})
    assert open_store(str(tmp_path / "a" / "runs.db")).load(owner) == [{"id": 1}]
    monkeypatch.chdir(tmp_path)
    assert Path(open_store("sqlite:///rel/runs.db").path) == Path("rel/runs.db") and (tmp_path / "rel" / "runs.db").is_file()
    memory = open_store("sqlite:///:memory:")
    memory.save(owner, {"id": 2})
    assert memory.load(owner) == [{"id": 2}]
    with pytest.raises(RunStoreError, match="cannot be reached"):  # a closed port on loopback
        open_store("postgresql://nobody@127.0.0.1:1/x")
    for url in ["mysql://db/x", "sqlite://", "sqlite://relative.db", "postgresql+psycopg://db/x"]:
        with pytest.raises(RunStoreError, match="sqlite:///"):
            open_store(url)
    monkeypatch.setenv(ENV_RUNS_DB, str(tmp_path / "env" / "runs.db"))
    assert Path(open_store().path) == tmp_path / "env" / "runs.db"
    monkeypatch.setenv(ENV_RUNS_DB, "postgres://nobody@127.0.0.1:1/x")
    with pytest.raises(RunStoreError, match="cannot be reached"):
        open_store()


def test_default_path(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path))
    assert default_path() == tmp_path / "softmax-regression" / "runs.sqlite3"
    monkeypatch.setenv("XDG_DATA_HOME", "relative/ignored")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert default_path() == tmp_path / "home" / ".local" / "share" / "softmax-regression" / "runs.sqlite3"


def test_cap_drops_the_oldest_ended_runs_never_a_training_one(store: SQLiteRunStore) -> None:
    owner, other = new_owner_token(), new_owner_token()
    store.save(other, make_run(1).to_dict())
    assert store.save(owner, make_run(1, status="training").to_dict()) == []
    for run_id in range(2, MAX_RUNS + 1):
        assert store.save(owner, {"id": run_id, "status": "finished"}) == []
    assert len(store.load(owner)) == MAX_RUNS
    assert store.save(owner, {"id": MAX_RUNS + 1, "status": "finished"}) == [2]  # run 201: the oldest finished one goes
    ids = [r["id"] for r in store.load(owner)]
    assert len(ids) == MAX_RUNS and ids[:2] == [1, 3] and ids[-1] == MAX_RUNS + 1
    assert store.save(owner, {"id": 1, "status": "training", "records": [1]}) == []  # replacing a run adds none
    assert store.save(owner, make_run(MAX_RUNS + 2, status="stopped").to_dict()) == [3]
    assert store.load(owner)[0] == {"id": 1, "status": "training", "records": [1]}  # still there: it is training
    assert [r["id"] for r in store.load(other)] == [1]  # another owner's runs do not count


def test_cap_with_only_training_runs_drops_nothing(tmp_path: Path) -> None:
    store = SQLiteRunStore(tmp_path / "runs.sqlite3", max_runs=3)
    owner = new_owner_token()
    for run_id in range(1, 5):
        assert store.save(owner, {"id": run_id, "status": "training"}) == []
    assert len(store.load(owner)) == 4


def test_a_schema_1_file_gets_its_status_column(tmp_path: Path) -> None:
    path, owner = tmp_path / "runs.sqlite3", new_owner_token()
    with sqlite3.connect(path) as conn:  # the table as schema 1 made it
        conn.execute(f"CREATE TABLE {TABLE} (owner TEXT NOT NULL, run_id INTEGER NOT NULL, updated REAL NOT NULL, "
                     "data TEXT NOT NULL, PRIMARY KEY (owner, run_id))")
        conn.executemany(f"INSERT INTO {TABLE} VALUES (?, ?, 0, ?)", [
            (owner, 1, json.dumps({"id": 1, "status": "training"})), (owner, 2, json.dumps({"id": 2, "status": "finished"})),
            (owner, 3, "not json")])
        conn.execute("PRAGMA user_version = 1")
    store = SQLiteRunStore(path, max_runs=2)
    assert [r["id"] for r in store.load(owner)] == [1, 2]
    assert store.save(owner, {"id": 4, "status": "finished"}) == [2]  # 1 is training; 3 has no status it could be dropped for
    store.close()
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA user_version").fetchone() == (SCHEMA_VERSION,)


# --- the Saver: the page hands runs over and never waits --------------------------------------------------

def wait_for(condition: Callable[[], bool], limit: float = 30.0) -> bool:
    """Poll condition until it holds (True) or limit seconds pass (False)."""
    deadline = time.monotonic() + limit
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


def states(run_id: int, n: int) -> list[dict]:
    """n successive states of one run: it trains one more epoch each time, then finishes."""
    out = [make_run(run_id, epochs=e, status="training").to_dict() for e in range(1, n)]
    return [*out, make_run(run_id, epochs=n).to_dict()]


@pytest.fixture
def locked_file(tmp_path: Path):
    """A store file with one saved run, and a function that holds (True) or releases (False) another connection's write lock on it."""
    path = tmp_path / "runs.sqlite3"
    owner = new_owner_token()
    store = SQLiteRunStore(path)
    store.save(owner, make_run(1).to_dict())
    store.close()
    holder = sqlite3.connect(path, isolation_level=None)

    def lock(hold: bool) -> None:
        holder.execute("BEGIN EXCLUSIVE" if hold else "ROLLBACK")

    yield path, owner, lock
    if holder.in_transaction:
        holder.execute("ROLLBACK")
    holder.close()


def test_saver_waits_for_a_locked_store_and_the_page_does_not(locked_file) -> None:
    path, owner, lock = locked_file
    lock(True)
    saver = Saver(lambda: open_store(str(path), busy_timeout=SAVER_BUSY_TIMEOUT), first_backoff=0.05, max_backoff=0.2)
    newest = states(2, 10)
    for state in newest:
        assert saver.save(owner, state) is None  # returned while the file is locked
    assert wait_for(lambda: saver.problem(owner) != ""), "the saver never said that the store is failing"
    assert "locked by another process" in saver.problem(owner) and "retried" in saver.problem(owner)
    assert saver.pending(owner) == 1  # ten states of one run: only the newest waits
    reader = SQLiteRunStore(path)  # a page opens and reads the store while it is locked
    assert [r["id"] for r in reader.load(owner)] == [1]
    assert same_loaded(saver.load(owner, reader.load), [make_run(1), make_run(2, epochs=10)])  # a reload now gets the newest state
    assert not saver.flush(0.3)  # still locked: nothing can be written
    lock(False)
    assert saver.flush(30)
    assert saver.problem(owner) == "" and saver.pending() == 0
    assert same_loaded(reader.load(owner), [make_run(1), make_run(2, epochs=10)])  # the newest state, finished
    saver.close()
    reader.close()


def same_loaded(loaded: list[dict], runs: list[Run]) -> bool:
    return len(loaded) == len(runs) and all(same_run(Run.from_dict(d), r) for d, r in zip(loaded, runs, strict=True))


class StuckStore(SQLiteRunStore):
    """A store whose save hangs until released (a store that never answers)."""

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self.entered, self.release = threading.Event(), threading.Event()

    def save(self, owner: str, run: dict) -> list[int]:
        self.entered.set()
        self.release.wait(60)
        return super().save(owner, run)


def test_save_returns_while_the_store_hangs(tmp_path: Path) -> None:
    store = StuckStore(tmp_path / "runs.sqlite3")
    saver, owner = Saver(store), new_owner_token()
    saver.save(owner, make_run(1, status="training").to_dict())
    assert store.entered.wait(30)  # the saver's thread is inside the store and does not come back ...
    for state in states(1, 5):
        saver.save(owner, state)  # ... and the page still hands over new states
    saver.delete_all(new_owner_token())
    assert saver.pending(owner) == 1 and saver.problem(owner) == ""
    store.release.set()
    assert saver.flush(30)
    assert same_loaded(store.load(owner), [make_run(1, epochs=5)])
    saver.close()


def test_delete_all_is_ordered_with_the_saves(locked_file) -> None:
    path, alice, lock = locked_file  # alice has run 1 in the file
    bob = new_owner_token()
    lock(True)
    saver = Saver(lambda: open_store(str(path), busy_timeout=SAVER_BUSY_TIMEOUT), first_backoff=0.05, max_backoff=0.2)
    saver.save(alice, make_run(2).to_dict())
    saver.save(bob, make_run(1).to_dict())
    saver.save(alice, make_run(3).to_dict())
    saver.delete_all(alice)  # drops alice's waiting saves; deletes her stored run 1 ...
    assert saver.pending(alice) == 1
    saver.save(alice, make_run(4).to_dict())  # ... and this one is written after the deletion
    assert saver.pending(alice) == 2 and saver.pending() == 3
    reader = SQLiteRunStore(path)
    assert [r["id"] for r in saver.load(alice, reader.load)] == [4]  # what a reload sees now
    lock(False)
    assert saver.flush(30)
    assert [r["id"] for r in reader.load(alice)] == [4]
    assert [r["id"] for r in reader.load(bob)] == [1]
    saver.delete_all(alice)
    saver.save(bob, make_run(2).to_dict())
    assert saver.flush(30)
    assert reader.load(alice) == [] and [r["id"] for r in reader.load(bob)] == [1, 2]
    saver.close()
    reader.close()


def test_saver_over_both_stores(store: SQLiteRunStore) -> None:
    saver, owner = Saver(store), new_owner_token()
    for run_id in (1, 2, 3):
        for state in states(run_id, 3):
            saver.save(owner, state)
    saver.delete_all(owner)
    for state in states(4, 4):
        saver.save(owner, state)
    assert saver.flush(30) and saver.problem(owner) == ""
    assert same_loaded(store.load(owner), [make_run(4, epochs=4)])


def test_saver_reports_the_cap(tmp_path: Path) -> None:
    store = SQLiteRunStore(tmp_path / "runs.sqlite3")
    saver, owner = Saver(store), new_owner_token()
    saver.save(owner, {"id": 1, "status": "training"})
    for run_id in range(2, MAX_RUNS + 2):  # 201 runs
        saver.save(owner, {"id": run_id, "status": "finished"})
    assert saver.flush(30)
    ids = [r["id"] for r in store.load(owner)]
    assert len(ids) == MAX_RUNS and 1 in ids and 2 not in ids
    assert saver.notice(owner) == f"This server keeps {MAX_RUNS} runs per link: the oldest ended run (2) was deleted from it."
    saver.close()


def test_saver_drops_a_run_that_can_never_be_saved(tmp_path: Path) -> None:
    store = SQLiteRunStore(tmp_path / "runs.sqlite3")
    saver, owner = Saver(store), new_owner_token()
    saver.save(owner, {"id": "seven"})
    saver.save("not a token", make_run(1).to_dict())
    assert saver.flush(30)  # refused, not retried
    assert "whole-number 'id'" in saver.problem(owner) and "owner token" in saver.problem("not a token")
    saver.save(owner, make_run(1).to_dict())
    assert saver.flush(30) and saver.problem(owner) == ""
    assert [r["id"] for r in store.load(owner)] == [1]
    saver.close()


def test_saver_keeps_runs_until_the_store_can_be_opened(tmp_path: Path) -> None:
    blocker = tmp_path / "runs"  # a file where the store's folder should be
    blocker.write_text("not a folder")
    path, owner = blocker / "runs.sqlite3", new_owner_token()
    saver = Saver(lambda: open_store(str(path), busy_timeout=SAVER_BUSY_TIMEOUT), first_backoff=0.05, max_backoff=0.2)
    saver.save(owner, make_run(1).to_dict())
    assert wait_for(lambda: "Cannot create the folder" in saver.problem(owner))
    assert saver.problem(new_owner_token()) == ""  # nothing of theirs waits
    blocker.unlink()  # the folder can be made now
    assert saver.flush(30) and saver.problem(owner) == ""
    assert same_loaded(SQLiteRunStore(path).load(owner), [make_run(1)])
    saver.close()
