"""Per-session state shared by all pages, and the presenter view's styles."""

from __future__ import annotations

import base64
import logging
import os

import streamlit as st
from threadpoolctl import threadpool_limits

from softmax_core import DataError, ModelFileError, SoftmaxRegression
from softmax_core.engine import Engine

from .data import get_dataset
from .run_store import ENV_RUNS_DB, RunStore, RunStoreError, new_owner_token, open_store, valid_token
from .session import Run, Session

_LOG = logging.getLogger(__name__)

def configure_server() -> None:
    """Process-wide settings of the page server, called by the entry point (importing changes nothing).

    Many pages evaluate models side by side (training runs in the engine's worker processes): one BLAS
    thread each is faster than BLAS threads that wait for one another.
    """
    threadpool_limits(1, user_api="blas")


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


def owner_token() -> str:
    """This browser session's unguessable id: from the URL (?sid=...) when valid, else a new one."""
    if "owner" not in st.session_state:
        given = st.query_params.get("sid")
        st.session_state.owner = given if valid_token(given) else new_owner_token()
    return st.session_state.owner


def connect_store(session: Session) -> None:
    """Once per session: bring back the runs saved under the URL's id, then save every change."""
    if st.session_state.get("store_connected"):
        return
    st.session_state.store_connected = True
    store = get_store()
    if isinstance(store, str):
        session.store_problem = store
        return
    owner = owner_token()
    try:
        saved = store.load(owner)
    except RunStoreError as err:
        session.store_problem = str(err)
        return
    rows = []  # (run, its saved fields)
    for data in saved:
        try:
            rows.append((Run.from_dict(data), data))
        except (KeyError, TypeError, ValueError) as err:  # an old or damaged row: skip it
            _LOG.warning("skipping a saved run of %s: %s", owner[:4], err)
    if rows:
        newest, data = max(rows, key=lambda row: row[0].id)
        try:  # only the newest run's model comes back: it becomes the current run
            model = SoftmaxRegression.load(base64.b64decode(data["model"])) if data.get("model") else None
            dataset = get_dataset(newest.setup.dataset)
        except (TypeError, ValueError, ModelFileError) as err:
            _LOG.warning("not restoring the model of %s's run %s: %s", owner[:4], newest.id, err)
            model, dataset = None, None
        except DataError:  # the Train page explains what is missing; the history comes back anyway
            model, dataset = None, None
        session.restore([run for run, _ in rows], dataset, model)

    def save(run: Run, run_model: SoftmaxRegression | None) -> None:
        data = run.to_dict()
        if run_model is not None:
            data["model"] = base64.b64encode(run_model.to_bytes()).decode()
        try:
            store.save(owner, data)
        except RunStoreError as err:  # keep training; the page says that runs are not being kept
            session.store_problem = str(err)

    session.on_change = save


def forget_runs(session: Session) -> None:
    """Stop training, delete this session's saved runs and its run history (the current model stays)."""
    session.stop()
    store = get_store()
    if not isinstance(store, str) and "owner" in st.session_state:
        try:
            store.clear(st.session_state.owner)
        except RunStoreError as err:
            session.store_problem = str(err)
    session.runs = []


def presenter_css(on: bool) -> None:
    """Bigger text for a projector."""
    if on:
        st.html(
            "<style>"
            "[data-testid='stMarkdownContainer'] p, [data-testid='stMarkdownContainer'] li {font-size: 1.25rem;}"
            "[data-testid='stMetricValue'], [data-testid='stMetricValue'] p, [data-testid='stMetricValue'] div {font-size: 3.2rem !important;}"
            "[data-testid='stMetricLabel'] p {font-size: 1.3rem !important;}"
            "[data-testid='stCode'] code {font-size: 1.15rem;}"
            "h1 {font-size: 2.6rem !important;}"
            "</style>"
        )
