"""Softmax explorer: the lesson's softmax on a random 2×5 matrix, temperature, overflow, and cross-entropy."""

from __future__ import annotations

import numpy as np
import pandas as pd
import streamlit as st

from softmax_core import accuracy, cross_entropy, naive_softmax, softmax
from ui import explain
from ui.state import presenter_css, through_the_entry_point

TEMPERATURES = (0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0)
SCALES = (1, 10, 50, 100, 1000)
LESSON_Y_HAT = ((0.1, 0.3, 0.6), (0.3, 0.2, 0.5))  # the lesson's example predictions for 3 classes
LESSON_Y = (0, 2)
CHAR_PX = 8.5  # the data grid's digits are about this wide (14 px font): a column's width per character


def main() -> None:
    """Draw the page: a random matrix and its softmax, the overflow demo, then cross-entropy."""
    st.set_page_config(page_title="Softmax explorer", layout="wide")
    presenter_css(bool(st.session_state.get("presenter", False)))
    st.title("Softmax explorer")
    st.markdown(
        "Softmax turns any row of scores (*logits*) into probabilities: exponentiate every entry, "
        "then divide by the row's sum, so each row is non-negative and sums to 1."
    )
    st.latex(r"\operatorname{softmax}(\mathbf{X})_{ij} = \frac{\exp(\mathbf{X}_{ij})}{\sum_k \exp(\mathbf{X}_{ik})}")
    X, T = random_matrix()
    temperature_section(X, T)
    overflow_section(X)
    cross_entropy_section()


def new_draw() -> None:
    st.session_state.sx_seed = int(st.session_state.get("sx_seed", 0)) + 1


def random_matrix() -> tuple[np.ndarray, float]:
    """The lesson's X = normal(0, 1, (2, 5)) from the chosen seed (float32 like the model's logits), and the temperature."""
    st.subheader("A random 2 × 5 matrix and its softmax")
    st.session_state.setdefault("sx_seed", 0)
    cols = st.columns([1.2, 1.2, 4], vertical_alignment="bottom", gap="medium")
    seed = cols[0].number_input("Seed", 0, 2**31 - 1, step=1, key="sx_seed", persist_state="session", help="The same seed gives the same matrix.")
    cols[1].button("New draw", icon=":material/casino:", key="sx_new", on_click=new_draw, width="stretch")
    T = cols[2].select_slider(
        "Temperature T (the logits are divided by T)", TEMPERATURES, value=1.0, key="sx_temp", persist_state="session",
        help="Small T sharpens the distribution towards the largest logit (argmax); large T flattens it towards uniform.",
    )
    return np.random.default_rng(int(seed)).normal(0.0, 1.0, size=(2, 5)).astype(np.float32), float(T)


def temperature_section(X: np.ndarray, T: float) -> None:
    """X / T, exp(X / T) with each row's sum, and softmax(X / T) with each row's sum (always 1)."""
    Z = X / np.float32(T)
    probs = softmax(Z)  # (2, 5)
    with np.errstate(over="ignore"):
        exp = np.exp(Z)
    # The lesson's three steps, one table under the other with the same column widths, so the columns line up;
    # the page's full width, so that no column is cut at T = 0.1 (exp reaches 10⁵ and more).
    number_tables((
        ("**X** (logits)" if T == 1 else f"**X / {T:g}** (logits)", explain.matrix_frame(Z)),
        ("**exp(X)**, and each row's sum Σ (the partition)", explain.matrix_frame(exp, sums="Σ")),
        ("**softmax(X)** = exp(X) / Σ: each row sums to 1", explain.matrix_frame(probs, sums="row sum")),
    ))
    st.plotly_chart(explain.probability_bars(probs, f"softmax(X / {T:g}), row by row", height=330), key="sx_bars", config={"displaylogo": False})
    sums = probs.sum(axis=1)
    st.caption(
        f"Row sums of softmax: {', '.join(f'{s:.6f}' for s in sums)} (float32 rounding aside, exactly 1). "
        "The largest probability is always at the largest logit, whatever T: softmax keeps the order."
    )


def number_text(value: float) -> str:
    """A table cell that hides no digit before the decimal point: '460,469', '37.1867'; e-notation from 1e9 and below 1e-3."""
    if not np.isfinite(value):
        return "nan" if np.isnan(value) else ("inf" if value > 0 else "-inf")
    size = abs(value)
    if value == 0 or 1e-3 <= size < 1e9:
        return f"{value:,.{4 if size < 1000 else 0}f}"
    return f"{value:.3e}"


def number_tables(tables: tuple[tuple[str, pd.DataFrame], ...]) -> None:
    """Titled numeric tables, cells written by number_text, the i-th columns of all as wide as the longest cell among them.

    The grid measures its columns once and keeps those widths when the numbers change (T = 1 to T = 0.1 turns
    1.2573 into 460,469), cutting off the leading digits: so the widths are set here, from the text.
    """
    n_columns = max(len(frame.columns) for _, frame in tables)
    chars = [0] * n_columns
    for _, frame in tables:
        for i, column in enumerate(frame.columns):
            chars[i] = max(chars[i], len(column), *(len(number_text(v)) for v in frame[column]))
    for title, frame in tables:
        st.markdown(title)
        st.dataframe(
            frame.style.format(number_text), width="content",
            column_config={c: st.column_config.NumberColumn(width=int(CHAR_PX * chars[i] + 24)) for i, c in enumerate(frame.columns)},
        )


def overflow_section(X: np.ndarray) -> None:
    """The naive formula against the stable one (which subtracts each row's maximum first) on large logits."""
    st.subheader("Large logits: the naive formula overflows, the stable one does not")
    st.markdown(
        f"In float32, `exp(x)` is `inf` once x > ln(3.4·10³⁸) ≈ {explain.FLOAT32_EXP_LIMIT:.1f}. "
        "The stable softmax uses softmax(x) = softmax(x − max x): the largest entry becomes exp(0) = 1 and nothing overflows."
    )
    scale = st.select_slider("Multiply the matrix by", SCALES, value=100, key="sx_scale", persist_state="session", format_func=lambda s: f"×{s}")
    big = X * np.float32(scale)  # float32, like the model's logits
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        naive = naive_softmax(big)
        naive_sums = np.exp(big).sum(axis=1)
    stable = softmax(big)
    tables, notes_area = st.columns([3, 2])
    with tables:  # stacked, so a naive cell sits right above the stable one
        st.markdown(f"**{scale} · X** (float32 logits)")
        st.dataframe(explain.text_frame(big), width="stretch", key="sx_big")
        st.markdown("**Naive**: exp(X) / Σ exp(X)")
        st.dataframe(explain.text_frame(naive, sums=naive_sums, sums_label="Σ exp"), width="stretch", key="sx_naive")
        st.markdown("**Stable**: exp(X − max) / Σ exp(X − max)")
        st.dataframe(explain.text_frame(stable, sums=stable.sum(axis=1)), width="stretch", key="sx_stable")
    broken = ~np.isfinite(naive).all(axis=1)
    notes = explain.overflow_notes(big)
    with notes_area:
        st.write("")  # line the boxes up with the tables
        if broken.any():  # only the rows that overflow are the error
            for row_broken, note in zip(broken, notes):
                (st.error if row_broken else st.info)(note, icon=":material/warning:" if row_broken else ":material/info:")
        else:
            st.info("\n\n".join(notes) + "\n\nTry a larger factor or a new draw to see the overflow.", icon=":material/info:")
        st.success(
            "The stable softmax is finite in every row and each row sums to 1. The Train page's advanced settings "
            "can train with the naive one: at large learning rates it diverges for exactly this reason.",
            icon=":material/check_circle:",
        )


def cross_entropy_section() -> None:
    """Cross-entropy as 'pick the true class's probability, take -log', on an example the user can edit."""
    st.subheader("Cross-entropy: pick the true class's probability, take −log")
    st.latex(r"\ell(\hat{\mathbf{y}}, y) = -\log \hat{y}_{y}")
    st.markdown("Each row is a prediction ŷ over 3 classes, and `y` is the true class. Edit any cell (the lesson's example to start with).")
    start = pd.DataFrame(LESSON_Y_HAT, columns=["ŷ class 0", "ŷ class 1", "ŷ class 2"])
    start["true class y"] = LESSON_Y
    probability = st.column_config.NumberColumn(min_value=0.0, max_value=1.0, step=0.01, format="%.2f")
    edited = st.data_editor(
        start, key="sx_ce", num_rows="dynamic", hide_index=True, width="stretch",
        column_config={
            **{c: probability for c in start.columns[:3]},
            "true class y": st.column_config.NumberColumn(min_value=0, max_value=2, step=1, format="%d"),
        },
    )
    rows = edited.dropna()
    if rows.empty:
        st.info("Add a row with three probabilities and a true class.")
        return
    y_hat = rows.iloc[:, :3].to_numpy(dtype=np.float64)
    y = rows.iloc[:, 3].to_numpy().astype(np.intp)
    totals = y_hat.sum(axis=1)
    if (totals <= 0).any():
        st.warning("Each row needs at least one positive probability.")
        return
    if not np.allclose(totals, 1.0, atol=1e-6):
        st.warning(
            f"Row sums are {', '.join(f'{t:.2f}' for t in totals)}, not 1: a prediction must be a probability distribution. "
            "Below, each row is divided by its sum first."
        )
    # log ŷ are logits whose softmax is ŷ (normalised): the core's cross-entropy is then exactly -log ŷ[y].
    with np.errstate(divide="ignore"):
        logits = np.log(y_hat)
    losses = cross_entropy(logits, y)
    normalised = softmax(logits)
    picked = normalised[np.arange(len(y)), y]
    table = pd.DataFrame({
        "true class y": y,
        "ŷ[y] (picked)": picked,
        "loss −log ŷ[y]": losses,
        "predicted class (argmax)": normalised.argmax(axis=1),
    })
    table["correct"] = table["predicted class (argmax)"] == y
    left, right = st.columns([3, 1])
    left.dataframe(table, width="stretch", hide_index=True, key="sx_ce_table", column_config={
        "ŷ[y] (picked)": st.column_config.NumberColumn(format="%.4f"),
        "loss −log ŷ[y]": st.column_config.NumberColumn(format="%.4f"),
    })
    right.metric("Mean loss", f"{float(np.mean(losses)):.4f}", help="What training minimises: the mean over the rows.")
    right.metric("Accuracy", f"{accuracy(normalised, y):.3f}", help="The fraction of rows whose largest probability is at the true class.")
    st.caption("A confident right answer (ŷ[y] near 1) costs almost nothing; a confident wrong one (ŷ[y] near 0) costs a lot: −log 0.01 ≈ 4.6, −log 0 = ∞.")


through_the_entry_point()
main()
