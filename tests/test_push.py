"""The server's pushed redraws of the live area (ui/push.py), with Streamlit's runtime replaced by fakes."""

from __future__ import annotations

import threading
import time

import pytest

from ui import push


class FakeApp:
    """An AppSession stand-in: records the fragment runs asked of it."""

    def __init__(self, name: str) -> None:
        self.id = name
        self.alive = True
        self.runs: list[str] = []


@pytest.fixture
def pusher(monkeypatch):
    """A Pusher whose page runs are fakes: `current` says which page is running, requests are recorded."""
    current: dict = {}
    lock = threading.Lock()

    def request(app: FakeApp, fragment_id: str) -> None:
        with lock:
            app.runs.append(fragment_id)

    monkeypatch.setattr(push, "_current_run", lambda: (current["app"].id, "live-fragment", current["app"]))
    monkeypatch.setattr(push, "_request_fragment_run", request)
    monkeypatch.setattr(push, "_alive", lambda app: app.alive)
    p = push.Pusher()
    p.current = current
    return p


def until(condition, limit: float = 10.0) -> bool:
    """Wait for condition() (its own limit); True once it holds."""
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.01)
    return condition()


def draw(pusher: push.Pusher, app: FakeApp, state=lambda: None) -> push.Target:
    """The page's live area runs (and attaches)."""
    pusher.current["app"] = app
    return pusher.attach(state, live_after=1.0)


def test_a_poke_gives_one_run_and_none_while_it_is_on_its_way(pusher):
    app = FakeApp("a")
    target = draw(pusher, app)
    assert app.runs == []  # drawing asks for nothing
    target.poke()
    assert until(lambda: len(app.runs) == 1)
    target.poke()
    target.poke()  # the page has not drawn the first push yet: no second run on top of it
    assert not until(lambda: len(app.runs) > 1, limit=0.5)
    draw(pusher, app)  # the pushed run draws; it began after the two pokes, so it showed them
    assert not until(lambda: len(app.runs) > 1, limit=0.5)
    target.poke()  # news after that run began: one more
    assert until(lambda: len(app.runs) == 2) and app.runs == ["live-fragment", "live-fragment"]


def test_a_lost_push_is_pushed_again(pusher, monkeypatch):
    monkeypatch.setattr(push, "IN_FLIGHT_LIMIT", 0.2)
    app = FakeApp("a")
    draw(pusher, app).poke()
    assert until(lambda: len(app.runs) >= 2)  # never drawn: asked again once the limit has passed


def test_a_closed_page_is_forgotten(pusher):
    app = FakeApp("a")
    target = draw(pusher, app)
    app.alive = False
    target.poke()
    assert until(lambda: "a" not in pusher._targets)
    assert app.runs == []


def test_slow_epochs_are_redrawn_within_a_budget_for_all_pages(pusher, monkeypatch):
    """Forty pages in slow epochs whose progress keeps changing: their redraws stay within the budget, shared out."""
    monkeypatch.setattr(push, "IN_FLIGHT_LIMIT", 60.0)  # these pages draw only when told to below: no push is taken as lost
    step = iter(range(10**9))
    pages = [FakeApp(f"p{i}") for i in range(40)]
    for app in pages:
        draw(pusher, app, lambda: ("training", 5.0, next(step)))  # always something new to show
    began = time.monotonic()
    assert until(lambda: sum(len(a.runs) for a in pages) >= 4)
    for app in pages:  # each page draws what was pushed, so it may be pushed again
        if app.runs:
            draw(pusher, app, lambda: ("training", 5.0, next(step)))
    time.sleep(1.0)
    seconds = time.monotonic() - began
    runs = sum(len(a.runs) for a in pages)
    assert runs <= push.PROGRESS_RUNS_PER_SECOND * (seconds + 1) + 1, f"{runs} runs in {seconds:.1f} s"
    assert pusher.progress_pushes == runs
    assert max(len(a.runs) for a in pages) == 1  # the longest-undrawn pages go first: no page twice before the others


def test_no_redraw_within_a_fast_epoch_or_without_a_job(pusher):
    quick, idle = FakeApp("quick"), FakeApp("idle")
    step = iter(range(10**9))
    draw(pusher, quick, lambda: ("training", 0.2, next(step)))  # the epoch is young: its end brings the point
    draw(pusher, idle, lambda: None)
    assert not until(lambda: quick.runs or idle.runs, limit=0.6)
