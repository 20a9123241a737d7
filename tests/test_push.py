"""The server's pushed redraws of the live area (ui/push.py), with Streamlit's runtime replaced by fakes."""

from __future__ import annotations

import threading
import time

import pytest
from streamlit.proto.ClientState_pb2 import ClientState
from streamlit.proto.WidgetStates_pb2 import WidgetStates
from streamlit.runtime.scriptrunner_utils.script_requests import RerunData, ScriptRequests

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


def begin(pusher: push.Pusher, app: FakeApp, state=lambda: None) -> push.Target:
    """The page's live area begins a run (it attaches) and is still drawing."""
    pusher.current["app"] = app
    return pusher.attach(state, live_after=1.0)


def draw(pusher: push.Pusher, app: FakeApp, state=lambda: None) -> push.Target:
    """The page's live area runs from start to end."""
    target = begin(pusher, app, state)
    target.finish()
    return target


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


def test_pushed_runs_take_turns_oldest_news_first(pusher, monkeypatch):
    """Ten pages' epochs end together: at most MAX_PUSHED_RUNS runs are asked for at once, the next as one draws."""
    monkeypatch.setattr(push, "IN_FLIGHT_LIMIT", 60.0)  # these pages draw only when told to below
    pages = [FakeApp(f"p{i}") for i in range(10)]
    targets = [draw(pusher, app) for app in pages]
    for target in targets:  # in page order: p0's news is the oldest
        target.poke()
        time.sleep(0.002)
    asked = lambda: [app.id for app in pages if app.runs]  # noqa: E731
    assert until(lambda: len(asked()) == push.MAX_PUSHED_RUNS)
    assert not until(lambda: len(asked()) > push.MAX_PUSHED_RUNS, limit=0.3)
    assert asked() == [f"p{i}" for i in range(push.MAX_PUSHED_RUNS)]
    drawn = set()
    while len(drawn) < len(pages):  # each page asked draws; the next in line is asked
        pending = [app for app in pages if app.runs and app.id not in drawn]
        assert 0 < len(pending) <= push.MAX_PUSHED_RUNS
        running = begin(pusher, pending[0])
        assert not until(lambda pending=pending: len(asked()) > len(drawn) + len(pending), limit=0.2)  # a run going on holds its turn
        running.finish()
        drawn.add(pending[0].id)
        assert until(lambda: len(asked()) >= min(len(pages), len(drawn) + push.MAX_PUSHED_RUNS))
    assert asked() == [app.id for app in pages] and all(len(app.runs) == 1 for app in pages)


def test_a_page_still_drawing_is_not_pushed_until_it_finishes(pusher):
    app = FakeApp("a")
    target = begin(pusher, app)
    target.poke()  # news while the page draws: that run may have missed it
    assert not until(lambda: app.runs, limit=0.4)
    target.finish()
    assert until(lambda: len(app.runs) == 1)


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
    drawn = {app.id: 0 for app in pages}
    while time.monotonic() - began < 2.0:  # each page draws what was pushed as soon as it is asked
        for app in pages:
            if len(app.runs) > drawn[app.id]:
                drawn[app.id] = len(app.runs)
                draw(pusher, app, lambda: ("training", 5.0, next(step)))
        time.sleep(0.01)
    seconds = time.monotonic() - began
    runs = sum(len(a.runs) for a in pages)
    assert 2 <= runs <= push.PROGRESS_RUNS_PER_SECOND * (seconds + 1) + 1, f"{runs} runs in {seconds:.1f} s"
    assert pusher.progress_pushes == runs
    assert max(len(a.runs) for a in pages) == 1  # the longest-undrawn pages go first: no page twice before the others


def test_no_redraw_within_a_fast_epoch_or_without_a_job(pusher):
    quick, idle = FakeApp("quick"), FakeApp("idle")
    step = iter(range(10**9))
    draw(pusher, quick, lambda: ("training", 0.2, next(step)))  # the epoch is young: its end brings the point
    draw(pusher, idle, lambda: None)
    assert not until(lambda: quick.runs or idle.runs, limit=0.6)


class RequestsRunner:
    """A ScriptRunner stand-in that queues requests in Streamlit's own ScriptRequests, as a busy runner does."""

    def __init__(self) -> None:
        self.requests = ScriptRequests()

    def request_rerun(self, data) -> bool:
        return self.requests.request_rerun(data)


class RunnerApp:
    """An AppSession stand-in with a script runner and its last client state."""

    def __init__(self) -> None:
        self._client_state = ClientState(query_string="sid=abc", page_script_hash="page")
        self._scriptrunner = RequestsRunner()
        self.new_runner_requests: list = []

    def has_fragment(self, fragment_id: str) -> bool:
        return fragment_id in ("controls", "live")

    def request_rerun(self, client_state) -> None:
        self.new_runner_requests.append(client_state)


def browser_pick(value: str):
    """A browser's rerun of the teacher's controls after a pick: the page's widget values and its fragment."""
    states = WidgetStates()
    pick = states.widgets.add()
    pick.id, pick.string_value = "board_pick", value
    return RerunData(query_string="sid=abc", page_script_hash="page", widget_states=states, fragment_id="controls")


def pending(app: RunnerApp):
    """The request the runner would take next (the lock-free part of on_scriptrunner_ready)."""
    return app._scriptrunner.requests._rerun_data  # noqa: SLF001


def test_a_pushed_run_keeps_the_values_of_a_browser_request_waiting_beside_it() -> None:
    app = RunnerApp()
    app._scriptrunner.request_rerun(browser_pick("#1"))  # the user's pick waits while a run goes on
    push._rerun_on_loop(app, "live")  # then the server pushes the live area
    data = pending(app)
    assert [(w.id, w.string_value) for w in data.widget_states.widgets] == [("board_pick", "#1")]  # the pick survives
    assert data.fragment_id_queue == ["controls", "live"] and not app.new_runner_requests
    # In the other order the browser's values are the newer ones and win as well.
    app = RunnerApp()
    push._rerun_on_loop(app, "live")
    assert pending(app).widget_states is None and pending(app).query_string == "sid=abc"
    app._scriptrunner.request_rerun(browser_pick("#2"))
    assert [w.string_value for w in pending(app).widget_states.widgets] == ["#2"]


def test_a_pushed_run_starts_a_new_runner_when_none_takes_requests_and_skips_a_gone_fragment() -> None:
    app = RunnerApp()
    app._scriptrunner.requests.request_stop()  # the last run ended: its runner takes nothing more
    push._rerun_on_loop(app, "live")
    assert [(c.fragment_id, c.query_string, c.page_script_hash) for c in app.new_runner_requests] == [("live", "sid=abc", "page")]
    app = RunnerApp()
    push._rerun_on_loop(app, "a fragment a full run dropped")
    assert len(app.new_runner_requests) == 1  # AppSession.request_rerun itself ignores a fragment it no longer holds
    assert pending(app).fragment_id_queue == []  # nothing was queued on the running script
