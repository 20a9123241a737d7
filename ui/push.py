"""Server-side redraws of the live area: the server reruns a page's live fragment when its job has news.

With a browser timer per page (`st.fragment(run_every=...)`), thirty training pages cost the server a
script run each every few seconds whether or not anything changed, and the server, not the training,
was what made a class wait. Here the job's listener pokes the page when an epoch ends or the job ends,
and one thread per server reruns that page's live fragment once (never two at a time for a page).
While an epoch runs slowly, the same thread redraws the running figures within it, within a budget of
runs per second for all pages together.

The page server's script runs share one interpreter lock: thirty pushed runs started together each take
thirty times as long, and every page (and a class board's own timer) waits for all of them. So at most
MAX_PUSHED_RUNS pushed runs are on their way or running at once; the others wait their turn, oldest news first.

Streamlit has no public call for a rerun that the server starts, so this uses its runtime the way its
own file watcher does (AppSession.request_rerun, on the server's event loop); where that is missing
(AppTest, bare mode, another Streamlit) `attach` returns False and the page polls as before.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field

_LOG = logging.getLogger(__name__)

IN_FLIGHT_LIMIT = 3.0  # s: a pushed run not drawn by then is taken as lost and pushed again
RUN_LIMIT = 10.0  # s: a live-area run that has not said it finished by then no longer holds a turn
MAX_PUSHED_RUNS = 2  # pushed runs on their way or running at once, all pages together
PROGRESS_RUNS_PER_SECOND = 2.0  # within-epoch redraws per second, all pages together (epoch ends are not counted);
# each one is also a redraw in a student's browser: at 4 a second, ten Chromium tabs on the server's 2 cores took 60 % longer
PROGRESS_EVERY = 0.25  # s: the most often one page redraws its progress (one page alone)
TICK = 0.05  # s: how often the pusher looks at slow epochs


@dataclass
class Target:
    """One page's live fragment, and what of its job it has drawn."""

    session_id: str
    fragment_id: str
    app: object  # the page's AppSession
    job_state: object  # () -> None (no job) or (status, seconds into the epoch on its way, what a redraw would show)
    live_after: float  # s: redraw within an epoch only once it has run this long
    version: int = 0  # pokes so far
    drawn_version: int = -1  # the version the last run of the live area began with
    drawn_state: object = None
    drawn_at: float = 0.0
    pushed_at: float | None = None  # a pushed run not drawn yet
    running_since: float | None = None  # a run of the live area that has begun and not finished
    news_at: float = 0.0  # when the oldest news not drawn yet came
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def poke(self) -> None:
        """Something the page shows changed (an epoch or the job ended): redraw soon. Never waits."""
        with self.lock:
            if self.version == self.drawn_version:
                self.news_at = time.monotonic()
            self.version += 1
        PUSHER.wake()

    def finish(self) -> None:
        """The live area's run that attached has drawn everything: its turn goes to the next page."""
        with self.lock:
            self.running_since = None
        PUSHER.wake()

    def busy(self, now: float) -> bool:
        """A pushed run is on its way to this page, or a run of its live area is going on."""
        return (self.pushed_at is not None and now - self.pushed_at < IN_FLIGHT_LIMIT) or (
            self.running_since is not None and now - self.running_since < RUN_LIMIT)


class Pusher:
    """The server's one thread that reruns live areas (see the module's docstring)."""

    def __init__(self) -> None:
        self._targets: dict[str, Target] = {}
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self.progress_pushes = 0  # redraws within slow epochs (tests check the budget with it)

    def attach(self, job_state, live_after: float) -> Target | None:
        """Called by the live area as it runs: remember how to rerun it; None where the server cannot push."""
        found = _current_run()
        if found is None:
            return None
        session_id, fragment_id, app = found
        with self._lock:
            target = self._targets.get(session_id)
            if target is None or target.fragment_id != fragment_id or target.app is not app:
                target = self._targets[session_id] = Target(session_id, fragment_id, app, job_state, live_after)
            target.job_state = job_state
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._serve, name="live-push", daemon=True)
                self._thread.start()
        with target.lock:
            target.drawn_version, target.drawn_state = target.version, job_state()
            target.drawn_at, target.pushed_at = time.monotonic(), None
            target.running_since = target.drawn_at
        return target

    def wake(self) -> None:
        """Look at the pages now (a poke)."""
        self._wake.set()

    def _serve(self) -> None:
        budget, last = 0.0, time.monotonic()
        while True:
            self._wake.wait(TICK)
            self._wake.clear()
            now = time.monotonic()
            budget = min(PROGRESS_RUNS_PER_SECOND, budget + (now - last) * PROGRESS_RUNS_PER_SECOND)
            last = now
            with self._lock:
                targets = list(self._targets.values())
            news, progress, busy = [], [], 0
            for target in targets:
                if not _alive(target.app):
                    with self._lock:
                        if self._targets.get(target.session_id) is target:
                            del self._targets[target.session_id]
                    continue
                with target.lock:
                    if target.busy(now):
                        busy += 1
                        continue  # one run at a time per page: the next push waits until this one has drawn
                    if target.version != target.drawn_version:
                        news.append(target)
                        continue
                state, drawn = target.job_state(), target.drawn_state
                if state is not None and state[0] == "training" and state[1] >= target.live_after \
                        and (drawn is None or state[2] != drawn[2]) and now - target.drawn_at >= PROGRESS_EVERY:
                    progress.append(target)
            turns = MAX_PUSHED_RUNS - busy
            # Epoch and job ends first, the oldest news first; then slow epochs' running figures, the
            # longest-undrawn pages first, as many as the budget allows.
            news.sort(key=lambda t: t.news_at)
            progress.sort(key=lambda t: t.drawn_at)
            for target in news:
                if turns <= 0:
                    break
                turns -= 1
                with target.lock:
                    self._push(target, now)
            for target in progress:
                if budget < 1.0 or turns <= 0:
                    break
                budget -= 1.0
                turns -= 1
                with target.lock:
                    self._push(target, now)
                self.progress_pushes += 1

    def _push(self, target: Target, now: float) -> None:
        target.pushed_at = now
        rerun_later(target)  # where it fails, the page's slow timer still redraws it


PUSHER = Pusher()


@dataclass(frozen=True)
class Fragment:
    """Where one page's fragment can be rerun from the server: its id and its page's AppSession."""

    fragment_id: str
    app: object


def this_fragment() -> Fragment | None:
    """The fragment running on this thread, for rerun_later(); None where the server cannot push (AppTest, bare mode)."""
    found = _current_run()
    return None if found is None else Fragment(found[1], found[2])


def rerun_later(fragment: Fragment | Target | None) -> bool:
    """Ask the server to rerun that fragment once the page's current run ends (never waits); False where it cannot."""
    if fragment is None:
        return False
    try:
        if not _alive(fragment.app):
            return False
        _request_fragment_run(fragment.app, fragment.fragment_id)
    except Exception:  # a closed session or a changed runtime
        _LOG.debug("could not push a fragment run", exc_info=True)
        return False
    return True


def _current_run():
    """(session id, fragment id, AppSession) of the fragment running on this thread, or None."""
    try:
        from streamlit import runtime  # noqa: PLC0415
        from streamlit.runtime.scriptrunner import get_script_run_ctx  # noqa: PLC0415
        from streamlit.runtime.scriptrunner_utils.script_run_context import ThreadState  # noqa: PLC0415

        ctx = get_script_run_ctx(suppress_warning=True)
        if ctx is None or not runtime.exists():
            return None
        fragment_id = ThreadState.get().fragment_id
        info = runtime.get_instance()._session_mgr.get_active_session_info(ctx.session_id)  # noqa: SLF001
        if not fragment_id or info is None or not hasattr(info.session, "_event_loop"):
            return None
        return ctx.session_id, fragment_id, info.session
    except Exception:  # another Streamlit: the page polls instead
        _LOG.debug("live redraws cannot be pushed here", exc_info=True)
        return None


def _alive(app) -> bool:
    from streamlit import runtime  # noqa: PLC0415

    return runtime.exists() and runtime.get_instance().is_active_session(app.id)


def _request_fragment_run(app, fragment_id: str) -> None:
    """Ask the page's AppSession, on the server's event loop, to rerun one fragment (as a browser timer would)."""
    app._event_loop.call_soon_threadsafe(_rerun_on_loop, app, fragment_id)  # noqa: SLF001


def _rerun_on_loop(app, fragment_id: str) -> None:
    """On the event loop: AppSession.request_rerun's own steps, except that the request carries no widget states.

    A browser's request always carries all of the page's widget values. One that is still waiting when this
    request comes is merged with it, and the newer request's widget states win: an empty set would have thrown
    away a pick the user had just made (the teacher's entry list then showed the pick, and Pin stayed disabled).
    """
    from streamlit.proto.ClientState_pb2 import ClientState  # noqa: PLC0415
    from streamlit.runtime.scriptrunner_utils.script_requests import RerunData  # noqa: PLC0415
    from streamlit.runtime.state.query_params import sanitize_query_string  # noqa: PLC0415

    try:
        last = app._client_state  # noqa: SLF001 -- the page and address of the page's last run
        runner = app._scriptrunner  # noqa: SLF001
        if runner is not None and app.has_fragment(fragment_id):
            data = RerunData(query_string=sanitize_query_string(last.query_string), page_script_hash=last.page_script_hash,
                             fragment_id=fragment_id, is_auto_rerun=True)
            if runner.request_rerun(data):
                return
        # No script runner takes requests now, so none waits to be merged: the session starts a new one.
        app.request_rerun(ClientState(query_string=last.query_string, page_script_hash=last.page_script_hash,
                                      fragment_id=fragment_id, is_auto_rerun=True))
    except Exception:  # a closed session or a changed runtime: the page's slow timer still redraws it
        _LOG.debug("could not push a fragment run", exc_info=True)
