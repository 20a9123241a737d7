"""A persistent store of finished runs, keyed by an unguessable owner token (no Streamlit here).

A browser session keeps its token (in the URL, say); after a reload or a server restart, `load(token)`
gives its runs back as `Run.to_dict()` dicts. `open_store()` picks the back end from a URL: SQLite now;
the interface and SQL are plain enough (one table, parameters, `INSERT ... ON CONFLICT`, no SQLite-only
features in the interface) that a PostgreSQL store sits beside it.

Every failure (an unwritable location, a corrupt file, a locked or full disk) raises `RunStoreError`,
whose message says what to do; the caller can show it and carry on without persistence. A page should
not call `save` itself: `ui.saver.Saver` saves in the background and retries until the store works.
"""

from __future__ import annotations

import json
import logging
import os
import re
import secrets
import sqlite3
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Protocol, TypeVar, runtime_checkable

ENV_RUNS_DB = "SOFTMAX_RUNS_DB"  # a path or URL of the run store (default: the user's data folder)
TOKEN_BYTES = 16  # 128 random bits: unguessable
TOKEN_LENGTH = 22  # len(secrets.token_urlsafe(16)): base64url without padding
_TOKEN_RE = re.compile(rf"[A-Za-z0-9_-]{{{TOKEN_LENGTH}}}")
TABLE = "softmax_runs"  # a specific name, so the table can live in a shared (e.g. PostgreSQL) database
SCHEMA_VERSION = 2  # kept in PRAGMA user_version; a file from a newer version is refused, not altered (2: a status column)
BUSY_TIMEOUT = 10.0  # seconds a write waits for another process's write before giving up (the Saver passes a short one)
MAX_RUNS = 200  # runs kept per owner; a save beyond it drops the owner's oldest ended runs
ENDED = ("finished", "stopped", "diverged")  # statuses of runs that may be dropped to keep MAX_RUNS (never "training")

log = logging.getLogger(__name__)
T = TypeVar("T")


class RunStoreError(Exception):
    """The run store cannot be used; the message says why and what to do."""


class InvalidRun(RunStoreError):
    """This save can never succeed (a malformed owner token, a run without a whole-number id, not JSON data)."""


def new_owner_token() -> str:
    """A fresh, unguessable owner token (22 URL-safe characters)."""
    return secrets.token_urlsafe(TOKEN_BYTES)


def valid_token(text: object) -> bool:
    """True when text has exactly the form of new_owner_token()'s result (so junk from a URL is refused)."""
    return isinstance(text, str) and _TOKEN_RE.fullmatch(text) is not None


@runtime_checkable
class RunStore(Protocol):
    """Runs (`Run.to_dict()` dicts) kept per owner token; every method may raise RunStoreError."""

    def save(self, owner: str, run: dict) -> list[int]:
        """Insert or replace the owner's run with id run["id"], atomically; the ids of ended runs dropped to keep MAX_RUNS."""

    def load(self, owner: str) -> list[dict]:
        """The owner's runs, ordered by id ([] for an unknown or invalid token)."""

    def delete(self, owner: str, run_id: int) -> None:
        """Remove one of the owner's runs (nothing happens when there is none)."""

    def clear(self, owner: str) -> None:
        """Remove all of the owner's runs."""

    def close(self) -> None:
        """Release connections; the store must not be used afterwards."""


def default_path() -> Path:
    """$XDG_DATA_HOME/softmax-regression/runs.sqlite3 (~/.local/share/... by default; %LOCALAPPDATA% on Windows)."""
    if sys.platform == "win32" and os.environ.get("LOCALAPPDATA"):
        base = Path(os.environ["LOCALAPPDATA"])
    else:
        xdg = os.environ.get("XDG_DATA_HOME", "")
        base = Path(xdg) if os.path.isabs(xdg) else Path.home() / ".local" / "share"  # the XDG spec ignores relative paths
    return base / "softmax-regression" / "runs.sqlite3"


def open_store(url: str | None = None, busy_timeout: float = BUSY_TIMEOUT, max_runs: int = MAX_RUNS) -> RunStore:
    """The store at url: 'sqlite:///relative.db', 'sqlite:////absolute.db' or a bare path; default $SOFTMAX_RUNS_DB, else default_path().

    busy_timeout: seconds a write waits for another writer's lock; max_runs: runs kept per owner.
    """
    url = url or os.environ.get(ENV_RUNS_DB) or str(default_path())
    scheme, sep, rest = url.partition("://")
    if not sep:  # a bare path (a Windows path's "C:\" has no "://")
        return SQLiteRunStore(url, busy_timeout, max_runs)
    scheme = scheme.lower()
    if scheme == "sqlite":
        if not rest.startswith("/") or rest == "/":  # SQLAlchemy's form: three slashes, then the path
            raise RunStoreError(f"Cannot read the run store URL {url!r}: write sqlite:///runs.db (relative) or sqlite:////abs/path/runs.db.")
        return SQLiteRunStore(rest[1:], busy_timeout, max_runs)
    if scheme in ("postgresql", "postgres"):
        return PostgresRunStore(url, busy_timeout, max_runs)
    raise RunStoreError(f"Unknown run store URL scheme {scheme}:// (the URL is not repeated: it may hold a password). "
                        "Use sqlite:///path or a bare path.")


Execute = Callable[[str, tuple], list]  # runs one statement of the transaction and returns its rows ([] when it has none)


class _TableStore:
    """The RunStore interface over TABLE; a subclass runs a unit of work in one transaction (_transaction)."""

    PARAM = "?"  # the driver's placeholder
    max_runs: int
    _lock: threading.Lock  # the writing connection's
    _conn: object
    _read_lock: threading.Lock  # the reading connection's: a read never waits behind a write of this process
    _read_conn: object

    def save(self, owner: str, run: dict) -> list[int]:
        """Insert or replace the owner's run with id run["id"], in one transaction; the ids of ended runs dropped to keep max_runs."""
        if not valid_token(owner):
            raise InvalidRun("Runs were not saved: the session's owner token is malformed (make one with new_owner_token()).")
        run_id, data, status = _run_id(run), _dumps(run), _status(run)
        p = self.PARAM

        def work(execute: Execute) -> list[int]:
            execute(f"INSERT INTO {TABLE} (owner, run_id, updated, status, data) VALUES ({p}, {p}, {p}, {p}, {p}) "
                    "ON CONFLICT (owner, run_id) DO UPDATE SET updated = excluded.updated, status = excluded.status, data = excluded.data",
                    (owner, run_id, time.time(), status, data))
            [(count,)] = execute(f"SELECT COUNT(*) FROM {TABLE} WHERE owner = {p}", (owner,))
            if count <= self.max_runs:
                return []
            # the oldest runs that have ended go first; a training run (and the one just saved) always stays
            rows = execute(f"SELECT run_id FROM {TABLE} WHERE owner = {p} AND run_id <> {p} AND status IN ({', '.join([p] * len(ENDED))}) "
                           f"ORDER BY run_id LIMIT {int(count - self.max_runs)}", (owner, run_id, *ENDED))
            dropped = [row[0] for row in rows]
            if dropped:
                execute(f"DELETE FROM {TABLE} WHERE owner = {p} AND run_id IN ({', '.join([p] * len(dropped))})", (owner, *dropped))
            return dropped

        return self._transaction(work)

    def load(self, owner: str) -> list[dict]:
        """The owner's runs, ordered by id ([] for an unknown or invalid token); unreadable rows are skipped."""
        if not valid_token(owner):
            return []
        sql = f"SELECT run_id, data FROM {TABLE} WHERE owner = {self.PARAM} ORDER BY run_id"
        rows = self._transaction(lambda execute: execute(sql, (owner,)), write=False)
        return _runs_from_rows(rows, self._where())

    def delete(self, owner: str, run_id: int) -> None:
        """Remove one of the owner's runs (nothing happens when there is none)."""
        if valid_token(owner):
            sql = f"DELETE FROM {TABLE} WHERE owner = {self.PARAM} AND run_id = {self.PARAM}"
            self._transaction(lambda execute: execute(sql, (owner, int(run_id))))

    def clear(self, owner: str) -> None:
        """Remove all of the owner's runs."""
        if valid_token(owner):
            sql = f"DELETE FROM {TABLE} WHERE owner = {self.PARAM}"
            self._transaction(lambda execute: execute(sql, (owner,)))

    def close(self) -> None:
        """Close the connections (a later call reopens them)."""
        for lock, slot in ((self._lock, "_conn"), (self._read_lock, "_read_conn")):
            with lock:
                if (conn := getattr(self, slot)) is not None:
                    conn.close()
                    setattr(self, slot, None)

    def _transaction(self, work: Callable[[Execute], T], write: bool = True) -> T:
        raise NotImplementedError

    def _where(self) -> str:
        raise NotImplementedError


class SQLiteRunStore(_TableStore):
    """A RunStore in one SQLite file (WAL mode): safe for many threads of one process and for several processes.

    Two connections per store, each used under its own lock (do not carry a store across fork()): one writes,
    one reads. Streamlit starts a new thread for every script run, so per-thread connections would be opened
    and dropped all the time, and the store's queries take well under a millisecond. Reads have their own
    connection because WAL lets them go on beside a write: behind one lock, a class board's redraw waited
    for thirty sessions' saves and publishes (1.3 s for a read while a class pressed Train). Between processes, SQLite's file locks and busy_timeout serialise the writes. The file must
    be on a local disk (WAL needs shared memory; network file systems are not supported by SQLite's WAL).
    """

    def __init__(self, path: str | os.PathLike[str], busy_timeout: float = BUSY_TIMEOUT, max_runs: int = MAX_RUNS) -> None:
        self.path = str(path)
        self.busy_timeout, self.max_runs = float(busy_timeout), int(max_runs)
        self._lock = threading.Lock()
        self._conn: sqlite3.Connection | None = None
        self._read_lock = threading.Lock()
        self._read_conn: sqlite3.Connection | None = None
        with self._lock:
            self._connection()  # fail now, with a clear message, rather than at the first save
        if self.path != ":memory:":
            with self._read_lock:
                self._reader()  # now: opened later, it might wait for the tables behind a write

    def __repr__(self) -> str:
        return f"SQLiteRunStore({self.path!r})"

    # --- internals -------------------------------------------------------------------------------------

    def _transaction(self, work: Callable[[Execute], T], write: bool = True) -> T:
        """work(execute) in one transaction: a write is all written or (after a crash) not at all; a read sees one snapshot."""
        reading = not write and self.path != ":memory:"  # (a second connection to :memory: would be another database)
        with self._read_lock if reading else self._lock:
            try:
                conn = self._reader() if reading else self._connection()
                # A write takes the write lock first (no deadlock-prone lock upgrade later); WAL: a read sees the last
                # commit as of its first statement and never waits for a writer.
                conn.execute("BEGIN" if not write else "BEGIN IMMEDIATE")
                try:
                    result = work(lambda sql, params: conn.execute(sql, params).fetchall())
                    conn.execute("COMMIT")
                except BaseException:
                    if conn.in_transaction:
                        conn.execute("ROLLBACK")
                    raise
                return result
            except sqlite3.Error as err:
                raise RunStoreError(self._explain(err)) from err

    def _where(self) -> str:
        return self.path

    def _reader(self) -> sqlite3.Connection:
        """The reading connection, opened at the start or after close() (the writing one made the tables)."""
        if self._read_conn is None:
            self._read_conn = self._open(["PRAGMA query_only = ON"])  # this connection never writes, whatever a caller asks
        return self._read_conn

    def _open(self, pragmas: list[str], setup: Callable[[sqlite3.Connection], None] | None = None) -> sqlite3.Connection:
        """A new connection with the store's busy timeout, these pragmas and setup(conn); errors become RunStoreError."""
        conn = None
        try:
            # autocommit (isolation_level=None): transactions are explicit
            conn = sqlite3.connect(self.path, timeout=self.busy_timeout, isolation_level=None, check_same_thread=False)
            for pragma in [f"PRAGMA busy_timeout = {int(self.busy_timeout * 1000)}", *pragmas]:
                conn.execute(pragma)
            if setup is not None:
                setup(conn)
        except (sqlite3.Error, RunStoreError) as err:
            if conn is not None:
                conn.close()
            if isinstance(err, RunStoreError):
                raise
            raise RunStoreError(self._explain(err)) from err
        return conn

    def _connection(self) -> sqlite3.Connection:
        """The connection, opened (and the table created) on first use or after close()."""
        if self._conn is not None:
            return self._conn
        try:
            if self.path != ":memory:":
                Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise RunStoreError(f"Cannot create the folder for the run store {self.path} ({err.strerror or err}). "
                                f"Set {ENV_RUNS_DB} to a file in a writable folder; runs are not kept meanwhile.") from err
        self._conn = self._open([
            "PRAGMA journal_mode = WAL",  # readers never block the writer; a crash mid-write is rolled back
            "PRAGMA synchronous = NORMAL",  # WAL + NORMAL: consistent after a crash, only the last commits may be lost on power loss
        ], setup=self._create_schema)
        return self._conn

    def _create_schema(self, conn: sqlite3.Connection) -> None:
        """Create the table, or bring an older one up to SCHEMA_VERSION; a current file is only read (no write lock)."""
        if self._schema_version(conn) == SCHEMA_VERSION:
            return
        conn.execute("BEGIN IMMEDIATE")
        try:
            version = self._schema_version(conn)  # again, under the lock: another process may have done it meanwhile
            if version < SCHEMA_VERSION:
                conn.execute(f"CREATE TABLE IF NOT EXISTS {TABLE} ("
                             "owner TEXT NOT NULL, run_id INTEGER NOT NULL, updated REAL NOT NULL, status TEXT NOT NULL DEFAULT '', "
                             "data TEXT NOT NULL, PRIMARY KEY (owner, run_id))")
                if version == 1:  # version 1 had no status column
                    conn.execute(f"ALTER TABLE {TABLE} ADD COLUMN status TEXT NOT NULL DEFAULT ''")
                    _fill_status(lambda sql, params: conn.execute(sql, params).fetchall(), self.PARAM)
                conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise

    def _schema_version(self, conn: sqlite3.Connection) -> int:
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        if version > SCHEMA_VERSION:
            raise RunStoreError(f"The run store {self.path} was written by a newer version of this app (schema {version}). "
                                f"Update the app, or set {ENV_RUNS_DB} to another file.")
        return version

    def _explain(self, err: sqlite3.Error) -> str:
        """A message for the user: what went wrong with which file, and what to do."""
        text = str(err)
        code = getattr(err, "sqlite_errorname", "")
        where = f"The run store {self.path}"
        if code in ("SQLITE_NOTADB", "SQLITE_CORRUPT") or "not a database" in text or "malformed" in text:
            return (f"{where} is damaged or is not a SQLite database ({text}). Move it aside (keep it if you want to "
                    f"rescue runs) or delete it, or set {ENV_RUNS_DB} to another file; runs are not kept meanwhile.")
        if code.startswith("SQLITE_BUSY") or code.startswith("SQLITE_LOCKED") or "locked" in text:
            return f"{where} is locked by another process ({text}): it is busy writing, or a program holds it open in a transaction."
        if code.startswith("SQLITE_CANTOPEN") or code.startswith("SQLITE_READONLY") or code.startswith("SQLITE_PERM") or "unable to open" in text:
            return (f"{where} cannot be opened for writing ({text}). Make its folder writable, or set {ENV_RUNS_DB} "
                    "to a file in a writable folder on a local disk; runs are not kept meanwhile.")
        if code == "SQLITE_FULL" or "full" in text:
            return f"{where}: the disk is full ({text}). Free some space; runs are not kept meanwhile."
        return f"{where} failed ({text}). Check the file, or set {ENV_RUNS_DB} to another file; runs are not kept meanwhile."


def _runs_from_rows(rows: list[tuple[int, str]], where: str) -> list[dict]:
    """The runs in (run_id, JSON text) rows; unreadable rows are skipped with a warning in the log."""
    runs = []
    for run_id, data in rows:
        try:
            run = json.loads(data)
        except (TypeError, ValueError) as err:
            log.warning("run store %s: run %s of an owner is not valid JSON (%s); skipped", where, run_id, err)
            continue
        if isinstance(run, dict) and run.get("id") == run_id:
            runs.append(run)
        else:
            log.warning("run store %s: run %s of an owner does not hold a run with that id; skipped", where, run_id)
    return runs


class PostgresRunStore(_TableStore):
    """A RunStore in a PostgreSQL database, for several servers (replicas behind a load balancer) at once.

    The same table and statements as the SQLite store (%s placeholders); one connection under a lock, opened
    again after a dropped connection. Needs the `psycopg` package (`pip install "psycopg[binary]"`).
    """

    PARAM = "%s"

    def __init__(self, url: str, busy_timeout: float = BUSY_TIMEOUT, max_runs: int = MAX_RUNS) -> None:
        try:
            import psycopg  # noqa: PLC0415 -- only servers that use PostgreSQL need it
        except ImportError as err:
            raise RunStoreError('A PostgreSQL run store needs the psycopg package: pip install "psycopg[binary]".') from err
        self._psycopg, self._url = psycopg, url
        self.busy_timeout, self.max_runs = float(busy_timeout), int(max_runs)
        self._lock = threading.Lock()
        self._conn = None
        self._read_lock = threading.Lock()
        self._read_conn = None
        with self._lock:
            self._run(self._create_schema)

    def __repr__(self) -> str:
        return "PostgresRunStore(<url not shown>)"

    def _create_schema(self, conn) -> None:
        conn.execute(f"CREATE TABLE IF NOT EXISTS {TABLE} (owner TEXT NOT NULL, run_id BIGINT NOT NULL, "
                     "updated DOUBLE PRECISION NOT NULL, status TEXT NOT NULL DEFAULT '', data TEXT NOT NULL, PRIMARY KEY (owner, run_id))")
        has_status = conn.execute("SELECT 1 FROM information_schema.columns WHERE table_schema = current_schema() "
                                  "AND table_name = %s AND column_name = 'status'", (TABLE,)).fetchone()
        if not has_status:  # a table of schema 1 (no status column); other servers may be doing the same
            conn.execute(f"ALTER TABLE {TABLE} ADD COLUMN IF NOT EXISTS status TEXT NOT NULL DEFAULT ''")
            _fill_status(_executor(conn), self.PARAM)

    def _transaction(self, work: Callable[[Execute], T], write: bool = True) -> T:
        """work(execute) in one transaction (a read on its own connection: it never waits behind this process's writes)."""
        with self._lock if write else self._read_lock:
            return self._run(lambda conn: work(_executor(conn)), read=not write)

    def _where(self) -> str:
        return "PostgreSQL"

    def _run(self, operation: Callable, read: bool = False):
        """operation(connection) in one transaction (autocommit off), on the reading or the writing connection; errors become RunStoreError."""
        psycopg = self._psycopg
        slot = "_read_conn" if read else "_conn"
        for attempt in (1, 2):  # once more on a fresh connection if the old one was dropped
            try:
                conn = getattr(self, slot)
                if conn is None or conn.closed:
                    conn = psycopg.connect(self._url, connect_timeout=10)
                    # a write waits this long for another connection's row locks, then fails (the Saver retries)
                    conn.execute(f"SET lock_timeout = {max(1, int(self.busy_timeout * 1000))}")
                    if read:
                        conn.execute("SET default_transaction_read_only = on")
                    conn.commit()
                    setattr(self, slot, conn)
                with conn.transaction():
                    return operation(conn)
            except psycopg.errors.LockNotAvailable as err:
                raise RunStoreError(f"The PostgreSQL run store is locked by another connection ({type(err).__name__}): "
                                    "it is busy, or a program holds a lock on its table.") from err
            except psycopg.OperationalError as err:
                setattr(self, slot, None)
                if attempt == 2:
                    raise RunStoreError(f"The PostgreSQL run store cannot be reached ({type(err).__name__}); check the server "
                                        f"and {ENV_RUNS_DB}; runs are not kept meanwhile.") from err
            except psycopg.Error as err:
                raise RunStoreError(f"The PostgreSQL run store failed ({type(err).__name__}: {err}); runs are not kept meanwhile.") from err
        raise AssertionError("unreachable")


def _executor(conn) -> Execute:
    """execute(sql, params) on a psycopg connection, returning the rows ([] for a statement without any)."""

    def execute(sql: str, params: tuple) -> list:
        cursor = conn.execute(sql, params)
        return cursor.fetchall() if cursor.description is not None else []

    return execute


def _fill_status(execute: Execute, p: str) -> None:
    """Copy each run's status out of its JSON into the status column (rows written before the column existed)."""
    for owner, run_id, data in execute(f"SELECT owner, run_id, data FROM {TABLE} WHERE status = ''", ()):
        try:
            status = _status(json.loads(data))
        except (TypeError, ValueError):
            continue  # load() skips such a row anyway
        if status:
            execute(f"UPDATE {TABLE} SET status = {p} WHERE owner = {p} AND run_id = {p}", (status, owner, run_id))


def _status(run: object) -> str:
    """run["status"] when it is a string, else ""."""
    status = run.get("status") if isinstance(run, dict) else None
    return status if isinstance(status, str) else ""


def _run_id(run: dict) -> int:
    """run["id"], checked: a whole number that fits SQL's BIGINT."""
    run_id = run.get("id") if isinstance(run, dict) else None
    if isinstance(run_id, bool) or not isinstance(run_id, int) or not -(2**63) <= run_id < 2**63:
        raise InvalidRun(f"Runs were not saved: a run must be a dict with a whole-number 'id' (got {run_id!r}).")
    return run_id


def _dumps(run: dict) -> str:
    """The run as JSON text; NaN and ±inf (a diverged run's loss) are kept as Python's json writes them."""
    try:
        return json.dumps(run, separators=(",", ":"), allow_nan=True, default=_json_default)
    except (TypeError, ValueError) as err:
        raise InvalidRun(f"Run {run.get('id')} was not saved: it is not JSON data ({err}).") from err


def _json_default(value: object) -> object:
    """NumPy scalars (a float32 loss, an int64 count) as plain Python numbers; anything else is refused."""
    item = getattr(value, "item", None)
    if callable(item):
        result = item()
        if isinstance(result, (int, float, bool, str)):
            return result
    raise TypeError(f"{type(value).__name__} is not JSON data")
