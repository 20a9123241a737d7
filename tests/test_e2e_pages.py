"""End-to-end tests of the other pages and of the run store, in Debian's headless Chromium against real servers.

- After training on the Train page, each page reached through the sidebar shows what it should for that model
  (inspector: 10 weight images, a confusion matrix whose diagonal is the Train page's test accuracy; softmax
  explorer: rows summing to 1, the naive formula's nan/inf; data explorer: 6,000 training images a class),
  and the Train page still has the run when the user comes back.
- The session id in the URL (`?sid=`) brings a session's runs back in a new browser session, and only then.
- A tab closed mid-training leaves a stopped run with its finished epochs, which Continue trains on; another
  session training at the same time keeps its own run and model.
- Two server processes on one SQLite file: a run saved by one is read back by the other (and the other way).

Real Fashion-MNIST (SOFTMAX_DATA_DIR), the lesson's defaults. Every browser session is watched for Streamlit
exception boxes from its first load (the helpers and the watcher come from test_e2e.py). Screenshots of every
page after training, at 1280×720 and 1280×2400: /tmp/e2e_pages_*.png.
"""

from __future__ import annotations

import math
import re
import time
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect

from softmax_core import DATASETS
from tests.browser_fixtures import VIEWPORT
from tests.conftest import is_lesson_epoch_1
from tests.test_e2e import (
    LOAD_WAIT,
    WAIT,
    WATCH_EXCEPTIONS,
    button,
    curve_epochs,
    epoch_lines,
    log,
    metric,
    open_app,
    status,
    wait_idle,
)

CLASS_NAMES = list(DATASETS["fashion-mnist"].class_names)
FLOAT32_EXP_LIMIT = math.log(3.4028234663852886e38)  # ≈ 88.72: exp of a larger float32 is inf
SHOTS = Path("/tmp")
TALL = {"width": 1280, "height": 2400}
TRAIN_WAIT = 60_000  # ms: a few epochs on a busy 2-core machine
LONG_RUN = 100  # epochs (the most the slider allows) for a run that must still be training when its tab closes

# The traces of the Plotly chart inside `.st-key-<key>` as Plotly drew them (_fullData: base64 arrays decoded),
# plus its subplot titles; null until the chart is drawn.
PLOTLY_CHART = """key => {
  const el = document.querySelector(`.st-key-${key} .js-plotly-plot`);
  if (!el || !el._fullData || !el._fullData.length) return null;
  const plain = v => (v == null ? null : (Array.isArray(v) || ArrayBuffer.isView(v)) ? Array.from(v, plain) : v);
  return {
    traces: el._fullData.map(t => ({type: t.type, name: t.name, x: plain(t.x), y: plain(t.y), z: plain(t.z)})),
    titles: ((el.layout || {}).annotations || []).map(a => a.text),
  };
}"""

# A Glide data grid's accessible table (rendered inside its canvas once the grid has the focus): header, rows.
GRID_TABLE = """canvas => {
  const table = canvas.querySelector('table');
  if (!table) return null;
  const head = [...table.querySelectorAll('thead th')].map(th => th.textContent.trim());
  const rows = [...table.querySelectorAll('tbody tr')].map(tr => [...tr.querySelectorAll('td')].map(td => td.textContent.trim()));
  return {head, rows};
}"""


# ----------------------------------------------------------------------------------------------- helpers


class Sessions:
    """Browser contexts, each a new Streamlit session, watched for exception boxes; closed after the test."""

    def __init__(self, browser, server) -> None:
        self.browser, self.server = browser, server
        self.open_pages: list[Page] = []
        self.servers: dict[int, object] = {}  # id(page) -> its server, for the log in a failure

    def new(self, server=None, viewport: dict | None = None) -> Page:
        """A new browser context on `server` (default: the session's server), its page not yet navigated."""
        context = self.browser.new_context(base_url=str(server or self.server), viewport=viewport or VIEWPORT, accept_downloads=True)
        context.set_default_timeout(WAIT)
        page = context.new_page()
        page.add_init_script(WATCH_EXCEPTIONS)
        self.open_pages.append(page)
        self.servers[id(page)] = server or self.server
        return page

    def check(self, page: Page) -> None:
        """Fail when the page ever showed a Streamlit exception box."""
        if page.is_closed():
            return
        boxes = page.evaluate("() => window.__stExceptions || []")
        now = page.get_by_test_id("stException").all_inner_texts()
        assert not boxes and not now, f"{page.url} showed a Streamlit exception: {boxes or now}\nThe server's log:\n{self.servers[id(page)].log(6000)}"

    def close(self, page: Page) -> None:
        """Check the page, then close its tab and context (the Streamlit session loses its browser)."""
        self.check(page)
        self.open_pages.remove(page)
        context = page.context
        page.close()
        context.close()

    def close_all(self) -> None:
        try:
            for page in list(self.open_pages):
                self.check(page)
        finally:
            for page in self.open_pages:
                page.context.close()
            self.open_pages.clear()


@pytest.fixture
def sessions(browser, dashboard_server, start_dashboards):  # noqa: ARG001 -- servers a test starts stop after its pages are checked, so a failure has their logs
    """A factory of browser sessions (`sessions.new()`), each watched for exception boxes until the test ends."""
    dashboard_server.check_alive()
    made = Sessions(browser, dashboard_server)
    try:
        yield made
    finally:
        made.close_all()
        dashboard_server.check_alive()


def sid_of(page: Page) -> str:
    """The session id in the page's URL."""
    match = re.search(r"[?&]sid=([A-Za-z0-9_-]+)(?:&|$)", page.url)
    assert match, f"no sid in the URL {page.url}"
    return match.group(1)


def go_to(page: Page, title: str) -> None:
    """Switch page through the sidebar navigation (same browser session) and wait until the page is drawn."""
    page.get_by_test_id("stSidebarNav").get_by_role("link", name=title, exact=True).click()
    if title == "Train":
        expect(log(page)).to_be_visible(timeout=LOAD_WAIT)
    else:
        expect(page.get_by_test_id("stMain").get_by_role("heading", name=title, exact=True)).to_be_visible(timeout=LOAD_WAIT)
    wait_idle(page)


def chart(page: Page, key: str) -> dict:
    """Traces and subplot titles of the Plotly chart with this key, once drawn."""
    page.wait_for_function(PLOTLY_CHART, arg=key, timeout=WAIT)
    return page.evaluate(PLOTLY_CHART, key)


def grid(frame) -> tuple[list[str], list[list[str]]]:
    """Header and rows of an st.dataframe (its visible columns), read from the grid's accessible table."""
    canvas = frame.get_by_test_id("data-grid-canvas")
    canvas.focus()
    expect(canvas.locator("table")).to_have_count(1)
    table = canvas.evaluate(GRID_TABLE)
    return table["head"], table["rows"]


def records(frame) -> list[dict[str, str]]:
    head, rows = grid(frame)
    return [dict(zip(head, row)) for row in rows]


def table_after(page: Page, title: re.Pattern) -> object:
    """The st.dataframe right after the markdown line matching `title`."""
    text = page.get_by_test_id("stMain").get_by_test_id("stMarkdown").filter(has_text=title)
    return text.locator("xpath=ancestor::div[@data-testid='stElementContainer'][1]/following-sibling::div[1]").get_by_test_id("stDataFrame")


def history(page: Page) -> list[dict[str, str]]:
    """The rows of the Train page's run history table ([] when it says there are no runs yet)."""
    main = page.get_by_test_id("stMain")
    expect(main.get_by_role("heading", name="Run history")).to_be_visible()
    if main.get_by_test_id("stCaptionContainer").filter(has_text="Each Train starts a run").count():
        # Before the first run the table is drawn with its columns and no row (its code loads with the page);
        # the grid then shows one blank placeholder row.
        shown = [r for r in records(main.get_by_test_id("stDataFrame")) if any(r.values())]
        assert shown == [], f"the history says there are no runs yet but its table shows {shown}"
        return []
    return records(main.get_by_test_id("stDataFrame"))


def expect_history(page: Page, columns: tuple[str, ...], expected: list[tuple[str, ...]], timeout: float = WAIT / 1000) -> None:
    """Wait until the run history table's rows, cut to these columns, are `expected`."""
    started = time.monotonic()
    deadline = started + timeout
    while True:
        rows = [tuple(r[c] for c in columns) for r in history(page)]
        if rows == expected:
            if time.monotonic() - started > 0.2:
                print(f"the run history showed {expected} {time.monotonic() - started:.1f} s after the page said so")
            return
        if time.monotonic() > deadline:
            page.screenshot(path=str(SHOTS / "e2e_pages_failed_history.png"))
            pytest.fail(f"the run history shows {rows}, not {expected} ({columns}); status: {status(page).all_inner_texts()}; "
                        f"Stop {'off' if button(page, 'Stop').is_disabled() else 'on'}; screenshot /tmp/e2e_pages_failed_history.png")
        page.wait_for_timeout(250)


def train(page: Page, epochs: int) -> None:
    """Press Train and wait until the run has finished `epochs` epochs."""
    button(page, "Train").click()
    finished(page, epochs)


def finished(page: Page, epochs: int) -> None:
    """Wait until the run has finished `epochs` epochs and the whole page is drawn again.

    The live area says "Finished" first; the rest of the page (buttons, run history) follows with the next
    full run, which also turns Stop off."""
    expect(status(page).filter(has_text=f"Finished {epochs} epoch{'s' if epochs != 1 else ''}")).to_be_visible(timeout=TRAIN_WAIT)
    expect(button(page, "Stop")).to_be_disabled(timeout=WAIT)
    wait_idle(page)


def reopen_once_stopped(sessions: Sessions, query: str, looks: int = 10) -> tuple[Page, str, int]:
    """Open the Train page with `query` in new sessions until the run says it was stopped by the closed tab.

    The server notices a closed tab at the end of the epoch under way and saves its run as stopped; until then
    the store still says "training" (a session opened meanwhile shows "stopped when ... closed or reloaded").
    Returns the page, its status line and how many sessions it took."""
    said = ""
    for look in range(1, looks + 1):
        page = sessions.new()
        open_app(page, query)
        said = status(page).filter(has_text="Stopped").inner_text()
        if "when the page was closed after epoch" in said:
            return page, said, look
        sessions.close(page)
        time.sleep(0.5)
    pytest.fail(f"the closed tab's run was not saved as stopped by the server; the page says {said!r}")


def epoch_numbers(lines: list[str]) -> list[int]:
    return [int(re.match(r"epoch (\d+),", line).group(1)) for line in lines]


def shots(page: Page, name: str) -> None:
    """Screenshots at 1280×720 and 1280×2400 (the main area scrolls, so a tall window shows more of the page).

    Taken before a table is read (reading one focuses it: a cell outline and its toolbar would show)."""
    page.mouse.move(VIEWPORT["width"] - 5, VIEWPORT["height"] - 5)  # no tooltip of the button clicked last
    page.wait_for_timeout(300)
    page.screenshot(path=str(SHOTS / f"e2e_pages_{name}.png"))
    page.set_viewport_size(TALL)
    page.wait_for_timeout(400)  # charts and grids follow the new window size
    page.screenshot(path=str(SHOTS / f"e2e_pages_{name}_tall.png"))
    page.set_viewport_size(VIEWPORT)
    page.wait_for_timeout(200)


def images_loaded(figures) -> bool:
    return all(f.locator("img").evaluate("img => img.complete && img.naturalWidth > 0") for f in figures.all())


# ------------------------------------------------------------------------------------------------- tests


def test_pages_after_training_and_back(sessions: Sessions) -> None:
    """Train, then every page through the sidebar shows that model's figures; back on Train the run is still there."""
    app = sessions.new()
    open_app(app)
    train(app, 5)
    lines = epoch_lines(app)
    assert epoch_numbers(lines) == [1, 2, 3, 4, 5] and is_lesson_epoch_1(lines[0]), lines
    test_acc = metric(app, "Test acc").inner_text()
    assert re.fullmatch(r"0\.\d{3}", test_acc) and lines[-1].endswith(f"test acc {test_acc}"), (test_acc, lines[-1])
    sid = sid_of(app)
    shots(app, "1_train")

    # Softmax explorer: the lesson's softmax of a random 2×5 matrix, and the naive formula on large logits.
    go_to(app, "Softmax explorer")
    assert sid_of(app) == sid, "the page switch lost the session id"
    shots(app, "2_softmax_explorer")
    bars = chart(app, "sx_bars")["traces"]
    assert [t["type"] for t in bars] == ["bar", "bar"]
    for trace in bars:
        assert len(trace["y"]) == 5 and all(0 <= p <= 1 for p in trace["y"]), trace["y"]
        assert sum(trace["y"]) == pytest.approx(1.0, abs=1e-5), trace
    head, rows = grid(table_after(app, re.compile(r"^\s*softmax\(X\) = exp\(X\)")))
    assert head[-1] == "row sum" and len(rows) == 2, (head, rows)
    for row in rows:
        assert float(row[-1]) == pytest.approx(1.0, abs=1e-5) and sum(map(float, row[1:-1])) == pytest.approx(1.0, abs=1e-5), row
    expect(app.get_by_test_id("stMain").get_by_test_id("stCaptionContainer").filter(has_text="Row sums of softmax: 1.000000, 1.000000")).to_have_count(1)
    head, big = grid(table_after(app, re.compile(r"^\s*\d+ · X \(float32 logits\)")))
    head_naive, naive = grid(table_after(app, re.compile(r"^\s*Naive: exp\(X\)")))
    head_stable, stable = grid(table_after(app, re.compile(r"^\s*Stable: exp\(X − max\)")))
    assert head_naive[-1] == "Σ exp" and head_stable[-1] == "row sum" and len(big) == len(naive) == len(stable) == 2
    overflowing = [max(map(float, row[1:6])) > FLOAT32_EXP_LIMIT for row in big]
    assert any(overflowing), f"the default scale gives no logit above {FLOAT32_EXP_LIMIT:.1f}: {big}"
    for over, row_naive, row_stable in zip(overflowing, naive, stable):
        if over:  # exp overflows: Σ exp is inf, and inf / inf is nan
            assert row_naive[-1] == "inf" and "nan" in row_naive[1:-1], row_naive
        else:
            assert "inf" not in row_naive and "nan" not in row_naive, row_naive
        assert not {"nan", "inf", "-inf"} & set(row_stable) and row_stable[-1] == "1.0000", row_stable
    expect(status(app).filter(has_text="inf / inf = nan")).to_have_count(1)

    # Model inspector: the trained model's weights, and a confusion matrix that agrees with the Train page.
    go_to(app, "Model inspector")
    shots(app, "3_model_inspector")
    expect(app.get_by_role("heading", name=re.compile(r"Model of run 1 after 5 epochs · test accuracy"))).to_have_text(
        re.compile(rf"test accuracy {re.escape(test_acc)}\b"))
    weights = chart(app, "mi_weights")
    assert [t["type"] for t in weights["traces"]] == ["heatmap"] * 10
    assert [t["name"] for t in weights["traces"]] == CLASS_NAMES and weights["titles"] == CLASS_NAMES
    for trace in weights["traces"]:
        z = trace["z"]
        assert len(z) == 28 and all(len(row) == 28 for row in z), trace["name"]
        values = [v for row in z for v in row]
        assert all(math.isfinite(v) for v in values) and max(values) - min(values) > 1e-3, trace["name"]
    confusion = chart(app, "mi_confusion")["traces"]
    assert len(confusion) == 1 and confusion[0]["type"] == "heatmap"
    z = confusion[0]["z"]
    assert len(z) == 10 and all(len(row) == 10 for row in z), z
    assert confusion[0]["x"] == CLASS_NAMES and confusion[0]["y"] == CLASS_NAMES
    total, diagonal = sum(map(sum, z)), sum(z[k][k] for k in range(10))
    assert total == 10000 and [sum(row) for row in z] == [1000] * 10, z  # Fashion-MNIST: 1,000 test images a class
    assert f"{diagonal / total:.3f}" == test_acc, f"confusion diagonal {diagonal} / {total} vs the Train page's test acc {test_acc}"
    expect(metric(app, "Diagonal (of 10,000)")).to_have_text(f"{diagonal:,}")
    expect(metric(app, "Test accuracy")).to_have_text(f"{diagonal / total:.4f}")
    per_class = chart(app, "mi_per_class")["traces"][0]
    assert per_class["y"] == CLASS_NAMES
    assert per_class["x"] == pytest.approx([z[k][k] / 1000 for k in range(10)], abs=1e-9)
    mistakes = app.get_by_test_id("stMain").locator("figure")
    expect(mistakes).to_have_count(9)
    assert all("✗" in text for text in mistakes.locator("figcaption").all_inner_texts())
    assert images_loaded(mistakes)

    # Data explorer: the class counts and the class means of the real data.
    go_to(app, "Data explorer")
    shots(app, "4_data_explorer")
    counts = {t["name"]: t for t in chart(app, "dx_counts")["traces"]}
    assert set(counts) == {"train", "test"}
    assert counts["train"]["x"] == CLASS_NAMES and counts["train"]["y"] == [6000] * 10, counts["train"]
    assert counts["test"]["x"] == CLASS_NAMES and counts["test"]["y"] == [1000] * 10, counts["test"]
    means = app.get_by_test_id("stMain").locator("figure")
    expect(means).to_have_count(10)
    assert means.locator("figcaption").all_inner_texts() == CLASS_NAMES
    assert images_loaded(means)
    for name in CLASS_NAMES:  # browse (all classes, 10 each) and the class's mean image
        expect(app.get_by_test_id("stMain").locator(f'img[alt="{name}"]')).to_have_count(11)

    # Back on the Train page: the same model and run, nothing retrained or reset.
    go_to(app, "Train")
    assert sid_of(app) == sid
    expect(status(app).filter(has_text="Finished 5 epochs")).to_be_visible()
    assert epoch_lines(app) == lines
    assert curve_epochs(app) == [0, 1, 2, 3, 4, 5]
    expect(metric(app, "Epoch")).to_have_text("5")
    expect(metric(app, "Test acc")).to_have_text(test_acc)
    runs = history(app)
    assert len(runs) == 1, runs
    assert (runs[0]["run"], runs[0]["epochs"], runs[0]["status"], runs[0]["lr"]) == ("1", "5", "finished", "0.1"), runs


def test_sid_in_the_url_brings_runs_back(sessions: Sessions) -> None:
    """A reload (the tab closed, its link opened again) shows the runs; without the id (or with another), none."""
    first = sessions.new()
    open_app(first, "?epochs=2")
    train(first, 2)
    lines, test_acc, sid = epoch_lines(first), metric(first, "Test acc").inner_text(), sid_of(first)
    assert epoch_numbers(lines) == [1, 2] and is_lesson_epoch_1(lines[0])
    assert re.fullmatch(r"[A-Za-z0-9_-]{22}", sid), sid
    sessions.close(first)  # a reload: the old Streamlit session goes with its tab

    again = sessions.new()
    open_app(again, f"?sid={sid}")
    assert sid_of(again) == sid
    assert epoch_lines(again) == lines
    assert curve_epochs(again) == [0, 1, 2]
    expect(metric(again, "Test acc")).to_have_text(test_acc)
    expect(status(again).filter(has_text="Finished 2 epochs")).to_be_visible()
    shots(again, "5_reloaded")
    runs = history(again)
    assert [(r["run"], r["epochs"], r["status"]) for r in runs] == [("1", "2", "finished")], runs

    for query in ("", "?sid=" + "A" * 22, "?sid=abc"):
        other = sessions.new()
        open_app(other, query)
        assert sid_of(other) != sid
        assert history(other) == [], f"{query or '/'} shows runs"
        assert epoch_lines(other) == [] and curve_epochs(other) == [0]
        expect(status(other).filter(has_text="Untrained model")).to_be_visible()
        if query == "?sid=abc":  # not an id: replaced by a fresh one, and the page says the link's id is damaged
            assert re.fullmatch(r"[A-Za-z0-9_-]{22}", sid_of(other)), other.url
            expect(other.get_by_test_id("stAlert").filter(has_text="session id abc is damaged")).to_be_visible()
        sessions.close(other)


def test_a_pasted_link_never_writes_into_the_open_session(sessions: Sessions) -> None:
    """A second tab opened with the first one's link gets its own id and a copy of the runs; what either does stays its own."""
    teacher = sessions.new()
    open_app(teacher, "?epochs=2")
    train(teacher, 2)
    sid, lines = sid_of(teacher), epoch_lines(teacher)

    student = sessions.new()  # the teacher pasted the whole address, id included
    open_app(student, f"?sid={sid}&epochs=2&lr=0.2")
    assert sid_of(student) != sid
    expect(student.get_by_test_id("stAlert").filter(has_text="belongs to a session that is open in another tab")).to_be_visible()
    assert epoch_lines(student) == lines  # the runs came along, as copies
    expect_history(student, ("run", "epochs", "status"), [("1", "2", "finished")])
    train(student, 2)  # a new run of the student's own
    expect_history(student, ("run", "epochs", "status", "lr"), [("1", "2", "finished", "0.1"), ("2", "2", "finished", "0.2")])
    student.get_by_role("button", name="Forget these runs").click()
    expect(student.get_by_test_id("stMain").get_by_text("Each Train starts a run")).to_be_visible()

    # The teacher's session, on screen and in the store (a reload of the teacher's link), is as it was.
    expect_history(teacher, ("run", "epochs", "status", "lr"), [("1", "2", "finished", "0.1")])
    sessions.close(teacher)
    back = sessions.new()
    open_app(back, f"?sid={sid}")
    assert sid_of(back) == sid and epoch_lines(back) == lines
    expect_history(back, ("run", "epochs", "status", "lr"), [("1", "2", "finished", "0.1")])

    back.get_by_test_id("stSidebar").get_by_text("Link for students").click()  # the settings for a class, never an id
    shared = back.get_by_test_id("stSidebar").get_by_test_id("stCode").inner_text()
    assert "sid=" not in shared and shared.startswith("http"), shared


def test_closed_tab_mid_training_and_a_second_session(sessions: Sessions) -> None:
    """A tab closed while training leaves a stopped run with its finished epochs; Continue trains on from there.

    A second session trains at the same time with other settings and keeps its own run and model.
    """
    tab, other = sessions.new(), sessions.new()
    open_app(tab, f"?epochs={LONG_RUN}")
    open_app(other, "?epochs=2&lr=0.2")
    sid = sid_of(tab)
    button(tab, "Train").click()
    button(other, "Train").click()  # before the close below: both sessions train at the same time

    expect(log(tab)).to_contain_text("epoch 1,", timeout=TRAIN_WAIT)
    shown = epoch_lines(tab)  # the page may be a few epochs behind the server
    assert 1 <= len(shown) < LONG_RUN and status(tab).filter(has_text=re.compile(r"Finished \d+ epoch")).count() == 0, shown
    sessions.close(tab)  # mid-training

    finished(other, 2)
    other_lines, other_sid = epoch_lines(other), sid_of(other)
    assert other_sid != sid and epoch_numbers(other_lines) == [1, 2] and not is_lesson_epoch_1(other_lines[0]), other_lines

    back, said, looks = reopen_once_stopped(sessions, f"?sid={sid}&epochs=2")
    lines = epoch_lines(back)
    k = len(lines)
    print(f"closed tab: its page showed {len(shown)} epochs, the store kept {k} (seen on look {looks})")
    assert len(shown) <= k < LONG_RUN, f"the tab showed {len(shown)} epochs when closed, the store gave back {k}"
    assert lines[: len(shown)] == shown and is_lesson_epoch_1(lines[0])
    assert epoch_numbers(lines) == list(range(1, k + 1)), lines
    assert curve_epochs(back) == list(range(k + 1))
    expect(metric(back, "Epoch")).to_have_text(str(k))
    assert f"after epoch {k}." in said, said
    shots(back, "6_closed_tab_restored")
    runs = history(back)
    assert [(r["run"], r["epochs"], r["status"], r["lr"]) for r in runs] == [("1", str(k), "stopped", "0.1")], runs

    button(back, "Continue").click()  # 2 more epochs of the restored model
    finished(back, k + 2)
    continued = epoch_lines(back)
    assert continued[:k] == lines and epoch_numbers(continued) == list(range(1, k + 3)), continued
    assert curve_epochs(back) == list(range(k + 3))
    expect_history(back, ("run", "epochs", "status"), [("1", str(k + 2), "finished")])

    # The other session: its own run, curves and model, untouched by the closed tab and its restore.
    assert epoch_lines(other) == other_lines and curve_epochs(other) == [0, 1, 2]
    expect_history(other, ("run", "epochs", "status", "lr"), [("1", "2", "finished", "0.2")])
    go_to(other, "Model inspector")
    expect(other.get_by_role("heading", name=re.compile(r"Model of run 1 after 2 epochs"))).to_be_visible()
    expect(other.get_by_test_id("stMain").get_by_text(re.compile(r"learning rate 0\.2 · batch 256"))).to_be_visible()
    go_to(back, "Model inspector")
    expect(back.get_by_role("heading", name=re.compile(rf"Model of run 1 after {k + 2} epochs"))).to_be_visible()
    expect(back.get_by_test_id("stMain").get_by_text(re.compile(r"learning rate 0\.1 · batch 256"))).to_be_visible()
    assert chart(other, "mi_weights")["traces"][0]["z"] != chart(back, "mi_weights")["traces"][0]["z"]


def test_two_servers_share_one_sqlite_store(sessions: Sessions, start_dashboards, tmp_path: Path) -> None:
    """Two server processes on one SQLite file: a run saved by one is read back by the other, and the other way."""
    server_a, server_b = start_dashboards(2, tmp_path / "runs.sqlite3")
    assert server_a.url != server_b.url

    on_a = sessions.new(server_a)
    open_app(on_a, "?epochs=1")
    train(on_a, 1)
    assert [is_lesson_epoch_1(line) for line in epoch_lines(on_a)] == [True]
    sid = sid_of(on_a)

    on_b = sessions.new(server_b)
    open_app(on_b, f"?sid={sid}")
    assert sid_of(on_b) == sid
    assert [is_lesson_epoch_1(line) for line in epoch_lines(on_b)] == [True]
    runs = history(on_b)
    assert [(r["run"], r["epochs"], r["status"], r["lr"]) for r in runs] == [("1", "1", "finished", "0.1")], runs

    button(on_b, "Step").click()  # B trains the restored model one epoch more and saves it
    finished(on_b, 2)
    lines = epoch_lines(on_b)
    assert epoch_numbers(lines) == [1, 2] and is_lesson_epoch_1(lines[0])

    again_a = sessions.new(server_a)
    open_app(again_a, f"?sid={sid}")
    assert epoch_lines(again_a) == lines
    runs = history(again_a)
    assert [(r["run"], r["epochs"], r["status"]) for r in runs] == [("1", "2", "finished")], runs
    for server in (server_a, server_b):
        server.check_alive()
