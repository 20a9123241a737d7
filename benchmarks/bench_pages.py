"""Page switch in a real browser: How it learns against the Model inspector, measured side by side.

One dashboard server and one Chromium tab (Debian's, through Playwright) on the Train page with the
lesson's model trained for one epoch. Each round clicks the sidebar link to one page and times, in the
page's own clock, from the click until that page is drawn and idle: its last element is visible and
the script has stopped running (How it learns: the minibatch images and the gradient map; Model
inspector: the "Why this prediction" maps). The two pages alternate, `--repeats` rounds each, and the
ratio of the medians is reported against the target (How it learns <= 1.2x the inspector).

    SOFTMAX_DATA_DIR=ROOT python benchmarks/bench_pages.py [--repeats 7]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(HERE))

from streamlit_server import CHROMIUM, CHROMIUM_ARGS, STREAMLIT_FLAGS, StreamlitServer  # noqa: E402

TARGET_RATIO = 1.2
PAGES = ("Model inspector", "How it learns")  # sidebar links, each page's title starts with it
# Idle: the script is not running and no skeleton is left; then the page's last charts have drawn.
IDLE = """() => {
  const app = document.querySelector('[data-testid="stApp"]');
  const idle = app && app.getAttribute('data-test-script-state') === 'notRunning' && !document.querySelector('[data-testid="stSkeleton"]');
  const charts = document.querySelectorAll('.js-plotly-plot .main-svg').length;
  return idle && charts > 0;
}"""


def switch(page, title: str) -> float:
    """Click the sidebar link to `title`; seconds until its page is drawn and idle."""
    heading = page.get_by_role("heading", name=title).first
    started = time.perf_counter()
    page.get_by_test_id("stSidebarNav").get_by_text(title, exact=True).click()
    heading.wait_for(timeout=120_000)
    page.wait_for_function(IDLE, polling="raf", timeout=120_000)
    return time.perf_counter() - started


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args(argv)
    from playwright.sync_api import sync_playwright  # noqa: PLC0415

    with tempfile.TemporaryDirectory(prefix="bench_pages_") as tmp:
        env = {**os.environ, "SOFTMAX_RUNS_DB": str(Path(tmp) / "runs.sqlite3")}
        server = StreamlitServer("dashboard.py", REPO, env, STREAMLIT_FLAGS, log_prefix="bench_pages_")
        server.start()
        try:
            with sync_playwright() as p:
                browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
                page = browser.new_page(viewport={"width": 1280, "height": 720})
                page.goto(f"{server.url}?epochs=1", timeout=120_000)
                page.get_by_text("untrained test acc").wait_for(timeout=120_000)
                page.locator("button:has-text('Train')").first.click()
                page.get_by_text("Finished 1 epoch").first.wait_for(timeout=120_000)
                times: dict[str, list[float]] = {title: [] for title in PAGES}
                for title in PAGES:  # one untimed visit each: the browser loads the pages' code once
                    switch(page, title)
                for _ in range(args.repeats):
                    for title in PAGES:
                        times[title].append(switch(page, title))
                browser.close()
        finally:
            server.close()
    medians = {title: statistics.median(t) for title, t in times.items()}
    for title, t in times.items():
        print(f"{title}: median {medians[title]:.2f} s (min {min(t):.2f}, max {max(t):.2f}) over {len(t)} switches")
    ratio = medians["How it learns"] / medians["Model inspector"]
    print(f"How it learns / Model inspector = {ratio:.2f}x (target <= {TARGET_RATIO:g}x) {'PASS' if ratio <= TARGET_RATIO else 'MISS'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
