"""How it learns: the lesson's code beside one minibatch SGD step on the session's current model, taken apart.

"Next batch" applies exactly the step shown to the session's model (no epoch record is added); "Reset steps"
puts back the model from before the manual steps. Training itself happens on the Train page, in the workers.
"""

from __future__ import annotations

import inspect

import numpy as np
import pandas as pd
import streamlit as st

from softmax_core import Dataset, TrainConfig, reference
from ui import charts, explain, explain_step
from ui.controls import BATCH_SIZES, LEARNING_RATES, chosen_setup, escape_markdown
from ui.data import dataset_or_help, epoch_zero
from ui.session import Run, Session
from ui.state import get_session, presenter_css, through_the_entry_point

MANUAL = "hil_manual"  # this tab's explain_step.ManualSteps, while the session holds the state they left
SHOWN = "hil_shown"  # (state, step) last drawn: what "Next batch" applies
MESSAGE = "hil_message"  # a note from a button's callback, shown once
ROW_COUNTS = (3, 5, 8)
TRUE_CELL = "background-color: rgba(0,150,70,0.22); font-weight: 600"


def main() -> None:
    """Draw the code and the step on the session's current model (an untrained one first, if the tab has none)."""
    st.set_page_config(page_title="How it learns", layout="wide")
    presenter = bool(st.session_state.get("presenter", False))
    presenter_css(presenter)
    st.title("How it learns: one SGD step up close")
    session = get_session()
    if session.run is None or session.state is None:
        setup = chosen_setup()
        dataset = dataset_or_help(setup.dataset)
        if dataset is None:
            return
        # The Train page's untrained model of the chosen setup, so the lesson can start here.
        session.new_model(dataset, setup, TrainConfig(), initial=epoch_zero(setup))
    run, state = session.run, session.state  # one state for the whole page: training may replace session.state meanwhile
    dataset = dataset_or_help(run.setup.dataset)
    if dataset is None:
        return
    manual = explain_step.still_current(st.session_state.get(MANUAL), run.id, state)
    steps = manual.steps if manual is not None else 0
    training = session.job is not None
    lr, lr_source = chosen(run, "lr", run.config.lr, LEARNING_RATES)
    batch_size, batch_source = chosen(run, "batch_size", run.config.batch_size, BATCH_SIZES)
    order = explain_step.epoch_order(state.rng_state, len(dataset.train_labels))
    indices = explain_step.batch_indices(order, batch_size, steps)
    step = explain_step.one_step(dataset.train_images, dataset.train_labels, indices, state.W, state.b, lr)
    st.session_state[SHOWN] = (state, step)

    banner(run, dataset, steps, training, lr, lr_source, batch_size, batch_source)
    code_column, step_column = st.columns([3, 2], gap="medium")
    with code_column:
        code_section(presenter)
    with step_column:
        buttons(session, run, step, steps, training)
        batch_section(dataset, step, steps, batch_size, presenter)
    rows_section(dataset.class_names, step)
    update_section(dataset.class_names, step, presenter)


def chosen(run: Run, key: str, of_run: float, allowed: tuple) -> tuple[float, str]:
    """A hyperparameter as the Train page's sidebar holds it (what Continue would use), else the run's, and which it is."""
    value = st.session_state.get(key)
    if value in allowed:
        if value == of_run:
            return value, f"the sidebar's, as run {run.id} used it"
        return value, f"the sidebar's; run {run.id} last used {of_run:g}"
    return of_run, f"run {run.id}'s; the Train page's sidebar can change it"


def banner(run: Run, dataset: Dataset, steps: int, training: bool, lr: float, lr_source: str, batch_size: int, batch_source: str) -> None:
    """Which model the step is taken on, with which learning rate and batch size, and why the buttons may wait."""
    epochs = run.trained_epochs
    manual = f" + {steps} manual step{'s' if steps != 1 else ''}" if steps else ""
    label = f" · {escape_markdown(run.label, line_start=False)}" if run.label else ""
    st.markdown(
        f"**Model of run {run.id} after {epochs} epoch{'s' if epochs != 1 else ''}{manual}** · {dataset.title}{label}  \n"
        f"Learning rate **{lr:g}** ({lr_source}) · batch size **{batch_size}** ({batch_source})"
    )
    if training:
        st.info(
            f"Run {run.id} is training in the background: this is the step on its model after the last finished epoch "
            f"({epochs}). Next batch and Reset steps wait until the training stops or finishes.",
            icon=":material/pending:",
        )
    elif epochs == 0 and not steps:
        st.caption("The model is untrained (W is random noise): watch the first steps pull each class's weights towards its images.")
    if run.config.momentum or run.config.weight_decay:
        st.caption(
            f"Run {run.id} trains with momentum {run.config.momentum:g} and weight decay {run.config.weight_decay:g}; "
            "this page shows the lesson's plain step without them."
        )


def code_section(presenter: bool) -> None:
    """softmax_core.reference as it is (its own source, so the page cannot drift from it), with the step's lines named."""
    source = inspect.getsource(reference)
    st.markdown("**The lesson's code:** `softmax_core/reference.py` (the trainer computes exactly this, only faster)")
    st.code(source, language="python", line_numbers=True, wrap_lines=True, height=760 if presenter else 540)
    lines = source.splitlines()
    first = next((i for i, line in enumerate(lines, 1) if line.strip().startswith("for start in range")), None)
    last = next((i for i, line in enumerate(lines, 1) if line.strip().startswith("sgd([W, b]")), None)
    where = f" (lines {first}–{last})" if first and last else ""
    st.caption(
        f"The step beside is one turn of train_epoch's loop{where} on one batch, with momentum and weight decay 0. "
        "Every number on this page is computed by these functions."
    )


def buttons(session: Session, run: Run, step: explain_step.Step, steps: int, training: bool) -> None:
    """Next batch (apply the step shown), Reset steps, and how many manual steps the model has had."""
    finite = bool(np.isfinite(step.W_after).all() and np.isfinite(step.b_after).all())
    with st.container(horizontal=True, vertical_alignment="center"):
        st.button(
            "Next batch", key="hil_next", type="primary", icon=":material/skip_next:",
            disabled=training or not finite, on_click=apply_step, args=(session,),
            help="Apply this step's update to the model (W ← W − lr·∂L/∂W, b ← b − lr·∂L/∂b), then show the next batch.",
        )
        st.button(
            "Reset steps", key="hil_reset", icon=":material/undo:", disabled=training or not steps,
            on_click=reset_steps, args=(session,), help="Put the model back as it was before the manual steps.",
        )
    since = f"epoch {run.trained_epochs}" if run.trained_epochs else "the untrained model"
    if steps:
        st.markdown(
            f"**{steps} manual step{'s' if steps != 1 else ''}** applied since {since}: not in the run's history; "
            "the Train page, the inspector and Continue use this model."
        )
    else:
        st.markdown(f"No manual step since {since}: Next batch applies the step below and moves on to the next batch.")
    if message := st.session_state.pop(MESSAGE, None):
        st.warning(message, icon=":material/info:")
    if not finite:
        st.warning(f"This step would make W or b infinite or NaN at learning rate {step.lr:g}: choose a smaller one on the Train page.")


def apply_step(session: Session) -> None:
    """Put the step last drawn into the session's model, if that model is still the one it was drawn on."""
    shown = st.session_state.get(SHOWN)
    state = session.state
    if session.job is not None or shown is None or shown[0] is not state or session.run is None:
        st.session_state[MESSAGE] = "The model changed since this step was drawn, so nothing was applied: this is the step on the current model."
        return
    step = shown[1]
    manual = explain_step.still_current(st.session_state.get(MANUAL), session.run.id, state)
    if manual is None:
        manual = explain_step.ManualSteps(session.run.id, origin=state, current=state)
    new_state = explain_step.after(state, step)
    session.state = new_state
    manual.current, manual.steps = new_state, manual.steps + 1
    st.session_state[MANUAL] = manual
    session.cache.clear()  # the Train page's drawings of the model before the step


def reset_steps(session: Session) -> None:
    """Put back the model from before the manual steps (only while the session still holds what they left)."""
    manual = explain_step.still_current(st.session_state.pop(MANUAL, None), session.run.id if session.run else None, session.state)
    if manual is None or session.job is not None:
        st.session_state[MESSAGE] = "The model changed since the manual steps (an epoch finished or a new run started): there is nothing to reset."
        return
    session.state = manual.origin
    session.cache.clear()


def batch_section(dataset: Dataset, step: explain_step.Step, steps: int, batch_size: int, presenter: bool) -> None:
    """The batch's images with their labels (the first ones of a large batch)."""
    n = len(dataset.train_labels)
    count = explain_step.batch_count(n, batch_size)
    k = len(step.indices)
    st.markdown(
        f"**1 · The batch:** batch {steps % count + 1} of {count} of the next epoch, {k} training images in the order "
        "the trainer's random generator will take them"
    )
    shown = min(k, 12 if presenter else 16)
    captions = [f"#{i + 1} {dataset.class_names[step.y[i]]}" for i in range(shown)]
    size = 84 if presenter else 54
    st.html(explain.captioned_grid_html(dataset.train_images[step.indices[:shown]], captions, size, per_row=shown if shown <= 8 else 8))
    if shown < k:
        st.caption(f"The first {shown} of the batch's {k} images; the step uses all {k}.")


def rows_section(names: tuple[str, ...], step: explain_step.Step) -> None:
    """Logits, softmax probabilities and loss of the batch's first rows; the batch's mean loss before and after."""
    st.subheader("2 · Scores, probabilities and loss")
    cols = st.columns([1, 5], vertical_alignment="bottom")
    rows = min(int(cols[0].selectbox("Rows shown", ROW_COUNTS, key="hil_rows", persist_state="session")), len(step.y))
    cols[1].caption("The batch's first images, as numbered above; each row's true class is highlighted.")
    index = [f"#{i + 1} {names[step.y[i]]}" for i in range(rows)]
    logits = pd.DataFrame(step.logits[:rows].astype(np.float64), index=index, columns=list(names))
    probs = pd.DataFrame(step.probs[:rows].astype(np.float64), index=index, columns=list(names))
    probs["loss −log ŷ[y]"] = step.losses[:rows].astype(np.float64)
    true = step.y[:rows]

    def highlight(frame: pd.DataFrame) -> pd.DataFrame:
        marks = pd.DataFrame("", index=frame.index, columns=frame.columns)
        for r, label in enumerate(true):
            marks.iloc[r, int(label)] = TRUE_CELL
        return marks

    st.caption("o = x W + b (logits)")
    st.dataframe(logits.style.format("{:.3f}").apply(highlight, axis=None), key="hil_logits")
    st.caption("ŷ = softmax(o) and each row's loss")
    st.dataframe(probs.style.format("{:.3f}").apply(highlight, axis=None), key="hil_probs")
    cols = st.columns(3)
    cols[0].metric("Batch loss before the step", f"{step.loss:.4f}", help="Mean of reference.cross_entropy over the whole batch")
    cols[1].metric("Same batch after the step", f"{step.loss_after:.4f}", f"{step.loss_after - step.loss:+.4f}", delta_color="inverse",
                   help="The same batch's mean loss under the updated W and b")
    cols[2].metric("Right before the step", f"{step.correct} / {len(step.y)}", help="reference.accuracy on the batch")


def update_section(names: tuple[str, ...], step: explain_step.Step, presenter: bool) -> None:
    """For one class: the gradient of W as an image, W before and after the update, and b for every class."""
    st.subheader("3 · The gradient and the update, for one class")
    cols = st.columns([1, 3], vertical_alignment="bottom")
    if "hil_class" not in st.session_state:  # first the class of the batch's first image
        st.session_state.hil_class = int(step.y[0])
    c = cols[0].selectbox("Class", range(len(names)), format_func=lambda k: names[k], key="hil_class")
    cols[1].caption(
        f"∂L/∂W[:, c] = Σ over the batch of x · (ŷ[c] − [y = c]) / k. Each {names[c]} image of the batch pulls its "
        f"pixels' weights up (red in the gradient), each other image that got some probability for {names[c]} pushes its pixels' "
        f"weights down (blue). The update W ← W − {step.lr:g} · ∂L/∂W moves against the gradient."
    )
    grad = step.grad_W[:, c]
    panels = [
        (f"gradient ∂L/∂W[:, c]\nc = {names[c]}", grad, 0),
        ("W[:, c]\nbefore the step", step.W_before[:, c], 1),
        ("W[:, c]\nafter the step", step.W_after[:, c], 1),
        (f"change: after − before\n= −{step.lr:g} · gradient", step.W_after[:, c] - step.W_before[:, c], 2),
    ]
    figure = charts.image_maps_figure(panels, ("gradient", "weight", "change"), height=470 if presenter else 330,
                                      font_size=17 if presenter else 13)
    st.plotly_chart(figure, key="hil_update", config={"displaylogo": False})
    b = pd.DataFrame(
        [step.b_before, step.grad_b, step.b_after], index=["b before", "∂L/∂b", "b after"], columns=list(names),
    ).astype(np.float64)
    st.caption(f"b ← b − {step.lr:g} · ∂L/∂b, where ∂L/∂b[c] = Σ over the batch of (ŷ[c] − [y = c]) / k: every class at once.")
    st.dataframe(b.style.format("{:+.5f}"), key="hil_b")


through_the_entry_point()
main()
