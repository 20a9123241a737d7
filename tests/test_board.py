"""The class board: boards, members and entries in the run store (SQLite and PostgreSQL), two connections on one
file, hostile nicknames, the background publisher, the figures and CSV, and the page through AppTest."""

from __future__ import annotations

import csv
import io
import json
import math
import time
from pathlib import Path

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

from softmax_core import Dataset, SoftmaxRegression, TrainConfig, Trainer
from ui import board as bd
from ui.controls import escape_markdown
from ui.run_store import SQLiteRunStore, new_owner_token, open_store
from ui.session import Run, Setup

from .conftest import REPO
from .test_run_store import postgres_url  # noqa: F401 -- the throwaway PostgreSQL server fixture

HOSTILE = [
    "**bold** [link](http://evil.example) <img src=x onerror=alert(1)>",
    "=HYPERLINK(\"http://evil.example\",\"x\")",
    "line\nbreak\ttab\u202eevil\u200b",
    "@everyone www.evil.example",
    "x" * 10_000,
    "   ",
    "<b>Teal</b> &amp; Otter",
]


def real_run(dataset: Dataset, run_id: int, lr: float, batch_size: int, epochs: int = 2, seed: int = 0) -> Run:
    """A run trained for real on the first 6,000 training and 1,000 test images (its Run, as the Train page keeps it)."""
    setup = Setup(dataset.name, seed=seed)
    rng = np.random.default_rng(seed)
    model = SoftmaxRegression.init(rng, sigma=setup.sigma)
    trainer = Trainer(model, dataset.train_images[:6000], dataset.train_labels[:6000], dataset.test_images[:1000], dataset.test_labels[:1000], rng)
    config = TrainConfig(lr=lr, batch_size=batch_size, epochs=epochs)
    run = Run(run_id, setup, config, [trainer.initial_record()], status="training", label="my secret label")
    run.records.extend(trainer.run(config))
    run.status = "finished"
    return run


@pytest.fixture(scope="module")
def runs(fashion: Dataset) -> list[Run]:
    """Three real runs at different learning rates and batch sizes."""
    return [real_run(fashion, 1, 0.1, 256), real_run(fashion, 2, 1.0, 64), real_run(fashion, 3, 0.01, 1024)]


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request, tmp_path: Path):
    """Both stores the app can use."""
    s = SQLiteRunStore(tmp_path / "runs.sqlite3") if request.param == "sqlite" else open_store(request.getfixturevalue("postgres_url"))
    yield s
    s.close()


def with_model(run: Run) -> dict:
    """run.to_dict() as the run store's saver gets it: with the model's bytes."""
    return {**run.to_dict(), "model": "UEsDBBQAAAAIAA=="}


def test_start_join_publish_pin_remove_leave_close(store, runs: list[Run]) -> None:
    opened = bd.start_board(store, {"lr": "0.5", "batch": "64", "sid": "leaked", "board": "x"})
    assert bd.valid_code(opened.code) and len(opened.code) >= 16 and opened.key != opened.code
    assert bd.is_teacher(store, opened.code, opened.key) and not bd.is_teacher(store, opened.code, opened.code)
    ada, bo = bd.join(store, opened.code, "Ada"), bd.join(store, opened.code, "")
    assert ada.nickname == "Ada" and bo.nickname.split()[0] in bd.ADJECTIVES and bo.nickname.split()[1] in bd.ANIMALS
    assert bd.join(store, opened.code, "ada").nickname == "ada 2"  # no two students share a name on the board

    assert bd.publish(store, opened.code, ada.token, with_model(runs[0])) == ""
    assert bd.publish(store, opened.code, bo.token, with_model(runs[1])) == ""
    assert bd.publish(store, opened.code, ada.token, with_model(runs[2])) == ""
    board = bd.read_board(store, opened.code)
    assert board.settings == {"lr": "0.5", "batch": "64"}  # the link's settings only, never a session id
    assert board.members == 3 and [e.number for e in board.entries] == [1, 2, 3]
    assert [e.nickname for e in board.entries] == ["Ada", bo.nickname, "Ada"]
    first = board.entries[0]
    assert first.settings["lr"] == 0.1 and first.settings["batch_size"] == 256 and first.status == "finished"
    assert [r["test_acc"] for r in first.records] == pytest.approx([r.test_acc for r in runs[0].records])
    assert first.test_acc == pytest.approx(runs[0].records[-1].test_acc) and first.epochs == 2

    stored = json.dumps([row for row in store._transaction(lambda ex: ex(f"SELECT * FROM {bd.ENTRIES}", ()), write=False)])
    assert "UEsDBBQ" not in stored and "my secret label" not in stored and ada.token not in stored  # no model, label or token

    # a run's newer state replaces its entry (same number), it does not add one
    more = Run.from_dict(runs[0].to_dict())
    more.records.append(more.records[-1].__class__(**{**more.records[-1].as_dict(), "epoch": 3, "test_acc": 0.9}))
    assert bd.publish(store, opened.code, ada.token, more.to_dict()) == ""
    board = bd.read_board(store, opened.code)
    assert len(board.entries) == 3 and board.entries[0].epochs == 3 and board.entries[0].test_acc == 0.9

    with pytest.raises(bd.BoardError, match="teacher link"):
        bd.pin(store, opened.code, "wrong-key", 2)
    bd.pin(store, opened.code, opened.key, 2)
    assert bd.read_board(store, opened.code).pinned == 2
    bd.remove(store, opened.code, opened.key, 2)
    board = bd.read_board(store, opened.code)
    assert [e.number for e in board.entries] == [1, 3] and board.pinned == 0
    assert bd.publish(store, opened.code, bo.token, runs[1].to_dict()) == ""  # a removed run stays off the board
    assert [e.number for e in bd.read_board(store, opened.code).entries] == [1, 3]

    bd.leave(store, opened.code, ada.token)
    board = bd.read_board(store, opened.code)
    assert board.entries == [] and board.members == 2
    assert bd.publish(store, opened.code, ada.token, runs[0].to_dict()) == bd.NOT_MEMBER
    left = store._transaction(lambda ex: ex(f"SELECT COUNT(*) FROM {bd.ENTRIES} WHERE code = {store.PARAM}", (opened.code,)), write=False)
    assert left == [(1,)]  # only the teacher's tombstone of Bo's removed run: Ada's entries are gone from the store

    carl = bd.join(store, opened.code, "Carl")
    with pytest.raises(bd.BoardError, match="teacher link"):
        bd.close_board(store, opened.code, "")
    bd.close_board(store, opened.code, opened.key)
    assert bd.read_board(store, opened.code).closed
    assert bd.publish(store, opened.code, carl.token, runs[0].to_dict()) == bd.CLOSED
    for refused in (lambda: bd.join(store, opened.code, "Dan"), lambda: bd.pin(store, opened.code, opened.key, 0),
                    lambda: bd.remove(store, opened.code, opened.key, 1)):
        with pytest.raises(bd.BoardError, match="closed"):
            refused()
    bd.leave(store, opened.code, carl.token)  # leaving still works, and still deletes
    assert bd.read_board(store, opened.code).members == 2  # Bo and "ada 2"


def test_unknown_and_malformed_codes(store) -> None:
    assert bd.publish(store, bd.new_code(), new_owner_token(), {"id": 1}) != ""
    with pytest.raises(bd.BoardError, match="no board with this code"):
        bd.join(store, bd.new_code(), "x")
    for junk in ("", "short", "a" * 15, "../../etc/passwd", "x' OR '1'='1" * 3, None):
        with pytest.raises(bd.BoardError, match="not complete"):
            bd.join(store, junk, "x")
        with pytest.raises(bd.BoardError):
            bd.read_board(store, junk)
    code = bd.start_board(store, {}).code
    assert bd.publish(store, code, "not-a-member", {"id": 1}).startswith("This run was not put on the board")  # not a run
    assert bd.publish(store, code, new_owner_token(), Run(1, Setup(), TrainConfig()).to_dict()) == bd.NOT_MEMBER


def test_hostile_nicknames_are_kept_as_plain_text(store, runs: list[Run]) -> None:
    code = bd.start_board(store, {}).code
    members = [bd.join(store, code, name) for name in HOSTILE]
    for member in members:
        assert bd.publish(store, code, member.token, runs[0].to_dict()) == ""
    names = [m.nickname for m in members]
    assert names[0] == "**bold** [link](http://evi"[: bd.NICKNAME_LENGTH]
    assert names[2] == "line break tabevil"  # line breaks and tabs are spaces; bidi overrides and zero-width characters are gone
    assert names[4] == "x" * bd.NICKNAME_LENGTH and names[5].split()[0] in bd.ADJECTIVES  # blank: a generated name
    assert all("\n" not in n and "\u202e" not in n and len(n) <= bd.NICKNAME_LENGTH for n in names)
    board = bd.read_board(store, code)
    assert [e.nickname for e in board.entries] == names

    # Markdown: shown as itself; Plotly (which reads <a>, <b>): tags escaped; CSV: no formula
    badge = bd.badge_text(members[0])
    assert "\\*\\*bold\\*\\*" in badge and "\\[link\\]" in badge and escape_markdown(members[0].nickname, line_start=False) in badge
    board = bd.Board(code, 0, False, board.entries[6].number, {}, len(members), board.entries)
    figures = json.dumps([bd.scatter_figure(board), bd.curves_figure(board)], ensure_ascii=False)
    assert "<b>Teal" not in figures and "&lt;b&gt;Teal&lt;/b&gt; &amp;amp; Otter" in figures and "<img" not in figures
    rows = list(csv.reader(io.StringIO(bd.board_csv(board))))
    hyperlink = [r for r in rows[1:] if "HYPERLINK" in r[1]]
    assert hyperlink and all(r[1].startswith("'=") for r in hyperlink)
    assert {r[1] for r in rows[1:] if "@" in r[1]} == {"'" + names[3]}


def test_two_connections_on_one_file_meet_on_one_board(tmp_path: Path, runs: list[Run]) -> None:
    path = tmp_path / "shared.sqlite3"
    a, b = SQLiteRunStore(path), open_store(f"sqlite:///{path}")  # two servers' connections
    try:
        opened = bd.start_board(a, {"lr": "0.1"})
        student = bd.join(b, opened.code, "Grace")
        assert bd.publish(b, opened.code, student.token, runs[1].to_dict()) == ""
        board = bd.read_board(a, opened.code)
        assert [(e.nickname, e.settings["lr"]) for e in board.entries] == [("Grace", 1.0)]
        bd.pin(a, opened.code, opened.key, 1)
        assert bd.read_board(b, opened.code).pinned == 1
        bd.close_board(a, opened.code, opened.key)
        assert bd.publish(b, opened.code, student.token, runs[0].to_dict()) == bd.CLOSED
    finally:
        a.close()
        b.close()


def test_a_reload_keeps_the_membership(store) -> None:
    code, owner = bd.start_board(store, {}).code, new_owner_token()
    state: dict = {}
    member, problem = bd.join_from_link(store, {"board": code}, state, owner)
    assert problem == "" and state[bd.MEMBER_STATE] == member and state[bd.CODE_STATE] == code
    again, _ = bd.join_from_link(store, {"board": code}, {}, owner)  # a new session after a reload, same sid
    assert again == member and bd.read_board(store, code).members == 1
    renamed = bd.rename(store, member, "  Ada\u202e  ")
    assert renamed.nickname == "Ada" and renamed.token == member.token
    stranger, _ = bd.join_from_link(store, {"board": code}, {}, new_owner_token())
    assert stranger.token != member.token and bd.read_board(store, code).members == 2
    assert bd.join_from_link(store, {"board": "junk"}, {}, owner) == (None, bd.MALFORMED)
    assert bd.join_from_link("the store is off", {"board": code}, {}, owner)[0] is None


def test_publisher_never_blocks_and_keeps_the_newest_state(tmp_path: Path, runs: list[Run]) -> None:
    store = SQLiteRunStore(tmp_path / "runs.sqlite3")
    opened = bd.start_board(store, {})
    member = bd.join(store, opened.code, "Lin")
    publisher = bd.Publisher()
    states = []
    for n in range(1, len(runs[0].records) + 1):
        partial = Run.from_dict(runs[0].to_dict())
        partial.records = partial.records[:n]
        states.append(partial.to_dict())
    for state in states:
        publisher.submit(store, member, state)
    assert publisher.flush(30)
    [entry] = bd.read_board(store, opened.code).entries
    assert entry.epochs == runs[0].records[-1].epoch and publisher.problem(member) == ""
    bd.close_board(store, opened.code, opened.key)
    publisher.submit(store, member, runs[1].to_dict())
    assert publisher.flush(30) and publisher.problem(member) == bd.CLOSED
    store.close()


def test_figures_table_and_csv(runs: list[Run]) -> None:
    entries = [bd.Entry(i + 1, f"s{i}", "finished" if i else "training", bd.public_entry(r.to_dict())["settings"],
                        bd.public_entry(r.to_dict())["records"], time.time()) for i, r in enumerate(runs)]
    board = bd.Board("c" * 16, 0, False, 3, {}, 3, entries)
    assert board.training() == 1 and board.training(now=time.time() + 2 * bd.STALE) == 0
    best = sorted(runs, key=lambda r: -r.records[-1].test_acc)
    assert [e.settings["lr"] for e in bd.ranked(board)] == [r.config.lr for r in best]
    scatter = bd.scatter_figure(board)
    assert scatter["layout"]["xaxis"]["type"] == "log"
    points = scatter["data"][0]
    assert points["y"] == pytest.approx([r.records[-1].test_acc for r in best])
    assert [x / r.config.lr for x, r in zip(points["x"], best)] == pytest.approx([1.0] * 3, abs=0.07)  # a small spread only
    assert len(scatter["data"]) == 2 and scatter["layout"]["annotations"][0]["text"].startswith("pinned: #3")  # the pin, ringed
    curves = bd.curves_figure(board)
    widths = {t["name"].removeprefix("pinned ").split()[0]: t["line"]["width"] for t in curves["data"]}
    assert widths["#3"] == 6 and {widths["#1"], widths["#2"]} == {4}  # pinned bold; the others are among the best three
    rows = bd.table_rows(board)
    assert [r["#"] for r in rows] == [e.number for e in bd.ranked(board)] and sum(r["pinned"] for r in rows) == 1
    table = list(csv.DictReader(io.StringIO(bd.board_csv(board))))
    assert len(table) == sum(len(r.records) for r in runs)
    assert float(table[-1]["test_acc"]) == pytest.approx(runs[-1].records[-1].test_acc) and table[-1]["pinned"] == "1"
    assert math.isclose(float(table[0]["lr"]), runs[0].config.lr)


def test_links_and_qr() -> None:
    base = bd.app_base("https://school.example:8443/softmax/class_board?board=abc&key=secret")
    assert base == "https://school.example:8443/softmax/"
    assert bd.app_base("http://localhost:8501/") == "http://localhost:8501/"
    link = bd.join_link(base, "C" * 16, {"lr": "0.5", "batch": "64", "sid": "x", "key": "y"})
    assert link == "https://school.example:8443/softmax/?board=CCCCCCCCCCCCCCCC&lr=0.5&batch=64"
    assert bd.teacher_link(base, "C" * 16, "K").endswith("/softmax/class_board?board=CCCCCCCCCCCCCCCC&key=K")
    png = bd.qr_png(link)
    assert png.startswith(b"\x89PNG")
    from PIL import Image  # noqa: PLC0415

    image = Image.open(io.BytesIO(png))
    assert image.width >= 400  # 12 px per module: large on a projector
    assert len({bd.new_code() for _ in range(200)}) == 200 and len(bd.new_code()) == 16


# ------------------------------------------------------------------------------------------------------ the page


@pytest.fixture
def page_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, data_root: Path) -> Path:
    path = tmp_path / "runs.sqlite3"
    monkeypatch.setenv("SOFTMAX_RUNS_DB", str(path))
    monkeypatch.setenv("SOFTMAX_DATA_DIR", str(data_root))
    return path


def new_page() -> AppTest:
    return AppTest.from_file(str(REPO / "pages" / "class_board.py"), default_timeout=60)


def texts(at: AppTest) -> str:
    return "\n".join(str(e.value) for e in [*at.markdown, *at.info, *at.warning, *at.error, *at.caption, *at.code])


def test_page_start_teacher_controls_and_student_view(page_env: Path, runs: list[Run]) -> None:
    at = new_page().run()
    assert not at.exception
    at.select_slider(key="board_lr").set_value(0.5)
    at.select_slider(key="board_batch").set_value(64)
    at.button[0].click().run()  # the form's "Start a board"
    assert not at.exception, at.exception
    code = at.query_params["board"]
    code = code if isinstance(code, str) else code[-1]
    key = at.session_state[bd.KEYS_STATE][code]
    assert bd.valid_code(code) and "key" not in at.query_params
    links = [c.value for c in at.code]
    assert any(f"?board={code}&lr=0.5&batch=64" in v for v in links) and any(f"key={key}" in v for v in links)
    assert len(at.get("image")) == 1  # the QR code

    store = SQLiteRunStore(page_env)
    students = [bd.join(store, code, name) for name in ("**Ada**", "<b>Bo</b>", "=1+1")]
    for i, (member, run) in enumerate(zip(students, runs)):
        assert bd.publish(store, code, member.token, {**run.to_dict(), "id": i + 1}) == ""
    at.run()
    assert not at.exception
    assert [m.value for m in at.metric] == ["3", "3", "0", f"{max(r.records[-1].test_acc for r in runs):.1%}"]
    frame = at.dataframe[0].value
    assert list(frame["nickname"]) == [e.nickname for e in bd.ranked(bd.read_board(store, code))]
    assert len(at.get("plotly_chart")) == 2

    at.selectbox(key="board_pick").set_value(2).run()
    at.button(key="board_pin").click().run()
    assert not at.exception and bd.read_board(store, code).pinned == 2
    assert "Pinned: #2 \\<b\\>Bo\\<\\/b\\>" in texts(at)  # escaped, shown as itself

    # a student opens the board page (the join link's board, in their session): read-only, the pin shown
    student = new_page()
    student.session_state[bd.MEMBER_STATE] = students[0]
    student.query_params["board"] = code
    student.run()
    assert not student.exception
    assert "Pinned: #2" in texts(student)
    assert not [b for b in student.button if b.key in ("board_pin", "board_remove", "board_close")]
    assert not student.get("image") and not [c for c in student.code if key in c.value]  # no QR, no teacher key
    assert "on board" in bd.badge_text(students[0]) and bd.badge_text(students[0]) in texts(student)  # st.badge is Markdown
    # someone else who types the teacher key wrongly stays read-only
    stranger = new_page()
    stranger.query_params["board"], stranger.query_params["key"] = code, "guess"
    stranger.run()
    assert "read-only" in texts(stranger) and not [b for b in stranger.button if b.key == "board_close"]

    at.button(key="board_close").click().run()
    assert not at.exception and bd.read_board(store, code).closed
    assert "closed" in texts(at) and not [b for b in at.button if b.key == "board_pin"]
    student.run()
    assert "closed" in texts(student)
    store.close()


def test_page_with_a_bad_link_says_so(page_env: Path) -> None:
    at = new_page()
    at.query_params["board"] = "not a code <b>"
    at.run()
    assert not at.exception and bd.MALFORMED in texts(at)
    at = new_page()
    at.query_params["board"] = bd.new_code()
    at.run()
    assert not at.exception and bd.UNKNOWN in texts(at)
