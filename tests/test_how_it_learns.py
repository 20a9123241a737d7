"""AppTest tests of the "How it learns" page (one SGD step up close) and the inspector's "Why this prediction".

The gold is softmax_core.reference, the lesson's code the page shows: "Next batch" must change the session's model
exactly as reference.train_epoch changes it on that one batch, taken in its order, and Reset steps must give the
model back. The inspector's pixel contributions must add up, with b, to the logit the trainer computes.

Until dashboard.py registers pages/how_it_learns.py, `open_page` runs the page file on its own with the browser
session's state (as a first visit to the page's URL would); once it is registered, through the navigation.
"""

from __future__ import annotations

import base64
import json
from dataclasses import replace

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

from softmax_core import DATASETS, TrainState, load_dataset, reference, softmax
from ui import explain_step
from ui.controls import escape_markdown

from .conftest import REPO

PAGE = "pages/how_it_learns.py"
INSPECTOR = "pages/model_inspector.py"
CARRIED = ("session", "lr", "batch_size", "epochs", "dataset", "seed", "sigma", "presenter", "hil_manual", "mi_draws")


class InOrder:
    """A stand-in for the generator of reference.train_epoch: its one epoch takes the images in the order given."""

    def permutation(self, n: int) -> np.ndarray:
        return np.arange(n)


@pytest.fixture
def env(data_root, monkeypatch) -> None:
    monkeypatch.setenv("SOFTMAX_DATA_DIR", str(data_root))
    monkeypatch.setenv("SOFTMAX_RUNS_DB", "off")


def no_exception(at: AppTest) -> None:
    assert not at.exception, [e.message for e in at.exception]


def train_page(dataset: str = "fashion-mnist") -> AppTest:
    """A new browser session on the Train page, with its untrained model of the data set."""
    at = AppTest.from_file(str(REPO / "dashboard.py"), default_timeout=60).run()
    no_exception(at)
    if dataset != "fashion-mnist":
        at.selectbox(key="dataset").set_value(dataset).run()
    at.run()  # the whole page, as the browser asks for it after the first paint
    no_exception(at)
    assert at.session_state.session.run.setup.dataset == dataset
    return at


def open_page(at: AppTest, page: str = PAGE) -> AppTest:
    """The page in this browser session: through the navigation when registered, else the page file with the session's state."""
    try:
        at.switch_page(page)
    except ValueError:  # not (yet) among dashboard.py's pages, or `at` is a page run on its own
        alone = AppTest.from_file(str(REPO / page), default_timeout=60)
        for key in CARRIED:
            if key in at.session_state:
                alone.session_state[key] = at.session_state[key]
        at = alone
    at.run()
    no_exception(at)
    return at


def train(at: AppTest, epochs: int) -> None:
    """Train a fresh model for some epochs on the Train page and wait for the workers to finish."""
    at.slider(key="epochs").set_value(epochs).run()
    at.button(key="train").click().run()
    no_exception(at)
    assert at.session_state.session.wait(120), "training did not finish"
    at.run()
    assert at.session_state.session.run.trained_epochs == epochs


def charts(at: AppTest) -> dict[str, dict]:
    return {el.key: json.loads(el.proto.spec) for el in at.get("plotly_chart")}


def array(value) -> np.ndarray:
    """A Plotly data array: a plain list, or a typed array {"dtype", "bdata", "shape"} (go.Figure's encoding)."""
    if isinstance(value, dict) and "bdata" in value:
        data = np.frombuffer(base64.b64decode(value["bdata"]), dtype=value["dtype"])
        return data.reshape([int(n) for n in str(value["shape"]).split(",")]) if value.get("shape") else data
    return np.asarray(value)


def panel(figure: dict, title_start: str) -> np.ndarray:
    """The (28, 28) values of the figure's map whose title starts so."""
    return np.asarray(next(t["z"] for t in figure["data"] if t["name"].startswith(title_start)), dtype=np.float64)


def texts(at: AppTest) -> str:
    return "\n".join([m.value for m in at.markdown] + [i.value for i in at.info] + [c.value for c in at.caption])


def frame_with(at: AppTest, column: str):
    return next(d.value for d in at.dataframe if column in d.value.columns)


def expected_step(dataset, state: TrainState, lr: float, batch_size: int, number: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(indices, W, b) after reference.train_epoch runs over batch `number` of the next epoch of this state, alone."""
    order = np.random.Generator(np.random.PCG64())
    order.bit_generator.state = state.rng_state
    indices = order.permutation(len(dataset.train_labels))[number * batch_size : (number + 1) * batch_size]
    W, b = state.W.copy(), state.b.copy()
    reference.train_epoch(dataset.train_images[indices], dataset.train_labels[indices], W, b,
                          [np.zeros_like(W), np.zeros_like(b)], InOrder(), lr, batch_size)
    return indices, W, b


@pytest.mark.parametrize("name", ["fashion-mnist", "mnist"])
def test_next_batch_is_one_reference_step_and_reset_gives_the_model_back(env, data_root, name):
    at = train_page(name)
    dataset = load_dataset(name, data_root, download=False)
    session = at.session_state.session
    records = list(session.run.records)
    original = session.state
    page = open_page(at)
    assert "Model of run 1 after 0 epochs" in texts(page) and "No manual step since the untrained model" in texts(page)
    lr, batch_size = at.session_state["lr"], at.session_state["batch_size"]
    assert (lr, batch_size) == (0.1, 256) and "Learning rate **0.1** (the sidebar's" in texts(page)

    # What the page shows for batch 1: the reference's scores, probabilities and losses of its first rows.
    indices, W1, b1 = expected_step(dataset, original, lr, batch_size, 0)
    X = dataset.train_images[indices].reshape(len(indices), -1).astype(np.float32) / 255
    y_hat = reference.net(X, original.W, original.b)
    probs = frame_with(page, "loss −log ŷ[y]")
    rows = len(probs)
    assert list(probs.columns[:10]) == list(DATASETS[name].class_names) and rows == 3
    np.testing.assert_array_equal(probs.iloc[:, :10].to_numpy(), y_hat[:rows])
    np.testing.assert_array_equal(probs["loss −log ŷ[y]"].to_numpy(), reference.cross_entropy(y_hat, dataset.train_labels[indices])[:rows])
    logits = frame_with(page, list(DATASETS[name].class_names)[0])  # the first table with class columns: the logits
    np.testing.assert_allclose(reference.softmax(logits.to_numpy().astype(np.float32)), y_hat[:rows], rtol=0, atol=1e-7)
    assert list(logits.index) == [f"#{i + 1} {DATASETS[name].class_names[dataset.train_labels[j]]}" for i, j in enumerate(indices[:rows])]

    # The gradient and update of the chosen class: W before and after are the model's and the reference's columns.
    figure = charts(page)["hil_update"]
    c = int(page.selectbox(key="hil_class").value)
    assert c == dataset.train_labels[indices[0]]  # first the class of the batch's first image
    np.testing.assert_array_equal(panel(figure, "W[:, c] before"), original.W[:, c].reshape(28, 28))
    np.testing.assert_array_equal(panel(figure, "W[:, c] after"), W1[:, c].reshape(28, 28))
    np.testing.assert_array_equal(panel(figure, "change"), (W1[:, c] - original.W[:, c]).reshape(28, 28))
    gradient = panel(figure, "gradient")
    np.testing.assert_allclose(-lr * gradient, (W1[:, c] - original.W[:, c]).reshape(28, 28), rtol=1e-3, atol=1e-9)
    b_table = next(d.value for d in page.dataframe if list(d.value.index) == ["b before", "∂L/∂b", "b after"])
    np.testing.assert_array_equal(b_table.loc["b before"].to_numpy(), original.b)
    np.testing.assert_array_equal(b_table.loc["b after"].to_numpy(), b1)

    # Next batch: exactly that update, nothing else of the training state, no record; then batch 2 from there.
    page.button(key="hil_next").click().run()
    no_exception(page)
    state = session.state
    np.testing.assert_array_equal(state.W, W1)
    np.testing.assert_array_equal(state.b, b1)
    assert state.rng_state == original.rng_state and state.epochs_done == original.epochs_done == 0
    assert session.run.records == records
    assert "1 manual step" in texts(page) and "batch 2 of 235" in texts(page)
    page.button(key="hil_next").click().run()
    _, W2, b2 = expected_step(dataset, state, lr, batch_size, 1)
    np.testing.assert_array_equal(session.state.W, W2)
    np.testing.assert_array_equal(session.state.b, b2)
    assert "2 manual steps" in texts(page) and "after 0 epochs + 2 manual steps" in texts(page)
    np.testing.assert_array_equal(session.model.W, W2)  # what the Train page and the inspector read

    # Reset steps: the model from before the manual steps, and the page back at batch 1.
    page.button(key="hil_reset").click().run()
    no_exception(page)
    np.testing.assert_array_equal(session.state.W, original.W)
    np.testing.assert_array_equal(session.state.b, original.b)
    assert session.state.rng_state == original.rng_state and session.run.records == records
    assert "No manual step" in texts(page) and "batch 1 of 235" in texts(page)
    assert page.button(key="hil_reset").disabled


def test_steps_after_training_show_on_the_inspector_and_end_with_the_next_epoch(env, fashion):
    at = train_page()
    train(at, 1)
    session = at.session_state.session
    trained = session.state
    page = open_page(at)
    assert "Model of run 1 after 1 epoch" in texts(page) and "No manual step since epoch 1" in texts(page)
    page.button(key="hil_next").click().run()
    _, W1, b1 = expected_step(fashion, trained, 0.1, 256, 0)
    np.testing.assert_array_equal(session.state.W, W1)
    np.testing.assert_array_equal(session.state.b, b1)
    assert session.state.epochs_done == 1 and len(session.run.records) == 2

    inspector = open_page(page, INSPECTOR)
    assert "after 1 epoch + 1 manual step" in texts(inspector)
    weights = charts(inspector)["mi_weights"]
    np.testing.assert_array_equal(array(weights["data"][4]["z"]).astype(np.float32), W1[:, 4].reshape(28, 28))

    # Another epoch (the Train page's Step) trains on from the stepped model: the manual steps are no longer pending.
    session.start(replace(session.run.config, epochs=1))
    assert session.wait(120), "training did not finish"
    np.testing.assert_raises(AssertionError, np.testing.assert_array_equal, session.state.W, W1)
    page = open_page(inspector)
    assert session.run.trained_epochs == 2
    assert "No manual step since epoch 2" in texts(page) and page.button(key="hil_reset").disabled


def test_while_training_the_step_is_on_the_last_finished_epoch_and_waits(env):
    at = train_page()
    at.slider(key="epochs").set_value(100).run()
    at.selectbox(key="pace").set_value("2 s per epoch").run()  # a job that lasts while the page is looked at
    at.button(key="train").click().run()
    session = at.session_state.session
    try:
        page = open_page(at)
        assert session.job is not None, "the job ended before the page was drawn"
        assert page.button(key="hil_next").disabled and page.button(key="hil_reset").disabled
        assert "is training in the background" in texts(page)
        shown, step = page.session_state["hil_shown"]
        assert isinstance(shown, TrainState) and shown.epochs_done <= session.state.epochs_done
        assert f"after {shown.epochs_done} epoch" in texts(page)
        c = int(page.selectbox(key="hil_class").value)
        np.testing.assert_array_equal(panel(charts(page)["hil_update"], "W[:, c] before"), shown.W[:, c].reshape(28, 28))
        if shown.epochs_done == session.state.epochs_done:  # no epoch finished since: the page drew the session's state
            assert shown is session.state
    finally:
        session.stop()
    assert session.wait(30) and session.run.status == "stopped"


def test_why_this_prediction_adds_up_to_the_logit(env, fashion):
    at = train_page()
    train(at, 1)
    inspector = open_page(at, INSPECTOR)
    model = at.session_state.session.model
    for index in (0, 42):
        inspector.number_input(key="mi_image").set_value(index).run()
        no_exception(inspector)
        check_why(inspector, fashion, model, index)
    inspector.button(key="mi_random").click().run()
    no_exception(inspector)
    drawn = explain_step.random_index(len(fashion.test_labels), 1)
    assert inspector.number_input(key="mi_image").value == drawn
    check_why(inspector, fashion, model, drawn)


def check_why(at: AppTest, dataset, model, index: int) -> None:
    """The maps are x ⊙ W[:, c] of the predicted and the true (or runner-up) class; each sums with b[c] to the model's logit."""
    names = dataset.class_names
    logits = model.image_logits(dataset.test_images)[index]  # as the trainer evaluates the test set
    pred, true = int(np.argmax(logits)), int(dataset.test_labels[index])
    other = true if pred != true else int(np.argsort(-logits, kind="stable")[1])
    figure = charts(at)["mi_why"]
    table = frame_with(at, "b[c]")
    assert list(table.index) == [f"{names[pred]} (predicted)", f"{names[other]} ({'true class' if pred != true else 'runner-up'})"]
    np.testing.assert_array_equal(np.asarray(figure["data"][0]["z"]), dataset.test_images[index])
    for row, (c, trace) in enumerate(zip((pred, other), figure["data"][1:])):
        contributions = np.asarray(trace["z"], dtype=np.float64)
        expected = (dataset.test_images[index].astype(np.float32) / 255) * model.W[:, c].reshape(28, 28)
        np.testing.assert_allclose(contributions, expected, rtol=1e-6, atol=0)
        shown_sum, shown_b, shown_logit, trainer = table.iloc[row].to_numpy()
        assert shown_b == float(model.b[c])
        assert contributions.sum() == pytest.approx(shown_sum, rel=1e-5, abs=1e-5)
        assert shown_sum + shown_b == pytest.approx(shown_logit, rel=1e-6, abs=1e-6)
        assert shown_logit == pytest.approx(float(logits[c]), rel=1e-5, abs=1e-5)  # float32 tolerance
        assert trainer == float(logits[c])
    bars = next(fig for key, fig in charts(at).items() if key == "mi_why_probs")
    np.testing.assert_allclose(array(bars["data"][0]["y"]), softmax(logits), rtol=1e-6)


def test_a_run_label_is_shown_as_text_not_markdown(env):
    at = train_page()
    session = at.session_state.session
    session.run.label = "from [click](http://evil.example) *x*.npz"
    inspector = open_page(at, INSPECTOR)
    banner = next(m.value for m in inspector.markdown if m.value.startswith("### Model of run"))
    assert escape_markdown(session.run.label, line_start=False) in banner and "](http" not in banner
    page = open_page(at)
    assert escape_markdown(session.run.label, line_start=False) in texts(page)
