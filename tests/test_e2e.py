"""End-to-end tests: the Train page in Debian's headless Chromium, against a real `streamlit run dashboard.py`.

Real Fashion-MNIST (SOFTMAX_DATA_DIR) with the lesson's defaults (lr 0.1, batch 256, seed 0, σ 0.01). Every
test opens its own browser context, so its own Streamlit session, and fails if a Streamlit exception box
(`stException`) appeared at any moment (a MutationObserver records them). Screenshots: /tmp/e2e_*.png.
"""

from __future__ import annotations

import csv
import io
import re
import time
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect

from softmax_core import DATASETS
from tests.conftest import is_lesson_epoch_1

CLASS_NAMES = DATASETS["fashion-mnist"].class_names
WAIT = 20_000  # ms: a bounded wait for anything the page has to redraw
LOAD_WAIT = 60_000  # ms: the first page load also loads the data set into the server's cache
SHOTS = Path("/tmp")

# Records every Streamlit exception box that is ever added to the page, even one replaced a moment later.
WATCH_EXCEPTIONS = """
window.__stExceptions = [];
new MutationObserver(() => {
  for (const el of document.querySelectorAll('[data-testid="stException"]')) {
    if (!el.__seen) { el.__seen = true; window.__stExceptions.push(el.innerText.slice(0, 2000)); }
  }
}).observe(document, {childList: true, subtree: true});
"""

# The x values of the curves chart's "train loss" trace (its epochs), or null while the chart is not drawn.
TRAIN_LOSS_EPOCHS = """() => {
  for (const el of document.querySelectorAll('.st-key-curves .js-plotly-plot, .js-plotly-plot')) {
    const trace = (el.data || []).find(t => t.name === 'train loss');
    if (trace) return Array.from(trace.x);
  }
  return null;
}"""


# ----------------------------------------------------------------------------------------------- helpers


@pytest.fixture
def app(page: Page, dashboard_server):
    """The page, watched for Streamlit exception boxes from its first load to the end of the test."""
    page.add_init_script(WATCH_EXCEPTIONS)
    yield page
    boxes = page.evaluate("() => window.__stExceptions || []")
    now = page.get_by_test_id("stException").all_inner_texts()
    # The page only names the exception type (client.showErrorDetails); the traceback is in the server's log.
    assert not boxes and not now, f"the page showed a Streamlit exception: {boxes or now}\nThe server's log:\n{dashboard_server.log(6000)}"


def open_app(page: Page, query: str = "") -> None:
    """Open the Train page (with URL parameters) and wait until its first run is drawn and finished."""
    page.goto("/" + query)  # the context's base URL is the server's
    expect(log(page)).to_contain_text("untrained test acc", timeout=LOAD_WAIT)
    # The chart comes with the page's second run, and Plotly's code loads after it: wait for both.
    page.wait_for_function(f"() => ({TRAIN_LOSS_EPOCHS})() !== null", timeout=LOAD_WAIT)
    wait_idle(page)


def wait_idle(page: Page, timeout: float = WAIT) -> None:
    """Wait until no script run is in progress."""
    expect(page.get_by_test_id("stApp")).to_have_attribute("data-test-script-state", "notRunning", timeout=timeout)


def log(page: Page):
    """The code block with the lesson's log lines."""
    return page.get_by_test_id("stCode").filter(has_text="untrained test acc")


def log_lines(page: Page) -> list[str]:
    return [line.strip() for line in log(page).inner_text().splitlines() if line.strip()]


def epoch_lines(page: Page) -> list[str]:
    return [line for line in log_lines(page) if line.startswith("epoch ")]


def metric(page: Page, label: str):
    """The value element of the metric with exactly this label."""
    box = page.get_by_test_id("stMetric").filter(has=page.get_by_test_id("stMetricLabel").get_by_text(label, exact=True))
    return box.get_by_test_id("stMetricValue")


def button(page: Page, name: str):
    """A main-area button by its label (Streamlit also renders a hidden copy for measuring; this is the visible one)."""
    return page.get_by_test_id("stMain").get_by_role("button", name=name, exact=True)


def curve_epochs(page: Page) -> list[int] | None:
    return page.evaluate(TRAIN_LOSS_EPOCHS)


def set_slider(page: Page, label: str, keys: list[str]) -> None:
    """Move a sidebar slider with the keyboard: focus its thumb (an <input type=range>, role slider) and press keys."""
    slider_thumb(page, label).focus()
    for key in keys:
        page.keyboard.press(key)


def slider_value(page: Page, label: str) -> str:
    """What a slider shows (select sliders: the option's text)."""
    return slider_thumb(page, label).get_attribute("aria-valuetext")


def slider_thumb(page: Page, label: str):
    """The thumb of the sidebar slider with this label: an <input type=range> (role slider) labelled by the widget."""
    return page.get_by_test_id("stSidebar").locator(f'input[type="range"][aria-label="{label}"]')


def status(page: Page):
    """The alert boxes of the main area (status line, warnings)."""
    return page.get_by_test_id("stMain").get_by_test_id("stAlert")


def shot(page: Page, name: str) -> None:
    page.screenshot(path=str(SHOTS / f"e2e_{name}.png"))


def wait_for_epochs(page: Page, n: int, timeout: float = 60.0) -> list[list[int]]:
    """Poll the chart until its train-loss trace has epochs 0..n; return every distinct state seen on the way."""
    seen: list[list[int]] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        x = curve_epochs(page)
        if x is not None and (not seen or seen[-1] != x):
            seen.append(x)
        if x == list(range(n + 1)):
            return seen
        page.wait_for_timeout(40)
    pytest.fail(f"the chart did not reach epoch {n} within {timeout:.0f} s; states seen: {seen}")


def grid_captions(page: Page) -> list[str]:
    return page.get_by_test_id("stMain").locator("figure figcaption").all_inner_texts()


def parse_caption(text: str) -> tuple[str, str, str]:
    """'#1: Ankle boot\\n✗ T-shirt/top' -> ('Ankle boot', '✗', 'T-shirt/top')."""
    match = re.fullmatch(r"\s*#\d+:\s*(.+?)\s*\n\s*([✓✗])\s*(.+?)\s*", text)
    assert match, f"caption not '#N: true / ✓|✗ predicted': {text!r}"
    return match.group(1), match.group(2), match.group(3)


# ------------------------------------------------------------------------------------------------- tests


def test_page_loads_at_epoch_zero(app: Page, fashion) -> None:
    """The untrained model on the real data: epoch 0, test accuracy about 0.1, the log's first line, 9 images."""
    open_app(app)
    expect(app.get_by_role("heading", name="Softmax regression from scratch")).to_be_visible()
    # The real data set, from SOFTMAX_DATA_DIR.
    expect(app.get_by_test_id("stMain").get_by_test_id("stCaptionContainer").first).to_contain_text(
        "from the folder set by SOFTMAX_DATA_DIR")  # the kind of place, never the server's path
    expect(metric(app, "Epoch")).to_have_text("0")
    test_acc = float(metric(app, "Test acc").inner_text())
    assert 0.05 <= test_acc <= 0.15, f"untrained test accuracy {test_acc} is not about 0.1"
    assert log_lines(app) == [f"untrained test acc {test_acc:.3f}"]
    assert re.fullmatch(r"untrained test acc 0\.0\d\d|untrained test acc 0\.1[0-5]\d", log_lines(app)[0])
    expect(status(app).filter(has_text="Untrained model")).to_be_visible()
    assert curve_epochs(app) == [0]
    # Buttons: Stop is off until training runs.
    expect(button(app, "Train")).to_be_enabled()
    expect(button(app, "Stop")).to_be_disabled()
    # The lesson's labelled test images: the first 9 test images, titled true / predicted.
    figures = app.get_by_test_id("stMain").locator("figure")
    expect(figures).to_have_count(9)
    for k in range(9):
        figure = figures.nth(k)
        expect(figure.locator("img")).to_have_count(1)
        assert figure.locator("img").evaluate("img => img.complete && img.naturalWidth") > 0, f"image {k + 1} did not load"
    captions = [parse_caption(text) for text in grid_captions(app)]
    assert [true for true, _, _ in captions] == [CLASS_NAMES[i] for i in fashion.test_labels[:9]]
    for true, mark, pred in captions:
        assert pred in CLASS_NAMES, pred
        assert mark == ("✓" if pred == true else "✗"), (true, mark, pred)
    # Not the presenter view: the advanced settings are there.
    expect(app.get_by_test_id("stSidebar").get_by_test_id("stExpander").filter(has_text="Advanced")).to_be_visible()
    shot(app, "01_epoch0")
    figures.first.scroll_into_view_if_needed()
    shot(app, "01b_image_grid")


def test_sliders_update_the_url(app: Page) -> None:
    """Moving the sliders with the keyboard changes the settings in the URL."""
    open_app(app)
    assert "epochs=" not in app.url and "lr=" not in app.url  # defaults are left out
    set_slider(app, "Epochs", ["Home", "ArrowRight", "ArrowRight"])
    expect(app).to_have_url(re.compile(r"[?&]epochs=3(&|$)"), timeout=WAIT)
    assert slider_value(app, "Epochs") == "3"
    set_slider(app, "Learning rate", ["ArrowRight"])  # 0.1 -> 0.2
    expect(app).to_have_url(re.compile(r"[?&]lr=0\.2(&|$)"), timeout=WAIT)
    set_slider(app, "Batch size", ["ArrowLeft"])  # 256 -> 128
    expect(app).to_have_url(re.compile(r"[?&]batch=128(&|$)"), timeout=WAIT)
    assert slider_value(app, "Learning rate") == "0.2" and slider_value(app, "Batch size") == "128"
    assert re.search(r"[?&]epochs=3(&|$)", app.url), app.url
    wait_idle(app)
    shot(app, "02_sliders")
    # The URL opens that setup in a new session.
    url = app.url
    app.goto("about:blank")
    app.goto(url)
    expect(log(app)).to_contain_text("untrained test acc", timeout=LOAD_WAIT)
    assert (slider_value(app, "Learning rate"), slider_value(app, "Epochs"), slider_value(app, "Batch size")) == ("0.2", "3", "128")


def test_train_draws_one_point_per_epoch(app: Page) -> None:
    """Train: the chart gains one point per epoch, the log shows the lesson's figures, the CSV has every epoch.

    The browser's own timer reruns the live area only every 15 s (PUSHED_POLL): the points between come from
    the server's pushes when an epoch ends (ui/push.py).
    """
    epochs = 6  # 5 intermediate states: a loaded machine may draw two epochs at once now and then
    open_app(app)
    set_slider(app, "Epochs", ["Home"] + ["ArrowRight"] * (epochs - 1))
    expect(app).to_have_url(re.compile(rf"[?&]epochs={epochs}(&|$)"), timeout=WAIT)
    wait_idle(app)
    button(app, "Train").click()
    seen = wait_for_epochs(app, epochs)
    lengths = [len(x) for x in seen]
    assert all(x == list(range(len(x))) for x in seen), f"epochs not 0..k: {seen}"
    assert lengths == sorted(set(lengths)), f"the chart's points did not only grow: {lengths}"
    assert lengths[-1] == epochs + 1
    intermediate = [n for n in lengths if 1 < n < epochs + 1]
    assert len(intermediate) >= 2, f"the chart jumped instead of growing epoch by epoch: lengths seen {lengths}"
    expect(status(app).filter(has_text=f"Finished {epochs} epochs")).to_be_visible(timeout=WAIT)
    wait_idle(app)
    lines = epoch_lines(app)
    assert [int(re.match(r"epoch (\d+),", line).group(1)) for line in lines] == list(range(1, epochs + 1)), lines
    assert is_lesson_epoch_1(lines[0])  # the lesson's figures for seed 0
    for line in lines:
        assert re.fullmatch(r"epoch \d+, loss \d\.\d{4}, train acc 0\.\d{3}, test acc 0\.\d{3}", line), line
    expect(metric(app, "Epoch")).to_have_text(str(epochs))
    final_acc = float(re.search(r"test acc (0\.\d+)$", lines[-1]).group(1))
    expect(metric(app, "Test acc")).to_have_text(f"{final_acc:.3f}")
    assert 0.79 <= final_acc <= 0.85
    expect(button(app, "Stop")).to_be_disabled()
    expect(app.get_by_test_id("stMain").locator("figure")).to_have_count(9)
    shot(app, "03_trained")
    app.get_by_test_id("stMain").locator("figure").first.scroll_into_view_if_needed()
    shot(app, "03b_trained_grid")

    # The history as CSV: a header and one row per epoch, epoch 0 included.
    with app.expect_download(timeout=WAIT) as info:
        button(app, "History as CSV").click()
    download = info.value
    assert download.suggested_filename.endswith(".csv")
    text = Path(download.path()).read_text()
    rows = list(csv.DictReader(io.StringIO(text)))
    assert text.startswith("epoch,train_loss,"), text[:200]
    assert {"epoch", "train_loss", "train_acc", "test_loss", "test_acc"} <= set(rows[0]), rows[0].keys()
    assert [int(r["epoch"]) for r in rows] == list(range(epochs + 1))
    assert float(rows[1]["train_loss"]) == pytest.approx(0.78848, abs=2e-5)
    assert f"{float(rows[-1]['test_acc']):.3f}" == f"{final_acc:.3f}"


def test_stop_continue_step_reset(app: Page) -> None:
    """Stop keeps the finished epochs; Continue and Step train the same model further; Reset goes back to epoch 0."""
    # As many epochs as the slider allows: an epoch of one user takes ~0.15 s, and under a full CI machine
    # Playwright's click (it waits for the button to be stable across frames of a busy page) took 3-4 s to land.
    asked = 100
    open_app(app, f"?epochs={asked}")
    untrained = log_lines(app)[0]
    button(app, "Train").click()
    expect(log(app)).to_contain_text("epoch 1,", timeout=WAIT)
    expect(button(app, "Stop")).to_be_enabled()
    before = len(curve_epochs(app) or [0]) - 1
    clicked = time.monotonic()
    button(app, "Stop").click()
    expect(status(app).filter(has_text="Stopped")).to_be_visible(timeout=WAIT)
    expect(button(app, "Stop")).to_be_disabled(timeout=WAIT)
    took = time.monotonic() - clicked
    wait_idle(app)
    stopped = epoch_lines(app)
    done = len(stopped)
    assert 1 <= done < asked, stopped
    print(f"Stop clicked at epoch {before}; stopped after epoch {done}, {took:.2f} s after the click")
    # How fast Stop acts is a figure for the benchmarks (a shared machine's load moves it), not an assertion here.
    app.wait_for_timeout(1500)  # nothing trains on after Stop
    assert epoch_lines(app) == stopped
    assert curve_epochs(app) == list(range(done + 1))
    assert [int(re.match(r"epoch (\d+),", line).group(1)) for line in stopped] == list(range(1, done + 1))
    assert is_lesson_epoch_1(stopped[0])
    said = status(app).filter(has_text="Stopped").inner_text()
    kept = f"after epoch {done}." if f"after epoch {done}." in said else "epoch 1 is kept" if done == 1 else f"epochs 1-{done} are kept"
    assert kept in said, f"the status says {said!r} but the log has {done} epochs: {stopped}"  # stopped between or within epochs
    assert f"{asked - done} of {asked} epochs left from the interrupted run" in said, said
    assert "during" not in said or f"during epoch {done + 1}," in said, said
    expect(metric(app, "Epoch")).to_have_text(str(done))
    shot(app, "04_stopped")

    # Continue: 2 more epochs of the same model (epoch numbers go on; the first lines stay).
    set_slider(app, "Epochs", ["Home", "ArrowRight"])
    expect(app).to_have_url(re.compile(r"[?&]epochs=2(&|$)"), timeout=WAIT)
    wait_idle(app)
    assert epoch_lines(app) == stopped, "moving a slider changed the stopped run"
    button(app, "Continue").click()
    expect(status(app).filter(has_text=f"Finished {done + 2} epochs")).to_be_visible(timeout=WAIT * 2)
    wait_idle(app)
    lines = epoch_lines(app)
    assert lines[:done] == stopped, "Continue reset the model"
    assert [int(re.match(r"epoch (\d+),", line).group(1)) for line in lines] == list(range(1, done + 3))
    assert curve_epochs(app) == list(range(done + 3))
    shot(app, "05_continued")

    # Step: one epoch more.
    button(app, "Step").click()
    expect(log(app)).to_contain_text(f"epoch {done + 3},", timeout=WAIT)
    expect(metric(app, "Epoch")).to_have_text(str(done + 3), timeout=WAIT)
    wait_idle(app)
    expect(button(app, "Stop")).to_be_disabled(timeout=WAIT)
    assert epoch_lines(app)[: done + 2] == lines and len(epoch_lines(app)) == done + 3
    assert curve_epochs(app) == list(range(done + 4))

    # Reset: back to the untrained model of the same seed.
    button(app, "Reset").click()
    expect(metric(app, "Epoch")).to_have_text("0", timeout=WAIT)
    wait_idle(app)
    assert log_lines(app) == [untrained]
    assert curve_epochs(app) == [0]
    expect(status(app).filter(has_text="Untrained model")).to_be_visible()
    shot(app, "06_reset")


def test_url_opens_that_setup(app: Page) -> None:
    """`/?lr=0.5&epochs=2` opens with those settings and no warnings."""
    open_app(app, "?lr=0.5&epochs=2")
    assert slider_value(app, "Learning rate") == "0.5"
    assert slider_value(app, "Epochs") == "2"
    assert slider_value(app, "Batch size") == "256"
    expect(status(app).filter(has_text="was ignored")).to_have_count(0)
    assert re.search(r"[?&]lr=0\.5(&|$)", app.url) and re.search(r"[?&]epochs=2(&|$)", app.url), app.url


def test_absurd_url_values_warn_and_keep_defaults(app: Page) -> None:
    """Out-of-range or non-numeric URL values give one warning each (no traceback) and the lesson's defaults."""
    open_app(app, "?lr=-1&batch=0&epochs=1000000000&seed=abc")
    warnings = app.get_by_test_id("stMain").get_by_test_id("stAlertContentWarning")
    for name in ("lr=-1", "batch=0", "epochs=1000000000", "seed=abc"):
        expect(warnings.filter(has_text=name)).to_have_count(1)
    assert (slider_value(app, "Learning rate"), slider_value(app, "Epochs"), slider_value(app, "Batch size")) == ("0.1", "5", "256")
    expect(app.get_by_test_id("stSidebar").get_by_role("spinbutton", name="Seed")).to_have_value("0")
    expect(metric(app, "Epoch")).to_have_text("0")
    assert "lr=-1" not in app.url and "seed=abc" not in app.url, app.url
    shot(app, "07_bad_url")


def test_presenter_view_hides_advanced(app: Page) -> None:
    """`?presenter=1`: presenter view on, no "Advanced" expander."""
    open_app(app, "?presenter=1")
    expect(app.get_by_test_id("stSidebar").get_by_role("switch", name="Presenter view")).to_be_checked()
    expect(app.get_by_test_id("stSidebar").get_by_text("Advanced", exact=False)).to_have_count(0)
    expect(app.get_by_test_id("stExpander").filter(has_text="Advanced")).to_have_count(0)
    expect(app.get_by_test_id("stSidebar").get_by_text("Pace", exact=True)).to_have_count(1)  # a presenter control
    expect(app.get_by_test_id("stMain").locator("figure")).to_have_count(9)
    shot(app, "08_presenter")


# ------------------------------------------------------------------------------- ready for the room

# Every visible text on the page, HTML and the charts' SVG alike, with its size on screen in CSS px (smallest first).
# Icons drawn from a ligature font (":material/...:") are pictures, not text; tooltips show only on hover.
TEXT_SIZES = """() => {
  const found = [];
  const shown = (el) => {
    for (let e = el; e && e !== document.documentElement; e = e.parentElement) {
      const cs = getComputedStyle(e);
      if (cs.display === 'none' || cs.visibility === 'hidden' || parseFloat(cs.opacity) === 0) return false;
    }
    const r = el.getBoundingClientRect();
    return r.width > 0 && r.height > 0 && r.right > 0 && r.left < innerWidth;
  };
  const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
  for (let node = walker.nextNode(); node; node = walker.nextNode()) {
    const text = node.textContent.trim(), el = node.parentElement;
    if (!text || !el || ['SCRIPT', 'STYLE', 'NOSCRIPT'].includes(el.tagName)) continue;
    if (el.closest('[role="tooltip"], .hoverlayer') || getComputedStyle(el).fontFamily.includes('Material Symbols')) continue;
    if (!shown(el)) continue;
    const range = document.createRange();
    range.selectNodeContents(node);
    const box = range.getBoundingClientRect();
    if (!box.width || !box.height) continue;
    let px = parseFloat(getComputedStyle(el).fontSize);
    if (el instanceof SVGElement && el.getScreenCTM()) { const m = el.getScreenCTM(); px *= Math.hypot(m.a, m.b); }
    const where = (el.closest('[data-testid]') || el).getAttribute('data-testid') || el.tagName;
    found.push({px: Math.round(px * 100) / 100, text: text.slice(0, 50), where});
  }
  return found.sort((a, b) => a.px - b.px);
}"""

PRESENTER_VIEWPORT = {"width": 1920, "height": 1080}


def chart_top(page: Page) -> float | None:
    box = page.locator(".st-key-curves, [data-testid='stPlotlyChart']").first.bounding_box()
    return None if box is None else round(box["y"], 1)


def test_presenter_view_text_is_18px_or_more_everywhere(browser, dashboard_server) -> None:
    """1920×1080, ?presenter=1, after Train and Continue: every visible text (charts too, sidebar open) is at least 18 px;
    the image grid fills the width; Pace is in the sidebar; the legend names each curve once; slider values clear their thumbs."""
    context = browser.new_context(base_url=dashboard_server.url, viewport=PRESENTER_VIEWPORT, accept_downloads=True)
    page = context.new_page()
    page.add_init_script(WATCH_EXCEPTIONS)
    try:
        open_app(page, "?presenter=1&epochs=2")
        button(page, "Train").click()
        expect(status(page).filter(has_text="Finished 2 epochs")).to_be_visible(timeout=LOAD_WAIT)
        wait_idle(page)
        button(page, "Continue").click()
        expect(status(page).filter(has_text="Finished 4 epochs")).to_be_visible(timeout=LOAD_WAIT)
        wait_idle(page)
        page.wait_for_function("() => document.querySelectorAll('.js-plotly-plot').length >= 2", timeout=WAIT)  # the probabilities too
        page.wait_for_timeout(300)  # Plotly lays its text out in the frame after the data
        shot(page, "09_presenter_1920")
        sizes = page.evaluate(TEXT_SIZES)
        assert {"stPlotlyChart", "stCode", "stHtml", "stCaptionContainer"} <= {s["where"] for s in sizes}, {s["where"] for s in sizes}
        small = [s for s in sizes if s["px"] < 18]
        assert not small, f"text under 18 px in presenter view: {small[:15]}"
        # The grid of test images spans the main column.
        widths = page.evaluate("""() => {
          const grid = document.querySelector('.presenter-grid > div'), main = document.querySelector('[data-testid="stMainBlockContainer"]');
          const pad = parseFloat(getComputedStyle(main).paddingLeft) + parseFloat(getComputedStyle(main).paddingRight);
          return [grid.getBoundingClientRect().width, main.getBoundingClientRect().width - pad];
        }""")
        assert widths[0] >= 0.97 * widths[1], f"the grid is {widths[0]:.0f} px wide in a {widths[1]:.0f} px column"
        # Every legend entry names one curve, once; the Continue is marked on the chart.
        legend = page.evaluate("() => [...document.querySelector('.st-key-curves .js-plotly-plot').querySelectorAll('.legendtext')].map(t => t.textContent)")
        assert len(legend) >= 4 and len(set(legend)) == len(legend), legend
        assert page.evaluate("""() => [...document.querySelectorAll('.js-plotly-plot')].some(el =>
          (el.layout.shapes || []).some(s => s.x0 === 2 && s.line.dash === 'dot'))""")

        # The sidebar: Pace is there, its text is large enough, and slider values do not sit on their thumbs.
        page.get_by_test_id("stExpandSidebarButton").click()
        sidebar = page.get_by_test_id("stSidebar")
        expect(sidebar.get_by_text("Pace", exact=True)).to_be_visible()
        page.wait_for_timeout(400)  # the sidebar slides in
        small = [s for s in page.evaluate(TEXT_SIZES) if s["px"] < 18]
        assert not small, f"text under 18 px with the sidebar open: {small[:15]}"
        for label in ("Learning rate", "Epochs", "Batch size"):
            thumb = slider_thumb(page, label).locator("xpath=..").bounding_box() or slider_thumb(page, label).bounding_box()
            value = sidebar.get_by_test_id("stSliderThumbValue").nth(("Learning rate", "Epochs", "Batch size").index(label)).bounding_box()
            assert value["y"] + value["height"] <= thumb["y"] + thumb["height"] / 2, f"{label}: its value overlaps its thumb"
        shot(page, "10_presenter_sidebar")
    finally:
        boxes = page.evaluate("() => window.__stExceptions || []")
        context.close()
    assert not boxes, boxes


def test_normal_view_screenshot_and_a_steady_chart(app: Page) -> None:
    """1280×720: while training starts, runs and ends, the chart stays where it is (the progress bar's room is kept)."""
    open_app(app, "?epochs=3")
    tops = {chart_top(app)}
    button(app, "Train").click()
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not status(app).filter(has_text="Finished 3 epochs").count():
        if (top := chart_top(app)) is not None:
            tops.add(top)
        app.wait_for_timeout(30)
    expect(status(app).filter(has_text="Finished 3 epochs")).to_be_visible()
    wait_idle(app)
    tops.add(chart_top(app))
    assert max(tops) - min(tops) <= 1, f"the chart moved while training: its top was at {sorted(tops)}"
    shot(app, "11_normal_1280")


def test_continue_at_another_rate_is_marked_and_in_the_csv(app: Page) -> None:
    """Train 2 epochs at lr 0.1, Continue 1 at 0.2: a dotted line with its settings at epoch 2; the CSV has each epoch's lr."""
    open_app(app, "?epochs=2")
    button(app, "Train").click()
    expect(status(app).filter(has_text="Finished 2 epochs")).to_be_visible(timeout=LOAD_WAIT)
    set_slider(app, "Learning rate", ["ArrowRight"])  # 0.1 -> 0.2
    set_slider(app, "Epochs", ["Home"])
    expect(app).to_have_url(re.compile(r"[?&]lr=0\.2(&|$)"), timeout=WAIT)
    expect(app).to_have_url(re.compile(r"[?&]epochs=1(&|$)"), timeout=WAIT)
    wait_idle(app)
    button(app, "Continue").click()
    expect(status(app).filter(has_text="Finished 3 epochs")).to_be_visible(timeout=LOAD_WAIT)
    wait_idle(app)
    expect(app.locator(".js-plotly-plot .annotation-text").filter(has_text="Continue: lr 0.2, batch 256")).to_have_count(2)
    with app.expect_download(timeout=WAIT) as info:
        button(app, "All runs as CSV").click()
    rows = list(csv.DictReader(io.StringIO(Path(info.value.path()).read_text())))
    assert [(r["epoch"], r["lr"]) for r in rows] == [("0", "0.0"), ("1", "0.1"), ("2", "0.1"), ("3", "0.2")], rows
    shot(app, "12_continued_at_0.2")


def test_resume_after_a_reload_trains_the_epochs_left(browser, dashboard_server) -> None:
    """10 epochs asked, the tab closed after a few: its link says how many are left, and Resume trains exactly those."""
    def new_page() -> Page:
        context = browser.new_context(base_url=dashboard_server.url, viewport={"width": 1280, "height": 720})
        page = context.new_page()
        page.add_init_script(WATCH_EXCEPTIONS)
        return page

    first = new_page()
    open_app(first, "?epochs=10&pace=0.5")  # slow enough to close the tab mid-run
    button(first, "Train").click()
    expect(log(first)).to_contain_text("epoch 2,", timeout=LOAD_WAIT)
    url = first.url
    first.context.close()  # the tab goes; its training stops with its finished epochs kept

    again = new_page()
    try:
        again.goto(url.replace("pace=0.5", "pace=0").split(dashboard_server.url, 1)[-1])
        expect(log(again)).to_contain_text("untrained test acc", timeout=LOAD_WAIT)
        said = status(again).filter(has_text="left from the interrupted run")
        expect(said).to_be_visible(timeout=WAIT)
        done = len(epoch_lines(again))
        assert f"{10 - done} of 10 epochs left from the interrupted run" in said.inner_text()
        button(again, "Resume").click()
        expect(status(again).filter(has_text="Finished 10 epochs")).to_be_visible(timeout=LOAD_WAIT * 2)
        wait_idle(again)
        assert [int(re.match(r"epoch (\d+),", line).group(1)) for line in epoch_lines(again)] == list(range(1, 11))
        shot(again, "13_resumed")
    finally:
        boxes = again.evaluate("() => window.__stExceptions || []")
        again.context.close()
    assert not boxes, boxes
