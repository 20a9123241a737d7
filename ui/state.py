"""Per-session state shared by all pages, and the presenter view's styles."""

from __future__ import annotations

import streamlit as st
from threadpoolctl import threadpool_limits

from .session import Session

# Sessions train side by side (and beside the browser on a laptop): one BLAS thread each is faster
# than BLAS threads that wait for one another. Set once per server process, when this is imported.
threadpool_limits(1, user_api="blas")


def get_session() -> Session:
    """This browser session's model and runs (created on first use)."""
    if "session" not in st.session_state:
        st.session_state.session = Session()
    return st.session_state.session


def presenter_css(on: bool) -> None:
    """Bigger text for a projector."""
    if on:
        st.html(
            "<style>"
            "[data-testid='stMarkdownContainer'] p, [data-testid='stMarkdownContainer'] li {font-size: 1.25rem;}"
            "[data-testid='stMetricValue'] {font-size: 2.6rem;}"
            "[data-testid='stMetricLabel'] p {font-size: 1.2rem;}"
            "h1 {font-size: 2.6rem !important;}"
            "</style>"
        )
