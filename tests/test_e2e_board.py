"""The class board in Chromium, on two servers that share one run store: start, join, publish, pin, remove, leave, close."""

from __future__ import annotations

import csv
import io
import re
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

from playwright.sync_api import Page, expect
from playwright.sync_api import TimeoutError as PlaywrightTimeout

from tests.test_e2e import WAIT, button, open_app, wait_idle
from tests.test_e2e_pages import TRAIN_WAIT, Sessions, finished, records, sessions  # noqa: F401 -- the sessions fixture

BOARD_WAIT = 30_000  # ms: the board redraws every second; a busy machine is slower


def board_metric(page: Page, label: str):
    """The value of one of the board's counts."""
    metric = page.get_by_test_id("stMetric").filter(has=page.get_by_test_id("stMetricLabel").filter(has_text=label))
    return metric.get_by_test_id("stMetricValue")


def board_rows(page: Page) -> list[dict[str, str]]:
    """The board table's rows (the table is drawn on a canvas; its accessible copy is read)."""
    return records(page.locator(".st-key-board_table").get_by_test_id("stDataFrame"))


def expect_rows(page: Page, want, timeout_ms: int = BOARD_WAIT) -> list[dict[str, str]]:
    """Wait until the board's table satisfies want(rows); return the rows."""
    deadline = page.evaluate("() => performance.now()") + timeout_ms
    while True:
        rows = board_rows(page) if page.locator(".st-key-board_table").count() else []
        if want(rows):
            return rows
        if page.evaluate("() => performance.now()") > deadline:
            raise AssertionError(f"the board's table is {rows}")
        page.wait_for_timeout(500)


def test_a_class_board_across_two_servers(sessions: Sessions,  # noqa: F811 -- the imported fixture
                                           start_dashboards, tmp_path: Path) -> None:
    server_a, server_b = start_dashboards(2, tmp_path / "runs.sqlite3")

    # The teacher starts a board on server B.
    teacher = sessions.new(server=server_b, viewport={"width": 1920, "height": 1080})
    teacher.goto("/class_board")
    # The server's first visitor, straight to the board's address: the page still runs inside dashboard.py (its
    # navigation, its session id in the address), not as the pages/ file alone.
    expect(teacher.get_by_test_id("stSidebarNav").get_by_role("link", name=re.compile(r"Train$"))).to_have_count(1, timeout=WAIT)
    expect(teacher).to_have_url(re.compile(r"/class_board\?(.*&)?sid="), timeout=WAIT)
    teacher.get_by_role("button", name="Start a board").click()
    join = teacher.get_by_test_id("stMain").get_by_test_id("stCode").first
    expect(join).to_contain_text("board=", timeout=WAIT)
    link = join.inner_text().strip()
    query = parse_qs(urlsplit(link).query)
    code = query["board"][0]
    assert len(code) >= 16 and "key" not in query and "sid" not in query, link  # 96 random bits; no secret in it
    expect(teacher.get_by_role("img")).not_to_have_count(0)  # the QR code
    expect(board_metric(teacher, "Students joined")).to_have_text("0")

    # A student opens the join link on server A (another replica) and trains.
    student = sessions.new(server=server_a)
    open_app(student, f"?board={code}&epochs=2")
    badge = student.get_by_test_id("stSidebar").get_by_text(re.compile(r"on board .* as "))
    expect(badge).to_be_visible()
    nickname = re.search(r" as (.+)$", badge.inner_text().strip()).group(1)
    expect(board_metric(teacher, "Students joined")).to_have_text("1", timeout=BOARD_WAIT)
    button(student, "Train").click()
    finished(student, 2)

    rows = expect_rows(teacher, lambda rows: len(rows) == 1 and rows[0].get("epochs") == "2")
    assert rows[0]["nickname"] == nickname and rows[0]["status"] == "finished", rows
    teacher.screenshot(path="/tmp/e2e_board_published.png")

    # The student's view of the board (the same session after a reload) is read-only; then the student leaves.
    sid = parse_qs(urlsplit(student.url).query)["sid"][0]
    student.goto(f"/class_board?board={code}&sid={sid}")  # the same session, after a reload: the same membership
    expect(student.get_by_test_id("stMain").get_by_text(f"as {nickname}")).to_be_visible(timeout=BOARD_WAIT)  # the badge
    expect(student.get_by_role("button", name="Pin")).to_have_count(0)  # pin, remove and close are the teacher's
    expect(board_metric(teacher, "Students joined")).to_have_text("1")

    # The teacher pins the entry (the entry list stays open while the board redraws every second): it is
    # highlighted on the teacher's board and on the student's view of it. Then the teacher removes it.
    entry = teacher.get_by_test_id("stSelectbox").filter(has_text="Entry").get_by_role("combobox")
    entry.click()
    teacher.wait_for_timeout(2500)  # two of the board's redraws with the list open
    teacher.get_by_role("option", name=re.compile(rf"^#1 {re.escape(nickname)} ")).click()
    teacher.get_by_role("button", name="Pin", exact=True).click()
    pinned = re.compile(rf"Pinned: #1 {re.escape(nickname)}")
    expect(teacher.get_by_text(pinned)).to_be_visible(timeout=BOARD_WAIT)
    expect(student.get_by_text(pinned)).to_be_visible(timeout=BOARD_WAIT)
    assert expect_rows(teacher, lambda rows: len(rows) == 1 and rows[0].get("pinned") == "true")
    teacher.screenshot(path="/tmp/e2e_board_pinned.png")
    with teacher.expect_download(timeout=BOARD_WAIT) as info:  # the CSV is made when clicked
        teacher.get_by_role("button", name="Download all entries (CSV)").click()
    entries = list(csv.DictReader(io.StringIO(Path(info.value.path()).read_text())))
    assert info.value.suggested_filename == f"class-board-{code}.csv"
    assert {(e["nickname"], e["status"], e["pinned"], e["epochs"]) for e in entries} == {(nickname, "finished", "1", "2")}, entries
    assert [e["epoch"] for e in entries][-2:] == ["1", "2"], entries  # a row per epoch
    wait_idle(teacher)
    option = teacher.get_by_role("option", name=re.compile(rf"^#1 {re.escape(nickname)} "))
    entry.click()
    try:
        option.wait_for(state="visible", timeout=WAIT / 2)
    except PlaywrightTimeout:
        # On a loaded machine (the suite beside a CPU hog) this click once opened nothing, 20 s after the
        # CSV download; a user clicks again. (The list staying open across redraws is checked above, once.)
        entry.click()
    option.click()
    teacher.get_by_role("button", name="Remove", exact=True).click()
    expect(teacher.get_by_text("No runs yet")).to_be_visible(timeout=BOARD_WAIT)
    expect(student.get_by_text("No runs yet")).to_be_visible(timeout=BOARD_WAIT)
    expect(student.get_by_text(pinned)).to_have_count(0)
    expect(board_metric(teacher, "Students joined")).to_have_text("1")  # removing an entry keeps its student on the board
    student.get_by_role("button", name="Change nickname or leave").click()
    student.get_by_role("button", name=re.compile("Leave the board")).click()
    expect(board_metric(teacher, "Students joined")).to_have_text("0", timeout=BOARD_WAIT)

    # Close: the board says so, offers the CSV, and takes no new student.
    teacher.get_by_role("button", name="Close board").click()
    teacher.get_by_role("button", name="Close the board for good").click()
    expect(teacher.get_by_text("This board is closed")).to_be_visible(timeout=BOARD_WAIT)
    late = sessions.new(server=server_a)
    late.goto(f"/?board={code}")
    expect(late.get_by_test_id("stAlert").filter(has_text="This board is closed")).to_be_visible(timeout=TRAIN_WAIT)
    wait_idle(late)
