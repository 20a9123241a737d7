"""The run store: round trips of real Run data, owner isolation, threads, processes, crashes and bad files."""

from __future__ import annotations

import json
import math
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import textwrap
import threading
from pathlib import Path

import pytest

from softmax_core import EpochRecord, TrainConfig
from ui.run_store import (
    ENV_RUNS_DB,
    RunStore,
    RunStoreError,
    SQLiteRunStore,
    default_path,
    new_owner_token,
    open_store,
    valid_token,
)
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


@pytest.fixture(scope="session")
def postgres_url() -> str:
    """A throwaway PostgreSQL server (Debian's postgresql package) on loopback, run as the postgres user."""
    binaries = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"))
    if not binaries:
        pytest.fail("PostgreSQL is not installed: apt-get install postgresql (CI installs it)", pytrace=False)
    bin_dir = binaries[-1].parent
    folder = Path(tempfile.mkdtemp(prefix="softmax-pg-"))  # not under pytest's 0700 folder: postgres must enter it
    os.chmod(folder, 0o777)
    port = 54000 + os.getpid() % 1000
    as_postgres = ["su", "postgres", "-s", "/bin/sh", "-c"] if os.geteuid() == 0 else ["sh", "-c"]
    start = (f"{bin_dir}/initdb -D {folder}/data -U postgres --auth=trust -E UTF8 >/dev/null && "
             f"{bin_dir}/pg_ctl -D {folder}/data -o '-k {folder} -p {port} -c listen_addresses=127.0.0.1' -l {folder}/log -w start >/dev/null")
    subprocess.run([*as_postgres, start], check=True, timeout=120)
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
    assert len(store.load(shared)) == 1 + 8 * 25


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
