"""The class board: a teacher's live view of the whole class's runs, kept in the run store's database (no Streamlit here).

A teacher starts a board and gets an unguessable code (the join link carries it) and a separate teacher key
(pin, remove, close). A student who opens the join link joins under a nickname and gets a secret member token;
each of their runs is published after every epoch as public figures only: nickname, settings, per-epoch
figures and status (never a model, a session id or a label). Boards, members and entries live in three tables
beside the run store's own, through the store's transactions, so every server on one store (SQLite file or
PostgreSQL database) sees the same board. Secrets are kept as SHA-256 hashes only.

join, leave, rename and the teacher's operations raise BoardError, whose message is one sentence for the
user; publish never raises (it returns the reason, or ""), and `Publisher` publishes in a thread of its own.
"""

from __future__ import annotations

import atexit
import base64
import csv
import hashlib
import hmac
import html
import io
import json
import logging
import math
import re
import secrets
import threading
import time
import unicodedata
import weakref
from collections.abc import Mapping, MutableMapping
from dataclasses import dataclass, field
from urllib.parse import urlencode, urlsplit, urlunsplit

from softmax_core import DATASETS

from .run_store import RunStore, RunStoreError, valid_token
from .session import Run

BOARDS, MEMBERS, ENTRIES = "softmax_boards", "softmax_board_members", "softmax_board_entries"
CODE_BYTES = 12  # 96 random bits: secrets.token_urlsafe(12) is 16 characters
KEY_BYTES = 16  # the teacher key: 128 bits
_CODE_RE = re.compile(r"[A-Za-z0-9_-]{16,64}")
NICKNAME_LENGTH = 24  # characters of a nickname that are kept
MAX_MEMBERS = 300  # per board: anyone with the link may join, so a board cannot grow without bound
MAX_ENTRIES_PER_MEMBER = 50  # runs one student can have on a board
MAX_RECORDS = 1001  # epochs 0..1000 of one run are shown; later ones are not published
STALE = 300.0  # seconds without news after which a "training" entry no longer counts as training now
STATUSES = ("ready", "training", "finished", "stopped", "diverged")
SETTINGS = ("lr", "batch", "epochs", "dataset")  # what the join link passes on (URL names of ui.controls)
# Session-state keys the pages share (values: a code, a Member, {code: teacher key}).
CODE_STATE, MEMBER_STATE, KEYS_STATE = "board_code", "board_member", "board_keys"

CLOSED = "This board is closed: the teacher has ended it, so it takes no new students or runs."
UNKNOWN = "There is no board with this code: check the link with your teacher."
MALFORMED = "This board link is not complete: ask your teacher for the link or the QR code again."
NOT_TEACHER = "Only the teacher who started this board can do that: open the board with the teacher link."
NOT_MEMBER = "You are not on this board any more: open the join link again to rejoin."

ADJECTIVES = ("Teal", "Amber", "Coral", "Indigo", "Scarlet", "Olive", "Silver", "Golden", "Azure", "Crimson", "Ivory",
              "Jade", "Lilac", "Ochre", "Plum", "Ruby", "Saffron", "Slate", "Violet", "Mint")
ANIMALS = ("Otter", "Falcon", "Lynx", "Heron", "Badger", "Dolphin", "Gecko", "Ibis", "Koala", "Lemur", "Marten",
           "Narwhal", "Ocelot", "Panda", "Quokka", "Raven", "Stoat", "Tapir", "Walrus", "Yak")

log = logging.getLogger(__name__)


class BoardError(Exception):
    """The board cannot do this; the message is one sentence saying why and what to do."""


@dataclass(frozen=True)
class Opened:
    """A new board: its public code and the teacher's secret key."""

    code: str
    key: str


@dataclass(frozen=True)
class Member:
    """A student on a board: the board's code, their secret member token and their nickname."""

    code: str
    token: str = field(repr=False)
    nickname: str


@dataclass(frozen=True)
class Entry:
    """One published run as the board shows it."""

    number: int  # the board's own number for it (#1, #2, ... in order of first publication)
    nickname: str
    status: str
    settings: dict  # lr, batch_size, epochs, momentum, weight_decay, schedule, step_size, gamma, softmax, seed, sigma, dataset
    records: list[dict]  # per epoch: epoch, train_loss, train_acc, test_loss, test_acc, lr
    updated: float  # time.time() of the last publication

    @property
    def epochs(self) -> int:
        """Epochs trained so far."""
        return int(self.records[-1]["epoch"]) if self.records else 0

    @property
    def test_acc(self) -> float:
        """Test accuracy after the last epoch (NaN before any)."""
        return _number(self.records[-1].get("test_acc")) if self.epochs else math.nan

    @property
    def best_test_acc(self) -> float:
        """The best test accuracy of any trained epoch (NaN before any)."""
        values = [_number(r.get("test_acc")) for r in self.records if r.get("epoch", 0) > 0]
        values = [v for v in values if not math.isnan(v)]
        return max(values) if values else math.nan

    def training_now(self, now: float) -> bool:
        """True while it trains and has published recently (a crashed server's run stops counting)."""
        return self.status == "training" and now - self.updated < STALE


@dataclass(frozen=True)
class Board:
    """A board as read from the store at one moment."""

    code: str
    created: float
    closed: bool
    pinned: int  # an entry's number, or 0
    settings: dict[str, str]  # the join link's settings (URL names: lr, batch, epochs, dataset)
    members: int
    entries: list[Entry]

    def training(self, now: float | None = None) -> int:
        """How many entries train now."""
        now = time.time() if now is None else now
        return sum(e.training_now(now) for e in self.entries)

    def entry(self, number: int) -> Entry | None:
        """The entry with this number, if it is on the board."""
        return next((e for e in self.entries if e.number == number), None)


# ------------------------------------------------------------------------------------------- secrets and text


def new_code() -> str:
    """A fresh board code: 96 random bits as 16 URL-safe characters."""
    return secrets.token_urlsafe(CODE_BYTES)


def valid_code(text: object) -> bool:
    """True when text has the form of a board code (so junk from a URL never reaches the store)."""
    return isinstance(text, str) and _CODE_RE.fullmatch(text) is not None


def _hash(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def member_token_for(code: str, owner: str) -> str:
    """The member token of a browser session's owner token on a board: the same after a reload, secret as the owner token."""
    digest = hashlib.sha256(f"softmax-board-member\0{code}\0{owner}".encode()).digest()
    return base64.urlsafe_b64encode(digest[:16]).decode().rstrip("=")


def friendly_name() -> str:
    """A generated nickname such as "Teal Otter"."""
    return f"{secrets.choice(ADJECTIVES)} {secrets.choice(ANIMALS)}"


def clean_nickname(text: object) -> str:
    """A nickname as the board keeps it: one line of visible characters, spaces collapsed, at most NICKNAME_LENGTH characters."""
    text = "".join(" " if ch.isspace() else ch for ch in unicodedata.normalize("NFC", str(text or "")))  # a line break or tab parts words
    # control, format (bidi overrides, zero-width), private-use and unassigned characters are dropped; the emoji joiner stays
    kept = "".join(ch for ch in text if unicodedata.category(ch) not in ("Cc", "Cf", "Co", "Cs", "Cn", "Zl", "Zp") or ch == "\u200d")
    return " ".join(kept.split())[:NICKNAME_LENGTH].strip()


def badge_text(member: Member) -> str:
    """Markdown-safe text for the student's badge (st.badge, st.caption): 'on board CODE as NICKNAME'."""
    from .controls import escape_markdown  # noqa: PLC0415 -- controls imports Streamlit; the store code here does not need it

    return f"on board {escape_markdown(member.code, line_start=False)} as {escape_markdown(member.nickname, line_start=False)}"


def plot_text(text: str) -> str:
    """User text for a Plotly label: Plotly reads a little HTML (<a href>, <b>) in labels, so <, > and & are escaped."""
    return html.escape(text, quote=False)


# --------------------------------------------------------------------------------------------------- links


def app_base(url: str, page_path: str = "class_board") -> str:
    """The app's root address from a page's address (st.context.url): query dropped, the page's own path segment cut."""
    parts = urlsplit(url)
    path = parts.path.rstrip("/")
    if path.rsplit("/", 1)[-1] == page_path:
        path = path.rsplit("/", 1)[0]
    return urlunsplit((parts.scheme, parts.netloc, path + "/", "", ""))


def join_link(base: str, code: str, settings: Mapping[str, str]) -> str:
    """The students' link: the app's root with ?board=CODE and the starting settings (ui.controls.student_link_query)."""
    query = {"board": code, **{name: str(value) for name, value in settings.items() if name in SETTINGS}}
    return f"{base}?{urlencode(query)}"


def teacher_link(base: str, code: str, key: str, page_path: str = "class_board") -> str:
    """The teacher's link to the board page with the key (the page takes the key out of the address bar at once)."""
    return f"{base}{page_path}?{urlencode({'board': code, 'key': key})}"


def qr_png(link: str, scale: int = 12) -> bytes:
    """A QR code of link as PNG bytes, black on white with the standard quiet zone (scale: pixels per module)."""
    import segno  # noqa: PLC0415 -- only the board page draws QR codes

    out = io.BytesIO()
    segno.make(link, error="m").save(out, kind="png", scale=scale, border=4)
    return out.getvalue()


# ------------------------------------------------------------------------------------------------- the store


_SCHEMA = (
    f"CREATE TABLE IF NOT EXISTS {BOARDS} (code TEXT PRIMARY KEY, key_hash TEXT NOT NULL, created DOUBLE PRECISION NOT NULL, "
    "closed DOUBLE PRECISION NOT NULL DEFAULT 0, pinned BIGINT NOT NULL DEFAULT 0, numbered BIGINT NOT NULL DEFAULT 0, "
    "settings TEXT NOT NULL)",
    f"CREATE TABLE IF NOT EXISTS {MEMBERS} (code TEXT NOT NULL, member TEXT NOT NULL, nickname TEXT NOT NULL, "
    "joined DOUBLE PRECISION NOT NULL, PRIMARY KEY (code, member))",
    f"CREATE TABLE IF NOT EXISTS {ENTRIES} (code TEXT NOT NULL, number BIGINT NOT NULL, member TEXT NOT NULL, "
    "run_id BIGINT NOT NULL, updated DOUBLE PRECISION NOT NULL, status TEXT NOT NULL, removed BIGINT NOT NULL DEFAULT 0, "
    "data TEXT NOT NULL, PRIMARY KEY (code, number), UNIQUE (code, member, run_id))",
)
_ready: weakref.WeakSet = weakref.WeakSet()  # stores whose database has the tables
_ready_lock = threading.Lock()


def _transaction(store: RunStore, work, write: bool = True):
    """work(execute) in one of the store's transactions, the board tables made first; store failures become BoardError."""
    p = getattr(store, "PARAM", None)
    if p is None or not hasattr(store, "_transaction"):
        raise BoardError("This run store cannot hold a class board: use a SQLite file or a PostgreSQL database.")
    try:
        if store not in _ready:
            with _ready_lock:
                for attempt in (1, 2):  # two servers creating the tables at once: the loser finds them made
                    try:
                        store._transaction(lambda execute: [execute(sql, ()) for sql in _SCHEMA])
                        break
                    except RunStoreError:
                        if attempt == 2:
                            raise
                _ready.add(store)
        return store._transaction(lambda execute: work(execute, p), write=write)
    except RunStoreError as err:
        raise BoardError(f"The class board cannot reach the run store: {str(err).rstrip('.')}.") from err


def _lock_board(execute, p: str, code: str, open_only: bool = True) -> tuple:
    """The board's row, write-locked for the rest of the transaction (PostgreSQL row lock; SQLite's lock is the whole file)."""
    if not valid_code(code):
        raise BoardError(MALFORMED)
    execute(f"UPDATE {BOARDS} SET numbered = numbered WHERE code = {p}", (code,))
    rows = execute(f"SELECT key_hash, closed, pinned, numbered FROM {BOARDS} WHERE code = {p}", (code,))
    if not rows:
        raise BoardError(UNKNOWN)
    if open_only and rows[0][1]:
        raise BoardError(CLOSED)
    return rows[0]


def start_board(store: RunStore, settings: Mapping[str, str]) -> Opened:
    """Start a board with the join link's settings (URL names: lr, batch, epochs, dataset); its code and teacher key."""
    code, key = new_code(), secrets.token_urlsafe(KEY_BYTES)
    kept = {name: str(value) for name, value in settings.items() if name in SETTINGS}

    def work(execute, p):
        execute(f"INSERT INTO {BOARDS} (code, key_hash, created, settings) VALUES ({p}, {p}, {p}, {p})",
                (code, _hash(key), time.time(), json.dumps(kept)))

    _transaction(store, work)
    return Opened(code, key)


def is_teacher(store: RunStore, code: str, key: object) -> bool:
    """True when key is the teacher key of the board with this code."""
    if not valid_code(code) or not isinstance(key, str) or not key:
        return False
    rows = _transaction(store, lambda execute, p: execute(f"SELECT key_hash FROM {BOARDS} WHERE code = {p}", (code,)), write=False)
    return bool(rows) and hmac.compare_digest(rows[0][0], _hash(key))


def _teacher(execute, p: str, code: str, key: str) -> tuple:
    row = _lock_board(execute, p, code)
    if not isinstance(key, str) or not hmac.compare_digest(row[0], _hash(key)):
        raise BoardError(NOT_TEACHER)
    return row


def pin(store: RunStore, code: str, key: str, number: int) -> None:
    """Pin entry #number for everyone's view (0 unpins)."""

    def work(execute, p):
        _teacher(execute, p, code, key)
        if number and not execute(f"SELECT 1 FROM {ENTRIES} WHERE code = {p} AND number = {p} AND removed = 0", (code, int(number))):
            raise BoardError(f"There is no entry #{int(number)} on this board any more: pick another one.")
        execute(f"UPDATE {BOARDS} SET pinned = {p} WHERE code = {p}", (int(number), code))

    _transaction(store, work)


def remove(store: RunStore, code: str, key: str, number: int) -> None:
    """Take entry #number off the board for good: its figures are deleted and later epochs of that run are not shown."""

    def work(execute, p):
        _teacher(execute, p, code, key)
        execute(f"UPDATE {ENTRIES} SET removed = 1, data = '{{}}' WHERE code = {p} AND number = {p}", (code, int(number)))
        execute(f"UPDATE {BOARDS} SET pinned = 0 WHERE code = {p} AND pinned = {p}", (code, int(number)))

    _transaction(store, work)


def close_board(store: RunStore, code: str, key: str) -> None:
    """Close the board: it stays readable (and downloadable) but takes no new students, runs, pins or removals."""

    def work(execute, p):
        _teacher(execute, p, code, key)
        execute(f"UPDATE {BOARDS} SET closed = {p} WHERE code = {p}", (time.time(), code))

    _transaction(store, work)


def join(store: RunStore, code: str, nickname: str = "", token: str = "") -> Member:
    """Join the board with this code under nickname (cleaned; empty: a generated one such as "Teal Otter").

    token: the member token to use (member_token_for(code, owner) keeps one membership across reloads); joining
    again with a token already on the board returns that membership (renamed when a nickname is given).
    Another student's nickname is not taken twice: a number is added ("Alex 2").
    """
    token = token or secrets.token_urlsafe(16)
    if not valid_token(token):
        raise BoardError("Joining failed: the member token is malformed (make it with member_token_for).")
    wanted = clean_nickname(nickname)

    def work(execute, p):
        _lock_board(execute, p, code)
        rows = execute(f"SELECT nickname FROM {MEMBERS} WHERE code = {p} AND member = {p}", (code, _hash(token)))
        if rows and not wanted:
            return rows[0][0]
        if not rows:
            [(count,)] = execute(f"SELECT COUNT(*) FROM {MEMBERS} WHERE code = {p}", (code,))
            if count >= MAX_MEMBERS:
                raise BoardError(f"This board is full ({MAX_MEMBERS} students): ask your teacher to start another one.")
        taken = {n.casefold() for (n,) in execute(f"SELECT nickname FROM {MEMBERS} WHERE code = {p} AND member <> {p}", (code, _hash(token)))}
        name = _unique(wanted or friendly_name(), taken)
        if rows:
            execute(f"UPDATE {MEMBERS} SET nickname = {p} WHERE code = {p} AND member = {p}", (name, code, _hash(token)))
        else:
            execute(f"INSERT INTO {MEMBERS} (code, member, nickname, joined) VALUES ({p}, {p}, {p}, {p})", (code, _hash(token), name, time.time()))
        return name

    return Member(code, token, _transaction(store, work))


def _unique(name: str, taken: set[str]) -> str:
    """name, or name with the first free number after it."""
    if name.casefold() not in taken:
        return name
    for n in range(2, MAX_MEMBERS + 2):
        candidate = f"{name[:NICKNAME_LENGTH - len(str(n)) - 1]} {n}"
        if candidate.casefold() not in taken:
            return candidate
    return f"{friendly_name()} {secrets.randbelow(10**6)}"


def rename(store: RunStore, member: Member, nickname: str) -> Member:
    """The member under a new nickname (cleaned, made unique; empty: a generated one)."""
    if not _is_member(store, member):
        raise BoardError(NOT_MEMBER)
    return join(store, member.code, clean_nickname(nickname) or friendly_name(), member.token)


def _is_member(store: RunStore, member: Member) -> bool:
    sql = f"SELECT 1 FROM {MEMBERS} WHERE code = {{p}} AND member = {{p}}"
    return bool(_transaction(store, lambda execute, p: execute(sql.format(p=p), (member.code, _hash(member.token))), write=False))


def leave(store: RunStore, code: str, member_token: str) -> None:
    """Leave the board: the student's membership and every entry they published are deleted (also on a closed board)."""

    def work(execute, p):
        _lock_board(execute, p, code, open_only=False)
        member = _hash(member_token)
        execute(f"DELETE FROM {ENTRIES} WHERE code = {p} AND member = {p}", (code, member))
        execute(f"DELETE FROM {MEMBERS} WHERE code = {p} AND member = {p}", (code, member))
        # a pinned entry of theirs is gone: unpin it
        execute(f"UPDATE {BOARDS} SET pinned = 0 WHERE code = {p} AND pinned <> 0 AND NOT EXISTS "
                f"(SELECT 1 FROM {ENTRIES} WHERE code = {p} AND number = {BOARDS}.pinned)", (code, code))

    _transaction(store, work)


def public_entry(run_dict: Mapping) -> dict:
    """What the board may show of a Run.to_dict() dict: settings, per-epoch figures and status (no model, label or message)."""
    run = Run.from_dict({k: v for k, v in run_dict.items() if k != "model"})
    c, s = run.config, run.setup
    settings = {
        "lr": float(c.lr), "batch_size": int(c.batch_size), "epochs": int(c.epochs), "momentum": float(c.momentum),
        "weight_decay": float(c.weight_decay), "schedule": c.schedule, "step_size": int(c.step_size), "gamma": float(c.gamma),
        "softmax": c.softmax, "seed": int(s.seed), "sigma": float(s.sigma), "dataset": s.dataset if s.dataset in DATASETS else "other",
    }
    records = [{"epoch": int(r.epoch), "train_loss": _number(r.train_loss), "train_acc": _number(r.train_acc),
                "test_loss": _number(r.test_loss), "test_acc": _number(r.test_acc), "lr": _number(r.lr)} for r in run.records[:MAX_RECORDS]]
    return {"status": run.status if run.status in STATUSES else "stopped", "settings": settings, "records": records}


def _number(value: object) -> float:
    """A float (NaN for anything that is not a number)."""
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


def publish(store: RunStore, code: str, member_token: str, run_dict: Mapping) -> str:
    """Put the newest state of one of the member's runs on the board; "" when done, else why not (never raises).

    Cheap: one transaction of a few statements (after each epoch). A run the teacher removed stays removed.
    """
    try:
        run_id = int(run_dict["id"])
        entry = public_entry(run_dict)
        data = json.dumps(entry, separators=(",", ":"), allow_nan=True)
    except (KeyError, TypeError, ValueError) as err:
        return f"This run was not put on the board: it is not a complete run ({type(err).__name__})."

    def work(execute, p):
        _lock_board(execute, p, code)
        member = _hash(member_token) if isinstance(member_token, str) else ""
        if not execute(f"SELECT 1 FROM {MEMBERS} WHERE code = {p} AND member = {p}", (code, member)):
            raise BoardError(NOT_MEMBER)
        now = time.time()
        found = execute(f"SELECT removed FROM {ENTRIES} WHERE code = {p} AND member = {p} AND run_id = {p}", (code, member, run_id))
        if found:
            if not found[0][0]:
                execute(f"UPDATE {ENTRIES} SET updated = {p}, status = {p}, data = {p} WHERE code = {p} AND member = {p} AND run_id = {p}",
                        (now, entry["status"], data, code, member, run_id))
            return
        [(count,)] = execute(f"SELECT COUNT(*) FROM {ENTRIES} WHERE code = {p} AND member = {p}", (code, member))
        if count >= MAX_ENTRIES_PER_MEMBER:
            raise BoardError(f"You have {MAX_ENTRIES_PER_MEMBER} runs on this board already: ask your teacher to remove some.")
        execute(f"UPDATE {BOARDS} SET numbered = numbered + 1 WHERE code = {p}", (code,))
        [(number,)] = execute(f"SELECT numbered FROM {BOARDS} WHERE code = {p}", (code,))
        execute(f"INSERT INTO {ENTRIES} (code, number, member, run_id, updated, status, data) VALUES ({p}, {p}, {p}, {p}, {p}, {p}, {p})",
                (code, number, member, run_id, now, entry["status"], data))

    try:
        _transaction(store, work)
    except BoardError as err:
        return str(err)
    except Exception as err:  # noqa: BLE001 -- called from a training thread: a bug here must not stop the training
        log.exception("publishing a run to a class board failed")
        return f"This run was not put on the board because of an error ({type(err).__name__})."
    return ""


def read_board(store: RunStore, code: str) -> Board:
    """The board with this code as it is now (entries in order of their numbers); BoardError when there is none."""
    if not valid_code(code):
        raise BoardError(MALFORMED)

    def work(execute, p):
        rows = execute(f"SELECT created, closed, pinned, settings FROM {BOARDS} WHERE code = {p}", (code,))
        if not rows:
            raise BoardError(UNKNOWN)
        members = dict(execute(f"SELECT member, nickname FROM {MEMBERS} WHERE code = {p}", (code,)))
        entries = execute(f"SELECT number, member, updated, data FROM {ENTRIES} WHERE code = {p} AND removed = 0 ORDER BY number", (code,))
        return rows[0], members, entries

    (created, closed, pinned, settings), members, rows = _transaction(store, work, write=False)
    entries = []
    for number, member, updated, data in rows:
        try:
            body = json.loads(data)
            entries.append(Entry(int(number), members.get(member, "?"), body["status"], body["settings"], body["records"], float(updated)))
        except (TypeError, ValueError, KeyError) as err:
            log.warning("class board: entry %s is unreadable (%s); skipped", number, err)
    try:
        settings = json.loads(settings)
    except ValueError:
        settings = {}
    return Board(code, float(created), bool(closed), int(pinned), settings if isinstance(settings, dict) else {}, len(members), entries)


# ------------------------------------------------------------------------------------- the page's session state


def join_from_link(store: RunStore | str, query: Mapping, state: MutableMapping, owner: str = "") -> tuple[Member | None, str]:
    """Once per session: join the board named by the link's ?board=CODE; (the member or None, why not or "").

    query: st.query_params; state: st.session_state; owner: the session's owner token (sid), so that a reload
    with the same sid finds the same membership and nickname. The member is kept in state[MEMBER_STATE].
    """
    code = query.get("board")
    member = state.get(MEMBER_STATE)
    if not code or (member is not None and member.code == code):
        return member, ""
    if isinstance(store, str):
        return member, f"You were not put on the class board, because the run store is not available ({store.rstrip('.')})."
    if not valid_code(code):
        return member, MALFORMED
    try:
        member = join(store, code, token=member_token_for(code, owner) if valid_token(owner) else "")
    except BoardError as err:
        return state.get(MEMBER_STATE), str(err)
    state[MEMBER_STATE] = member
    state[CODE_STATE] = code
    return member, ""


# ----------------------------------------------------------------------------------------- background publishing


class Publisher:
    """Publishes runs in one background thread: submit() returns at once; per run only the newest state waits."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._waiting: dict[tuple, tuple] = {}  # (store id, code, token, run id) -> (store, code, token, run dict)
        self._problems: dict[str, str] = {}  # member token -> the last failure ("" cleared)
        self._busy = False
        self._thread: threading.Thread | None = None

    def submit(self, store: RunStore, member: Member, run_dict: Mapping) -> None:
        """Queue the newest state of a run of member's (a Run.to_dict() dict; its model is never published)."""
        key = (id(store), member.code, member.token, run_dict.get("id") if isinstance(run_dict, Mapping) else None)
        with self._cond:
            self._waiting.pop(key, None)
            self._waiting[key] = (store, member.code, member.token, run_dict)
            if self._thread is None:
                self._thread = threading.Thread(target=self._serve, name="class-board-publisher", daemon=True)
                self._thread.start()
                atexit.register(self.flush, 5.0)
            self._cond.notify_all()

    def problem(self, member: Member) -> str:
        """Why the member's last run was not put on the board ("" when it was)."""
        with self._cond:
            return self._problems.get(member.token, "")

    def flush(self, timeout: float) -> bool:
        """Wait until nothing waits (True) or timeout seconds pass (False)."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while self._waiting or self._busy:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._cond.wait(remaining)
            return True

    def _serve(self) -> None:
        while True:
            with self._cond:
                while not self._waiting:
                    self._cond.wait()
                key = next(iter(self._waiting))
                store, code, token, run_dict = self._waiting.pop(key)
                self._busy = True
            problem = publish(store, code, token, run_dict)
            with self._cond:
                self._busy = False
                self._problems[token] = problem
                self._cond.notify_all()


_publisher = Publisher()


def publisher() -> Publisher:
    """The process's one Publisher."""
    return _publisher


# ------------------------------------------------------------------------------------ figures, table and CSV


def ranked(board: Board) -> list[Entry]:
    """Trained entries, best final test accuracy first."""
    trained = [e for e in board.entries if e.epochs > 0 and not math.isnan(e.test_acc)]
    return sorted(trained, key=lambda e: (-e.test_acc, e.number))


def table_rows(board: Board) -> list[dict]:
    """One row per entry for the sortable table, best first (numbers as numbers; text as plain text)."""
    order = {e.number: i for i, e in enumerate(ranked(board))}
    rows = []
    for e in sorted(board.entries, key=lambda e: (order.get(e.number, len(order)), e.number)):
        s = e.settings
        last = e.records[-1] if e.records else {}
        rows.append({
            "#": e.number, "pinned": e.number == board.pinned, "nickname": e.nickname, "status": e.status,
            "test acc": e.test_acc, "best test acc": e.best_test_acc, "epochs": e.epochs,
            "lr": s.get("lr"), "batch": s.get("batch_size"), "momentum": s.get("momentum"), "weight decay": s.get("weight_decay"),
            "schedule": s.get("schedule"), "softmax": s.get("softmax"), "seed": s.get("seed"),
            "train loss": _number(last.get("train_loss")) if e.epochs else math.nan, "data set": s.get("dataset"),
        })
    return rows


_FORMULA = ("=", "+", "-", "@", "\t", "\r")


def board_csv(board: Board) -> str:
    """Every entry and epoch as CSV (one row per entry and epoch); text that a spreadsheet would run as a formula starts with '."""
    columns = ["entry", "nickname", "status", "lr", "batch_size", "epochs", "momentum", "weight_decay", "schedule", "step_size", "gamma",
               "softmax", "seed", "sigma", "dataset", "epoch", "train_loss", "train_acc", "test_loss", "test_acc", "epoch_lr", "pinned"]
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(columns)
    for e in board.entries:
        s = e.settings
        head = [e.number, _cell(e.nickname), e.status] + [s.get(k) for k in ("lr", "batch_size", "epochs", "momentum", "weight_decay",
                                                                              "schedule", "step_size", "gamma", "softmax", "seed", "sigma", "dataset")]
        for r in e.records:
            writer.writerow(head + [r.get("epoch"), r.get("train_loss"), r.get("train_acc"), r.get("test_loss"), r.get("test_acc"), r.get("lr"),
                                    int(e.number == board.pinned)])
    return out.getvalue()


def _cell(text: str) -> str:
    return "'" + text if text.startswith(_FORMULA) else text


BATCH_COLORS = "Viridis"
PIN_COLOR, BEST_COLORS = "#d62728", ("#1f77b4", "#ff7f0e", "#2ca02c")
LR_TICKS = (0.0001, 0.0003, 0.001, 0.003, 0.01, 0.03, 0.1, 0.3, 1.0, 3.0, 10.0, 30.0, 100.0)
BEST = 3  # curves highlighted besides the pinned one


def _jitter(number: int) -> float:
    """A small, fixed sideways spread (a factor within ±6 %) so that runs at one learning rate do not hide one another."""
    return 1.0 + 0.12 * (((number * 0.6180339887) % 1.0) - 0.5)


def _label(e: Entry) -> str:
    s = e.settings
    return (f"#{e.number} {plot_text(e.nickname)}<br>test acc {e.test_acc:.1%} after {e.epochs} epochs<br>"
            f"lr {s.get('lr'):g}, batch {s.get('batch_size')}, {e.status}")


def scatter_figure(board: Board, font_size: int = 20, height: int = 520) -> dict:
    """Final test accuracy against learning rate (log axis): colour by batch size, size by epochs; the pinned run ringed."""
    shown = ranked(board)
    batches = sorted({int(e.settings.get("batch_size", 1)) for e in shown}) or [256]
    sizes = [12 + 5 * math.sqrt(max(e.epochs, 1)) for e in shown]
    traces = [{
        "type": "scatter", "mode": "markers", "name": "runs", "showlegend": False,
        "x": [float(e.settings["lr"]) * _jitter(e.number) for e in shown], "y": [e.test_acc for e in shown],
        "text": [_label(e) for e in shown], "hovertemplate": "%{text}<extra></extra>",
        "marker": {
            "size": sizes, "color": [math.log2(int(e.settings.get("batch_size", 1))) for e in shown],
            "colorscale": BATCH_COLORS, "cmin": math.log2(batches[0]), "cmax": math.log2(batches[-1]) + (batches[0] == batches[-1]),
            "symbol": ["circle-open" if e.status == "training" else "x" if e.status == "diverged" else "circle" for e in shown],
            "line": {"width": 2, "color": "rgba(0,0,0,0.55)"}, "opacity": 0.9,
            "colorbar": {"title": {"text": "batch size", "font": {"size": font_size}}, "tickvals": [math.log2(b) for b in batches],
                         "ticktext": [str(b) for b in batches], "tickfont": {"size": font_size}, "thickness": 24},
        },
    }]
    pinned = board.entry(board.pinned)
    annotations = []
    if pinned is not None and pinned.epochs:
        x, y = float(pinned.settings["lr"]) * _jitter(pinned.number), pinned.test_acc
        traces.append({"type": "scatter", "mode": "markers", "x": [x], "y": [y], "showlegend": False, "hoverinfo": "skip",
                       "marker": {"size": 12 + 5 * math.sqrt(pinned.epochs) + 22, "symbol": "circle-open", "color": PIN_COLOR, "line": {"width": 5}}})
        annotations.append({"x": math.log10(x), "y": y, "text": f"pinned: #{pinned.number} {plot_text(pinned.nickname)}", "showarrow": True,
                            "arrowcolor": PIN_COLOR, "ax": 0, "ay": -60, "font": {"size": font_size + 2, "color": PIN_COLOR},
                            "bgcolor": "rgba(255,255,255,0.85)"})
    return {"data": traces, "layout": {
        "height": height, "margin": {"l": 90, "r": 30, "t": 60, "b": 80}, "font": {"size": font_size},
        "title": {"text": "Final test accuracy against learning rate (size: epochs)", "font": {"size": font_size + 4}},
        "xaxis": {"type": "log", "title": {"text": "learning rate (log scale)"}, "tickfont": {"size": font_size},
                  "tickvals": LR_TICKS, "ticktext": [f"{v:g}" for v in LR_TICKS]},  # no small in-between labels (2, 5)
        # ".1~%": ticks half a point apart read 82.5 % and 83 % (".0%" showed "82%" twice on a class's narrow range)
        "yaxis": {"title": {"text": "test accuracy"}, "tickformat": ".1~%", "tickfont": {"size": font_size}},
        "annotations": annotations, "hoverlabel": {"font": {"size": font_size}},
    }}


def curves_figure(board: Board, font_size: int = 20, height: int = 520) -> dict:
    """Every run's test accuracy per epoch as a thin grey line; the best few in colour and the pinned one in bold red."""
    best = [e.number for e in ranked(board)[:BEST]]
    traces = []
    ordered = sorted(board.entries, key=lambda e: (e.number == board.pinned, e.number in best, -best.index(e.number) if e.number in best else 0))
    for e in ordered:
        points = [r for r in e.records if r.get("epoch", 0) > 0]
        if not points:
            continue
        name = f"#{e.number} {plot_text(e.nickname)}"
        if e.number == board.pinned:
            style, legend = {"color": PIN_COLOR, "width": 6}, f"pinned {name}"
        elif e.number in best:
            style, legend = {"color": BEST_COLORS[best.index(e.number)], "width": 4}, f"{name} ({e.test_acc:.1%})"
        else:
            style, legend = {"color": "rgba(110,110,110,0.45)", "width": 1.5}, None
        traces.append({
            "type": "scatter", "mode": "lines+markers" if len(points) == 1 else "lines", "x": [r["epoch"] for r in points],
            "y": [r["test_acc"] for r in points], "line": style, "name": legend or name, "showlegend": legend is not None,
            "hovertemplate": f"{name}<br>epoch %{{x}}: %{{y:.1%}}<extra></extra>",
        })
    return {"data": traces, "layout": {
        "height": height, "margin": {"l": 90, "r": 30, "t": 60, "b": 40}, "font": {"size": font_size},
        "title": {"text": "Test accuracy per epoch (best runs in colour)", "font": {"size": font_size + 4}},
        "xaxis": {"title": {"text": "epoch"}, "tickfont": {"size": font_size}, "rangemode": "tozero"},
        "yaxis": {"title": {"text": "test accuracy"}, "tickformat": ".1~%", "tickfont": {"size": font_size}},
        "legend": {"font": {"size": font_size}, "orientation": "h", "y": -0.22, "yanchor": "top"}, "hoverlabel": {"font": {"size": font_size}},
    }}
