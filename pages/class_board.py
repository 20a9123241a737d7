"""Class board: the whole class's runs live on one page for a projector; the teacher pins, removes and closes.

A teacher starts a board here and shows its QR code; students who open the join link train as usual and their
runs appear here after every epoch. Students who open this page see the same board, read-only.
"""

from __future__ import annotations

import math

import pandas as pd
import streamlit as st

from softmax_core import DATASETS
from ui import board as bd
from ui import charts, push
from ui.controls import BATCH_SIZES, DEFAULTS, LEARNING_RATES, escape_markdown, student_link_query
from ui.state import get_store, through_the_entry_point

REFRESH = 1.0  # seconds between redraws of the live part: a projector shows news within 2 s
FONT = 20  # px of the charts' text (a room reads a projector from 10 m)
ROW_HEIGHT = 44  # px of a table row (room for the larger text)
QR_WIDTH = 560  # px of the QR code on screen: at 1920 px wide, about a third of the screen's height
# A projector page: every text at least 18 px. Streamlit sizes text in rem, so a larger root scales it all
# (its smallest text is 0.75rem); the room needs the height for the charts more than for a margin.
CSS = """<style>
html { font-size: 24px; }
[data-testid="stMainBlockContainer"] { padding-top: 3.5rem; }
[data-testid="stStatusWidget"] { visibility: hidden; }  /* the refresh every second would blink "Running" on the projector */
</style>"""


def main() -> None:
    """Draw the page: start a board, or show the one in the URL (or the one this session joined)."""
    st.set_page_config(page_title="Class board", page_icon=":material/groups:", layout="wide")
    st.html(CSS)
    st.title("Class board")
    store = get_store()
    if isinstance(store, str):
        st.error(f"The class board needs the run store, which is not available: {escape_markdown(store)}", icon=":material/cloud_off:")
        return
    code = current_code()
    take_teacher_key(store, code)
    if not code:
        start_form(store)
        return
    try:
        board = bd.read_board(store, code)
    except bd.BoardError as err:
        st.error(str(err), icon=":material/error:")
        if st.button("Start a new board instead", key="board_new"):
            forget_board()
        return
    key = teacher_key(code)
    member = st.session_state.get(bd.MEMBER_STATE)
    if key and not board.closed:
        join_section(board, key)
    elif member is not None and member.code == code:
        member_section(store, member)
    controls = bool(key) and not board.closed
    if controls:
        st.session_state.board_controls_for = controls_signature(board)
    st.fragment(live, run_every=None if board.closed else REFRESH)(store, code, key, board.closed)
    if key or board.closed:
        # Outside the live area, like the controls: a button drawn anew every second lost clicks on a busy server.
        # The CSV is made when clicked (the board changes every second while a class trains).
        st.download_button("Download all entries (CSV)", lambda: bd.board_csv(bd.read_board(store, code)), file_name=f"class-board-{code}.csv", mime="text/csv",
                           icon=":material/download:", key="board_csv", on_click="ignore")
    if controls:  # not in the live area: its redraw every second would close the entry list under the teacher's pointer
        st.fragment(teacher_controls)(store, code, key)
    if key:
        with st.expander("Teacher link (keep it to yourself: it can pin, remove and close)"):
            st.code(bd.teacher_link(base_url(), board.code, key), language=None, wrap_lines=True)


def current_code() -> str:
    """The board this page shows: the URL's ?board=CODE, else the one this session started or joined."""
    given = st.query_params.get("board")
    if bd.valid_code(given):
        st.session_state[bd.CODE_STATE] = given
        return given
    if given:
        st.warning(bd.MALFORMED, icon=":material/link_off:")
    code = st.session_state.get(bd.CODE_STATE, "")
    if code:
        st.query_params["board"] = code
    return code


def take_teacher_key(store, code: str) -> None:
    """A teacher link's ?key=...: kept in this session if it is the board's key, and taken out of the address bar (a projector shows it)."""
    if "key" not in st.query_params:
        return
    key = st.query_params.get("key")
    del st.query_params["key"]
    try:
        ok = bool(code) and bd.is_teacher(store, code, key)
    except bd.BoardError as err:
        st.error(str(err))
        return
    if ok:
        st.session_state.setdefault(bd.KEYS_STATE, {})[code] = key
    else:
        st.warning("The teacher key in this link is not this board's: the board is shown read-only.", icon=":material/key_off:")


def teacher_key(code: str) -> str:
    """This session's teacher key of the board ("" when this session is not its teacher)."""
    return st.session_state.get(bd.KEYS_STATE, {}).get(code, "")


def forget_board() -> None:
    """Leave this page's board view (the board itself stays in the store)."""
    st.session_state.pop(bd.CODE_STATE, None)
    if "board" in st.query_params:
        del st.query_params["board"]
    st.rerun()


def start_form(store) -> None:
    """The teacher chooses the starting settings and starts a board."""
    st.markdown("Everyone trains with a different learning rate and batch size, and the class compares the results here, live. "
                "Choose the settings the students start from, then start a board and show its QR code.")
    state = st.session_state
    with st.form("board_start", border=False):
        cols = st.columns(4)
        lr = cols[0].select_slider("Learning rate", LEARNING_RATES, value=state.get("lr", DEFAULTS["lr"]), key="board_lr")
        batch = cols[1].select_slider("Batch size", BATCH_SIZES, value=state.get("batch_size", DEFAULTS["batch_size"]), key="board_batch")
        epochs = cols[2].slider("Epochs", 1, 100, value=int(state.get("epochs", DEFAULTS["epochs"])), key="board_epochs")
        names = list(DATASETS)
        dataset = cols[3].selectbox("Data set", names, index=names.index(state.get("dataset", DEFAULTS["dataset"])),
                                    format_func=lambda n: DATASETS[n].title, key="board_dataset")
        started = st.form_submit_button("Start a board", icon=":material/groups:", type="primary")
    if not started:
        return
    settings = student_link_query({"lr": lr, "batch_size": batch, "epochs": epochs, "dataset": dataset})
    try:
        opened = bd.start_board(store, settings)
    except bd.BoardError as err:
        st.error(str(err))
        return
    st.session_state.setdefault(bd.KEYS_STATE, {})[opened.code] = opened.key
    st.session_state[bd.CODE_STATE] = opened.code
    st.query_params["board"] = opened.code
    st.rerun()


def base_url() -> str:
    """The app's address as the browser sees it (behind a proxy too)."""
    return bd.app_base(st.context.url or "http://localhost:8501/")


def join_section(board: bd.Board, key: str) -> None:
    """The join QR code and link, big enough for the back of the room; the teacher link in a closed expander."""
    link = bd.join_link(base_url(), board.code, board.settings)
    if st.toggle("Show the join QR code", value=True, key="board_show_qr"):
        qr, text = st.columns([QR_WIDTH + 40, 1700 - QR_WIDTH], vertical_alignment="center")
        qr.image(qr_image(link), width=QR_WIDTH)
        text.markdown("**Scan the code to join**, or open this link:")
        text.code(link, language=None, wrap_lines=True)
        text.markdown(f"Board code **{escape_markdown(board.code, line_start=False)}** · starting settings: "
                      + (escape_markdown(", ".join(f"{k} {v}" for k, v in board.settings.items()), line_start=False) or "the lesson's"))


@st.cache_data(show_spinner=False, max_entries=32)
def qr_image(link: str) -> bytes:
    """The QR code PNG of a link (cached: the page redraws often)."""
    return bd.qr_png(link, scale=12)


def member_section(store, member: bd.Member) -> None:
    """A student's badge, a new nickname and Leave."""
    st.badge(bd.badge_text(member), icon=":material/groups:", color="blue")
    with st.popover("Change nickname or leave"):
        with st.form("board_rename", border=False):
            name = st.text_input("Nickname", max_chars=bd.NICKNAME_LENGTH, placeholder="empty: a new random one", key="board_nickname")
            if st.form_submit_button("Change nickname"):
                try:
                    st.session_state[bd.MEMBER_STATE] = bd.rename(store, member, name)
                    st.rerun()
                except bd.BoardError as err:
                    st.error(str(err))
        if st.button("Leave the board (your runs are taken off it)", key="board_leave"):
            try:
                bd.leave(store, member.code, member.token)
            except bd.BoardError as err:
                st.error(str(err))
                return
            del st.session_state[bd.MEMBER_STATE]
            forget_board()


def live(store, code: str, key: str, was_closed: bool) -> None:
    """The counts, the two charts and the table, redrawn every REFRESH seconds."""
    try:
        board = bd.read_board(store, code)
    except bd.BoardError as err:
        st.error(str(err), icon=":material/cloud_off:")
        return
    if board.closed and not was_closed:  # closed meanwhile: the whole page drops its QR code and stops refreshing
        st.rerun(scope="app")
    if key and not board.closed and controls_signature(board) != st.session_state.get("board_controls_for"):
        # An entry came or went, or the pin moved: the teacher's controls list the entries anew once this run has
        # drawn the news. A whole-page run per new entry (thirty as a class starts) kept the projector behind.
        if not push.rerun_later(st.session_state.get("board_controls_at")):
            st.rerun(scope="app")
    best = bd.ranked(board)
    cols = st.columns(4)
    cols[0].metric("Students joined", board.members)
    cols[1].metric("Runs", len(board.entries))
    cols[2].metric("Training now", board.training())
    cols[3].metric("Best test accuracy", f"{best[0].test_acc:.1%}" if best else "–")
    if board.closed:
        st.info("This board is closed: it shows what the class did and takes nothing new.", icon=":material/lock:")
    pinned = board.entry(board.pinned)
    if pinned is not None:
        s = pinned.settings
        st.markdown(f":material/push_pin: **Pinned: #{pinned.number} {escape_markdown(pinned.nickname, line_start=False)}** · lr {s['lr']:g}, "
                    f"batch {s['batch_size']}, {pinned.epochs} epochs, momentum {s['momentum']:g}, weight decay {s['weight_decay']:g}, "
                    f"{s['schedule']} schedule, {s['softmax']} softmax · test accuracy "
                    + (f"{pinned.test_acc:.1%}" if not math.isnan(pinned.test_acc) else "not yet measured"))
    if not board.entries:
        st.markdown("No runs yet: they appear here after each student's first epoch.")
    else:
        if best:  # the charts show finished epochs: none yet while every run is in its first one
            left, right = st.columns(2)
            # The dicts go to Streamlit as they are (charts.as_figure): Plotly would validate or copy thirty entries'
            # traces every second; the tests check the dicts.
            left.plotly_chart(charts.as_figure(bd.scatter_figure(board, FONT)), key="board_scatter", config={"displaylogo": False})
            right.plotly_chart(charts.as_figure(bd.curves_figure(board, FONT)), key="board_curves", config={"displaylogo": False})
        else:
            st.markdown("The runs are in their first epoch: the charts come with the first finished one.")
        table(board)


def table(board: bd.Board) -> None:
    """Every entry, best first; sortable by any column."""
    frame = pd.DataFrame(bd.table_rows(board))
    config = {
        "#": st.column_config.NumberColumn(width="small"),
        "pinned": st.column_config.CheckboxColumn("pinned", width="small"),
        "test acc": st.column_config.NumberColumn(format="percent"),
        "best test acc": st.column_config.NumberColumn(format="percent"),
        "lr": st.column_config.NumberColumn(format="%g"),
        "weight decay": st.column_config.NumberColumn(format="%g"),
        "train loss": st.column_config.NumberColumn(format="%.4f"),
    }
    with st.container(key="board_table"):
        st.dataframe(frame, hide_index=True, column_config=config, row_height=ROW_HEIGHT, height=min(ROW_HEIGHT * (len(frame) + 1) + 3, 12 * ROW_HEIGHT))


def controls_signature(board: bd.Board) -> tuple:
    """What the teacher's controls show of the board: its entries' labels and the pin."""
    return board.pinned, tuple(entry_labels(board).items())


def entry_labels(board: bd.Board) -> dict[int, str]:
    """Each entry's number and how the teacher's entry list names it."""
    return {e.number: f"#{e.number} {e.nickname} (lr {e.settings['lr']:g}, batch {e.settings['batch_size']})" for e in board.entries}


def teacher_controls(store, code: str, key: str) -> None:
    """Pin an entry for everyone, remove one, or close the board (a fragment: the live area reruns it when entries change)."""
    st.session_state.board_controls_at = push.this_fragment()
    try:
        board = bd.read_board(store, code)
    except bd.BoardError:
        return  # the live area above says what went wrong
    if board.closed:
        return  # the live area reruns the whole page
    st.session_state.board_controls_for = controls_signature(board)
    if notice := st.session_state.pop("board_notice", ""):
        st.warning(notice)
    labels = entry_labels(board)
    numbers = list(labels)
    cols = st.columns([3, 1, 1, 1, 1], vertical_alignment="bottom")
    pick = cols[0].selectbox("Entry", numbers, format_func=labels.get, index=None, placeholder="choose an entry", key="board_pick")
    cols[1].button("Pin", icon=":material/push_pin:", key="board_pin", disabled=pick is None, on_click=act, args=(bd.pin, store, board.code, key, pick))
    cols[2].button("Unpin", key="board_unpin", disabled=not board.pinned, on_click=act, args=(bd.pin, store, board.code, key, 0))
    cols[3].button("Remove", icon=":material/delete:", key="board_remove", disabled=pick is None,
                   on_click=act, args=(bd.remove, store, board.code, key, pick))
    with cols[4].popover("Close board", icon=":material/lock:"):
        st.markdown("Closing keeps the board readable (and downloadable) but takes no new students or runs.")
        st.button("Close the board for good", key="board_close", type="primary", on_click=act, args=(bd.close_board, store, board.code, key))


def act(operation, *args) -> None:
    """Run a teacher operation from a button; its refusal is shown on the controls' next draw, its effect on the board's.

    (Rerunning the live area at once from here, st.rerun("board_live"), left the browser's entry list unable to
    send a new pick in Streamlit 1.67.)
    """
    try:
        operation(*args)
    except bd.BoardError as err:
        st.session_state.board_notice = str(err)
    st.session_state.board_pick = None  # set, not deleted: the browser's list then forgets the choice too (picking it again works)


through_the_entry_point()
main()
