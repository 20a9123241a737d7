"""Hostile links and files against a real server in Chromium: shown as text, refused in one sentence, the server stays small."""

from __future__ import annotations

from pathlib import Path

from playwright.sync_api import expect

from tests.test_e2e import LOAD_WAIT, WAIT, epoch_lines, log, open_app, wait_idle
from tests.test_e2e_pages import Sessions, sessions  # noqa: F401 -- the sessions fixture
from tests.test_hostile_core import HUGE_SHAPE, zip_bomb

SERVER_PEAK_MB = 400.0  # the page server's own peak resident memory (its training workers are other processes)
HOSTILE_LINKS = (
    "?presenter=[Session expired - click here](https://evil.example/login)",
    "?lr=![x](http://127.0.0.1:9/p.png)",
    "?lr=" + "9" * 10_000,  # longer request lines are refused by the HTTP server itself ("Invalid HTTP request")
    "?batch=<script>window.__pwned=1</script>",
    "?epochs=www.evil.example&seed=-5&sid=abc",
)


def peak_mb(pid: int) -> float:
    """VmHWM of a process, in MB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise AssertionError(f"no VmHWM for {pid}")


def test_hostile_links_and_uploads_are_harmless(sessions: Sessions,  # noqa: F811 -- the imported fixture
                                                 start_dashboards, tmp_path: Path) -> None:
    (server,) = start_dashboards(1, tmp_path / "runs.sqlite3")
    page = sessions.new(server=server)
    for query in HOSTILE_LINKS:
        page.goto("/" + query)
        expect(log(page)).to_contain_text("untrained test acc", timeout=LOAD_WAIT)
        wait_idle(page)
        main = page.get_by_test_id("stMain")
        expect(main.get_by_test_id("stAlert").first).to_be_visible()  # the link's values are said to be refused
        assert main.locator("a[href*='evil'], a[href^='http']").count() == 0, query  # no link made of the URL's text
        assert page.locator("img[src^='http']").count() == 0, query  # no image fetched from elsewhere
        assert page.evaluate("() => window.__pwned") is None, query
        longest = max(len(t) for t in main.get_by_test_id("stAlert").all_inner_texts())
        assert longest < 2000, (query[:40], longest)  # echoes are cut short
        assert epoch_lines(page) == []

    open_app(page)
    uploader = page.get_by_test_id("stFileUploaderDropzoneInput")
    for name, data, words in (
        ("bomb.npz", zip_bomb(), "the file is 4.6 MB; a model file is at most 73 kB"),
        ("huge.npz", HUGE_SHAPE, "a model has W of shape (784, 10)"),
        ("notes.npz", b"W = [[0.1]]\n", "not an .npz (zip) file"),
    ):
        uploader.set_input_files(files=[{"name": name, "mimeType": "application/octet-stream", "buffer": data}])
        alert = page.get_by_test_id("stAlert").filter(has_text=f"{name} was not loaded")
        expect(alert).to_be_visible(timeout=WAIT)
        expect(alert).to_contain_text(words)
        expect(alert).to_contain_text("Nothing was changed.")
        expect(page.get_by_test_id("stException")).to_have_count(0)
    expect(page.get_by_text("Untrained model")).to_be_visible()  # the current model is still the untrained one
    peak = peak_mb(server.server.pid)
    print(f"the server's peak resident memory after the hostile links and uploads: {peak:.0f} MB")
    assert peak < SERVER_PEAK_MB, peak
