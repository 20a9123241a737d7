"""Per-session state shared by all pages, and the presenter view's styles."""

from __future__ import annotations

import base64
import logging
import os
import threading

import streamlit as st
from threadpoolctl import threadpool_limits

from softmax_core import DataError, ModelFileError, SoftmaxRegression
from softmax_core.engine import Engine

from .controls import escape_markdown
from .data import get_dataset
from .run_store import ENV_RUNS_DB, TOKEN_LENGTH, RunStore, RunStoreError, new_owner_token, open_store, valid_token
from .saver import Saver, saver_for
from .session import Run, Session

_LOG = logging.getLogger(__name__)


def through_the_entry_point() -> None:
    """Run this page inside dashboard.py's navigation; the first call in every file of pages/.

    Until some page of a server has called st.navigation, Streamlit takes a pages/ folder beside the entry
    point for its old multipage layout: a server's first visitor who opens a page's address directly (a
    teacher's board link after a restart, a bookmarked .../model_inspector) got that file run by itself.
    dashboard.py's set-up (the session's saved runs, its class board, the server's settings) was skipped and
    the sidebar listed the files ("dashboard", "class board", ...). Told that this app navigates itself, the
    rerun goes through dashboard.py to the same page, its address kept.
    """
    from streamlit.runtime.pages_manager import PagesManager  # noqa: PLC0415 -- Streamlit's own switch, not public API

    if PagesManager.uses_pages_directory:
        PagesManager.uses_pages_directory = False
        st.rerun()


_configured: list[bool] = []  # not empty once configure_server has run in this process
_configure_lock = threading.Lock()


def configure_server() -> None:
    """Process-wide settings of the page server, called by the entry point (importing changes nothing).

    Many pages evaluate models side by side (training runs in the engine's worker processes): one BLAS
    thread each is faster than BLAS threads that wait for one another.
    """
    with _configure_lock:  # a fresh server's first visitors come at once, and threadpoolctl is not thread-safe (joblib/threadpoolctl#176)
        if _configured:  # the entry point runs on every page run; finding the BLAS libraries takes milliseconds
            return
        try:
            threadpool_limits(1, user_api="blas")
        except Exception:  # a speed setting: the pages work without it, so a failure is logged, not shown
            _LOG.exception("could not limit BLAS to one thread; the pages use its default threads")
        _configured.append(True)


@st.cache_resource(show_spinner=False)
def get_engine() -> Engine:
    """The server's pool of training worker processes, started once per process and shared by all sessions."""
    return Engine()


def get_session() -> Session:
    """This browser session's model and runs (created on first use)."""
    if "session" not in st.session_state:
        session = Session(get_engine)
        session.alive = _tab_alive()
        st.session_state.session = session
    return st.session_state.session


def _tab_alive():
    """A check that this browser session still exists on the server (a closed tab stops its training)."""
    from streamlit import runtime  # noqa: PLC0415
    from streamlit.runtime.scriptrunner import get_script_run_ctx  # noqa: PLC0415

    ctx = get_script_run_ctx()
    if ctx is None or not runtime.exists():  # bare mode and AppTest: nobody closes a tab
        return lambda: True
    session_id, instance = ctx.session_id, runtime.get_instance()
    return lambda: instance.is_active_session(session_id)


def get_store() -> RunStore | str:
    """The server's run store, shared by all sessions ($SOFTMAX_RUNS_DB; "off" keeps runs in memory only).

    Returns the reason as a string when the store cannot be opened: the app then works without it.
    """
    return _store(os.environ.get(ENV_RUNS_DB, "").strip())


@st.cache_resource(show_spinner=False)
def _store(location: str) -> RunStore | str:
    if location.lower() == "off":
        return f"saving runs is switched off ({ENV_RUNS_DB}=off)"
    try:
        return open_store(location or None)
    except RunStoreError as err:
        return str(err)


def get_saver() -> Saver | None:
    """The process's background writer of runs into the store (None when saving is switched off)."""
    location = os.environ.get(ENV_RUNS_DB, "").strip()
    return None if location.lower() == "off" else saver_for(location or None)


# Which live browser session holds which owner id (in this server process): a pasted link must not let a
# second tab write into, or wipe, the first one's runs.
_holders: dict[str, tuple[object, str]] = {}  # owner token -> (runtime, Streamlit session id)
_holders_lock = threading.Lock()


def owner_token() -> str:
    """This browser session's own unguessable id: the URL's sid when it is valid and no other open tab holds it, else a new one.

    A damaged sid, or one that another open tab holds (a pasted link), gets a new id and a note that says so
    (`st.session_state.link_note`); with a held sid, its runs are copied in (`st.session_state.copied_from`).
    """
    if "owner" not in st.session_state:
        given = st.query_params.get("sid")
        owner, note, copied_from = _claim(given)
        st.session_state.owner, st.session_state.link_note, st.session_state.copied_from = owner, note, copied_from
    return st.session_state.owner


def _claim(given: str | None) -> tuple[str, str, str | None]:
    """(owner id, a note for the page, the id whose runs to copy in) for the sid a link brought."""
    if given is None or given == "":
        return _hold(new_owner_token()), "", None
    if not valid_token(given):
        shown = escape_markdown(given[:40] + ("…" if len(given) > 40 else ""))
        return _hold(new_owner_token()), (
            f"The link's session id **{shown}** is damaged ({len(given)} characters; an id is {TOKEN_LENGTH} letters, digits, "
            f"- or _), so no saved runs could be found with it. This tab starts a new session: check that the whole link was copied."
        ), None
    if _held_by_another(given):
        return _hold(new_owner_token()), (
            "This link belongs to a session that is open in another tab or browser. Its runs were copied here; what you do now is "
            "saved under a new link of your own, and the other session is not changed."
        ), given
    return _hold(given), "", None


def _hold(owner: str) -> str:
    from streamlit import runtime  # noqa: PLC0415
    from streamlit.runtime.scriptrunner import get_script_run_ctx  # noqa: PLC0415

    ctx = get_script_run_ctx()
    if ctx is not None and runtime.exists():
        with _holders_lock:
            _holders[owner] = (runtime.get_instance(), ctx.session_id)
    return owner


def _held_by_another(owner: str) -> bool:
    """True when a live browser session other than this one holds owner (a reload's old session is gone by now)."""
    from streamlit.runtime.scriptrunner import get_script_run_ctx  # noqa: PLC0415

    ctx = get_script_run_ctx()
    with _holders_lock:
        for token, (instance, session_id) in list(_holders.items()):
            if not instance.is_active_session(session_id):
                del _holders[token]  # closed tabs give their ids back
        holder = _holders.get(owner)
    return holder is not None and (ctx is None or holder[1] != ctx.session_id)


def connect_store(session: Session) -> None:
    """Once per session: bring back the runs saved under the session's id (or copy a held link's in), then save every change."""
    if st.session_state.get("store_connected"):
        return
    st.session_state.store_connected = True
    store, saver = get_store(), get_saver()
    if isinstance(store, str) or saver is None:
        session.store_problem = store if isinstance(store, str) else f"saving runs is switched off ({ENV_RUNS_DB}=off)"
        return
    owner = owner_token()
    source = st.session_state.get("copied_from") or owner
    try:
        saved = saver.load(source, store.load)
    except RunStoreError as err:
        session.store_problem = str(err)
        return
    rows = []  # (run, its saved fields)
    for data in saved:
        try:
            rows.append((Run.from_dict(data), data))
        except (KeyError, TypeError, ValueError) as err:  # an old or damaged row: skip it
            _LOG.warning("skipping a saved run of %s: %s", source[:4], err)
    if rows:
        newest, data = max(rows, key=lambda row: row[0].id)
        try:  # only the newest run's model comes back: it becomes the current run
            model = SoftmaxRegression.load(base64.b64decode(data["model"])) if data.get("model") else None
            dataset = get_dataset(newest.setup.dataset)
        except (TypeError, ValueError, ModelFileError) as err:
            _LOG.warning("not restoring the model of %s's run %s: %s", source[:4], newest.id, err)
            model, dataset = None, None
        except DataError:  # the Train page explains what is missing; the history comes back anyway
            model, dataset = None, None
        session.restore([run for run, _ in rows], dataset, model)
        if source != owner:  # copies of the shared link's runs become this session's own
            for run, data in rows:
                run.label = run.label or "copied from a shared link"
                saver.save(owner, {**data, **run.to_dict()})

    def save(run: Run, run_model: SoftmaxRegression | None) -> None:
        data = run.to_dict()
        if run_model is not None:
            data["model"] = base64.b64encode(run_model.to_bytes()).decode()
        saver.save(owner, data)  # returns at once: a slow or locked store never holds up training or the page

    session.on_change = save


def join_board(session: Session) -> None:
    """Once a link names a class board (?board=CODE), join it and publish every change of this session's runs there."""
    from . import board  # noqa: PLC0415 -- the QR code and figures of the board page are not needed otherwise

    code = st.query_params.get("board")
    if st.query_params.get("key") or code in st.session_state.get(board.KEYS_STATE, {}):
        return  # the teacher's own link or board: the teacher runs the board, not a run on it
    store = get_store()
    member, problem = board.join_from_link(store, st.query_params, st.session_state, owner_token())
    if problem:
        st.warning(problem, icon=":material/groups:")
    if member is None:
        return
    if st.session_state.get("board_hooked") != member.code:
        st.session_state.board_hooked = member.code
        save = session.on_change

        def publish(run: Run, run_model: SoftmaxRegression | None) -> None:
            if save is not None:
                save(run, run_model)
            # Returns at once (this runs in the engine's threads); once the student has left, the board refuses it.
            board.publisher().submit(store, member, run.to_dict())

        session.on_change = publish
    if st.session_state.get(board.MEMBER_STATE) is not None:
        st.sidebar.badge(board.badge_text(member), icon=":material/groups:", color="blue")


def store_problem(session: Session) -> str:
    """Why this session's runs are not being saved right now ("" when they are)."""
    if session.store_problem:
        return session.store_problem
    saver = get_saver()
    return saver.problem(st.session_state.owner) if saver is not None and "owner" in st.session_state else ""


def store_notice() -> str:
    """What the store dropped to keep its cap on runs per link ("" when nothing)."""
    saver = get_saver()
    return saver.notice(st.session_state.owner) if saver is not None and "owner" in st.session_state else ""


def forget_runs(session: Session) -> None:
    """Stop training, delete this session's saved runs and its run history (the current model stays)."""
    session.stop()
    saver = get_saver()
    if saver is not None and "owner" in st.session_state:
        saver.delete_all(st.session_state.owner)
    session.runs = []


def presenter_css(on: bool) -> None:
    """Text a back row can read (at least 18 px everywhere) and an image grid as wide as the page, for a projector.

    Streamlit sizes its text, spacing and icons in rem: a 24 px root scales the whole page by 1.5, so its
    smallest text (0.75 rem) is 18 px and a 1920×1080 projector shows the layout of a 1280×720 screen, only
    larger. The charts size their own text (PRESENTER_FONT in train_page).
    """
    if on:
        st.html(
            "<style>"
            "html {font-size: 24px;}"
            "[data-testid='stMetricValue'], [data-testid='stMetricValue'] p, [data-testid='stMetricValue'] div {font-size: 2.4rem !important;}"
            "h1 {font-size: 2.2rem !important;}"
            ".st-key-metrics [data-testid='stMetric'] {min-height: 6.65rem !important;}"  # with its change line, at 2.4rem
            "[data-testid='stSidebar'][data-collapsed='false'] {width: 19rem !important;}"  # its 300 px, scaled like the rest
            # The grid of test images fills the width, nine to a row, each image as wide as its column.
            ".presenter-grid > div {max-width: none !important; grid-template-columns: repeat(9, minmax(0, 1fr)) !important;}"
            ".presenter-grid figure {width: auto !important;}"
            ".presenter-grid img {width: 100% !important; height: auto !important; box-sizing: border-box;}"
            ".presenter-grid figcaption {font-size: 1rem !important;}"
            "</style>"
        )
