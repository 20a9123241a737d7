"""Streamlit entry point: `streamlit run dashboard.py`. It only sets up the page and routes."""

import streamlit as st

from ui import train_page
from ui.controls import chosen_setup, parse_query
from ui.data import warm_up
from ui.state import configure_server, connect_store, get_engine, get_session, join_board, owner_token

presenting = parse_query({"presenter": st.query_params.get("presenter", "")})[0].get("presenter", False)  # a projector needs the width
st.set_page_config(
    page_title="Softmax regression from scratch",
    page_icon=":material/functions:",
    layout="wide",
    initial_sidebar_state="collapsed" if presenting else "auto",
)
configure_server()
get_engine()  # the training workers start with the server's first page, not with its first Train
session = get_session()
connect_store(session)  # a reload on any page brings this session's runs back (before any new model is made)
join_board(session)  # a class board's join link: this session's runs appear on the board
if session.run is None:  # a new tab: the data set and its untrained model are readied while the page is drawn
    warm_up(chosen_setup())
st.query_params["sid"] = owner_token()  # every page's address leads back to them
page = st.navigation(
    [
        st.Page(train_page.render, title="Train", icon=":material/model_training:", default=True, url_path="train"),
        st.Page("pages/softmax_explorer.py", title="Softmax explorer", icon=":material/functions:"),
        st.Page("pages/model_inspector.py", title="Model inspector", icon=":material/biotech:"),
        st.Page("pages/data_explorer.py", title="Data explorer", icon=":material/photo_library:"),
        st.Page("pages/how_it_learns.py", title="How it learns", icon=":material/school:"),
        st.Page("pages/class_board.py", title="Class board", icon=":material/groups:"),
    ]
)
page.run()
