"""Model inspector: the session's current model — its weights as images, why it predicts what it does for one test image,
confusion matrix, per-class accuracy, worst mistakes."""

from __future__ import annotations

import numpy as np
import pandas as pd
import streamlit as st

from softmax_core import SoftmaxRegression, accuracy, softmax
from ui import charts, explain, explain_step
from ui.controls import escape_markdown
from ui.data import dataset_or_help
from ui.session import Run, Session
from ui.state import get_session, presenter_css, through_the_entry_point

MISTAKE_COUNTS = (9, 18, 27, 36)


def main() -> None:
    """Draw the page for the session's current model, or say how to get one."""
    st.set_page_config(page_title="Model inspector", layout="wide")
    presenter = bool(st.session_state.get("presenter", False))
    presenter_css(presenter)
    st.title("Model inspector")
    session = get_session()
    if session.model is None or session.run is None:
        st.info(
            "No model yet. **Train a model on the Train page** (first entry in the sidebar), then come back: "
            "this page shows what it has learnt — its weights as images, its confusion matrix on the test set, "
            "its accuracy per class and its most confident mistakes.",
            icon=":material/model_training:",
        )
        return
    run = session.run
    dataset = dataset_or_help(run.setup.dataset)
    if dataset is None:
        return
    model = snapshot(session)
    names = dataset.class_names
    labels = np.asarray(dataset.test_labels, dtype=np.intp)
    logits = model.image_logits(dataset.test_images)  # (10000, 10), computed exactly as the trainer does
    test_acc = accuracy(logits, labels)
    status_banner(session, run, dataset.title, test_acc)
    weights_section(model, names, presenter)
    why_section(model, logits, dataset, presenter)
    predictions = logits.argmax(axis=1)
    confusion_section(explain.confusion_counts(labels, predictions, len(names)), names, test_acc, presenter)
    mistakes_section(softmax(logits), labels, dataset, presenter)


def snapshot(session: Session) -> SoftmaxRegression:
    """The parameters as after the last finished epoch (training goes on in the background meanwhile)."""
    return session.display_model.copy()


def status_banner(session: Session, run: Run, title: str, test_acc: float) -> None:
    """Which model this is: run, epochs, data set, and what to do when it is untrained or mid-training."""
    epochs = run.trained_epochs
    manual = explain_step.still_current(st.session_state.get("hil_manual"), run.id, session.state)  # the How it learns page's
    steps = f" + {manual.steps} manual step{'s' if manual.steps != 1 else ''}" if manual is not None and manual.steps else ""
    st.markdown(
        f"### Model of run {run.id} after {epochs} epoch{'s' if epochs != 1 else ''}{steps} · test accuracy {test_acc:.3f}\n"
        f"{title} · learning rate {run.config.lr:g} · batch {run.config.batch_size} · seed {run.setup.seed}"
        + (f" · {escape_markdown(run.label, line_start=False)}" if run.label else "")
    )
    if steps:
        st.caption(
            f"{'One manual SGD step was' if manual.steps == 1 else f'{manual.steps} manual SGD steps were'} applied on the "
            f"How it learns page after epoch {epochs}; they are not in the run's history."
        )
    if run.status == "ready" and epochs == 0:
        st.info(
            "This model is **untrained** (epoch 0): W is random noise, so the images below show no shapes and the "
            "test accuracy is about 1 in 10. **Train it on the Train page** to see the weights take the shape of each class.",
            icon=":material/info:",
        )
    elif session.job is not None:
        st.info(
            f"Run {run.id} is training in the background. This page shows the model after its last finished "
            f"epoch ({epochs}); open the page again to see a newer one.",
            icon=":material/pending:",
        )
    elif run.status == "diverged":
        st.warning(f"Run {run.id} diverged: {run.message}. Shown: the last finite parameters.", icon=":material/warning:")


def weights_section(model: SoftmaxRegression, names: tuple[str, ...], presenter: bool) -> None:
    """The ten columns of W as 28×28 images."""
    st.subheader("What each class looks for: the columns of W as images")
    st.caption(
        "A class's score is Σ pixel × weight + b. Blue pixels raise the score when they are bright (ink there speaks for "
        "the class), red pixels lower it; white is about 0. One colour scale for all ten."
    )
    st.plotly_chart(explain.weights_figure(model.W, names, height=520 if presenter else 400), key="mi_weights", config={"displaylogo": False})


@st.fragment  # picking another image reruns only this section
def why_section(model: SoftmaxRegression, logits: np.ndarray, dataset, presenter: bool) -> None:
    """One test image: each pixel's contribution x ⊙ W[:, c] to the logit of the predicted and the true class, and its probabilities."""
    st.subheader("Why this prediction")
    names, n = dataset.class_names, len(dataset.test_labels)
    cols = st.columns([1, 1, 4], vertical_alignment="bottom")
    index = int(cols[0].number_input("Test image", 0, n - 1, step=1, key="mi_image", persist_state="session",
                                     help=f"Its index in the test set, 0 to {n - 1:,}."))
    cols[1].button("Random", icon=":material/casino:", key="mi_random", on_click=pick_random, args=(n,), width="stretch")
    image, true = dataset.test_images[index], int(dataset.test_labels[index])
    scores = logits[index]  # (10,) model.image_logits, as the trainer scores the image
    probs = softmax(scores[None])[0]
    pred = int(np.argmax(scores))
    # A right prediction is compared with the runner-up: the class that came closest.
    other = true if pred != true else int(np.argsort(-scores, kind="stable")[1])
    other_role = "true class" if pred != true else "runner-up"
    verdict = "right" if pred == true else "wrong"
    cols[2].markdown(f"True class **{names[true]}**, predicted **{names[pred]}** ({verdict}, probability {probs[pred]:.3f}).")
    maps = {c: explain_step.contributions(image, model.W, c) for c in (pred, other)}
    panels = [
        (f"test image {index}\ntrue: {names[true]}", image, None),
        (f"x ⊙ W[:, c] for c = {names[pred]}\n(predicted)", maps[pred], 0),
        (f"x ⊙ W[:, c] for c = {names[other]}\n({other_role})", maps[other], 0),
    ]
    left, right = st.columns([3, 2])
    with left:
        st.caption(
            "A class's logit is the sum over the 784 pixels of x · W[:, c] (x = pixel / 255) plus b[c]. Blue pixels add to the "
            "logit, red ones take from it; pixels without ink (x = 0, black in the image) add nothing. One colour scale for both maps."
        )
        figure = charts.image_maps_figure(panels, ("contribution x · W[:, c] to the logit",), height=400 if presenter else 320,
                                          font_size=17 if presenter else 13)
        st.plotly_chart(figure, key="mi_why", config={"displaylogo": False})
    with right:
        bars = charts.probability_figure(probs, names, true, height=400 if presenter else 320, font_size=17 if presenter else None,
                                         title="softmax of the 10 logits")  # the verdict is written above the figures
        st.plotly_chart(charts.as_figure(bars), key="mi_why_probs", config={"displaylogo": False})
    rows = []
    for c, role in ((pred, "predicted"), (other, other_role)):
        total, bias, logit = explain_step.logit_parts(image, model.W, model.b, c)
        rows.append({"class": f"{names[c]} ({role})", "Σ x ⊙ W[:, c]": total, "b[c]": bias, "logit = Σ + b[c]": logit,
                     "model.image_logits (the trainer's)": float(scores[c])})
    st.dataframe(
        pd.DataFrame(rows).set_index("class"), key="mi_why_logits",
        column_config={key: st.column_config.NumberColumn(format="%.5f") for key in rows[0] if key != "class"},
    )


def pick_random(n: int) -> None:
    """Put a random test image in the index box: each click draws with its own seed, so a class sees the same sequence."""
    draw = int(st.session_state.get("mi_draws", 0)) + 1
    st.session_state.mi_draws = draw
    st.session_state.mi_image = explain_step.random_index(n, draw)


def confusion_section(counts: np.ndarray, names: tuple[str, ...], test_acc: float, presenter: bool) -> None:
    """Confusion matrix (counts) beside per-class accuracy, with the overall accuracy and the diagonal check."""
    st.subheader("Confusion matrix on the test set")
    total, correct = int(counts.sum()), int(np.trace(counts))
    with np.errstate(invalid="ignore"):  # a class with no test image: nan, as accuracy() gives
        per_class = counts.diagonal() / counts.sum(axis=1)
    height = 620 if presenter else 520
    left, right = st.columns([3, 2])
    with left:
        st.caption("Rows: the true class. Columns: the class predicted. The diagonal holds the correct predictions.")
        st.plotly_chart(explain.confusion_figure(counts, names, height), key="mi_confusion", config={"displaylogo": False})
    with right:
        cols = st.columns(2)
        cols[0].metric("Test accuracy", f"{test_acc:.4f}", help="softmax_core.accuracy on the 10,000 test images")
        cols[1].metric(f"Diagonal (of {total:,})", f"{correct:,}", help="Correct predictions: the diagonal's sum over all cells' sum is the test accuracy.")
        st.caption(f"Accuracy per true class (diagonal ÷ row sum): green at or above the overall {test_acc:.3f}, orange below.")
        st.plotly_chart(explain.per_class_figure(per_class, names, test_acc, height - 130), key="mi_per_class", config={"displaylogo": False})
    confusions = explain.top_confusions(counts, names)
    if confusions:
        st.markdown("**Most frequent mistakes** (true → predicted): " + " · ".join(confusions))


@st.fragment  # its two selectors rerun only this section, not the model's evaluation and the charts above
def mistakes_section(probs: np.ndarray, labels: np.ndarray, dataset, presenter: bool) -> None:
    """The test images the model gets wrong with the highest confidence."""
    st.subheader("The most confident mistakes")
    names = dataset.class_names
    cols = st.columns([1, 2, 3])
    count = cols[0].selectbox("How many", MISTAKE_COUNTS, key="mi_count", persist_state="session")
    klass = cols[1].selectbox(
        "True class", [None, *range(len(names))], key="mi_class", persist_state="session",
        format_func=lambda k: "all classes" if k is None else names[k],
    )
    indices = explain.confident_mistakes(probs, labels, int(count), klass)
    if not len(indices):
        st.info("No test image of this class is misclassified.")
        return
    predictions = probs[indices].argmax(axis=1)
    titles = [
        (names[labels[i]], f"{names[p]} {probs[i, p]:.3f}", False)
        for i, p in zip(indices, predictions)
    ]
    st.caption("Each image: its true class, then in red the class predicted with its softmax probability.")
    size, per_row = (130, 6) if presenter else (92, 9)
    st.html(charts.image_grid_html(dataset.test_images[indices], titles, size, per_row))


through_the_entry_point()
main()
