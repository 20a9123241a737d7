"""AppTest tests of the softmax explorer, model inspector and data explorer, before and after training.

With a `pages/` folder, `at.switch_page("pages/x.py")` runs the page file without dashboard.py (as a first
visit to a sub-page URL does on a fresh server), so these tests also check that every page stands alone.
"""

from __future__ import annotations

import base64
import json
import math

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

from softmax_core import DATASETS

from .conftest import REPO

PAGES = ("pages/softmax_explorer.py", "pages/model_inspector.py", "pages/data_explorer.py")


def new_app() -> AppTest:
    return AppTest.from_file(str(REPO / "dashboard.py"), default_timeout=60)


@pytest.fixture
def env(data_root, monkeypatch) -> None:
    monkeypatch.setenv("SOFTMAX_DATA_DIR", str(data_root))
    monkeypatch.setenv("SOFTMAX_RUNS_DB", "off")  # no run persistence


@pytest.fixture(scope="module")
def trained(data_root) -> AppTest:
    """One session that has trained the lesson's model for 5 epochs on the Train page (shared by the tests)."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("SOFTMAX_DATA_DIR", str(data_root))
        mp.setenv("SOFTMAX_RUNS_DB", "off")
        at = new_app().run()
        at.button(key="train").click().run()
        no_exception(at)
        assert at.session_state.session.wait(60), "training did not finish"  # it runs in the background
        at.run()
        assert at.session_state.session.run.trained_epochs == 5
        yield at


def no_exception(at: AppTest) -> None:
    assert not at.exception, [e.message for e in at.exception]


def charts(at: AppTest) -> dict[str, dict]:
    """The page's Plotly figures by key."""
    return {el.key: json.loads(el.proto.spec) for el in at.get("plotly_chart")}


def array(value) -> np.ndarray:
    """A Plotly data array: a plain list, or a typed array {"dtype", "bdata", "shape"}."""
    if isinstance(value, dict) and "bdata" in value:
        data = np.frombuffer(base64.b64decode(value["bdata"]), dtype=value["dtype"])
        shape = value.get("shape")
        return data.reshape([int(n) for n in str(shape).split(",")]) if shape else data
    return np.asarray(value)


def texts(at: AppTest) -> str:
    return "\n".join([m.value for m in at.markdown] + [i.value for i in at.info] + [c.value for c in at.caption])


def frames_with(at: AppTest, column: str) -> list:
    """The page's tables (DataFrames) that have the given column, in page order."""
    return [d.value for d in at.dataframe if column in d.value.columns]


@pytest.mark.parametrize("page", PAGES)
def test_each_page_opens_in_a_fresh_session(env, page):
    at = new_app()
    at.switch_page(page).run()
    no_exception(at)
    assert at.title[0].value in ("Softmax explorer", "Model inspector", "Data explorer")


def test_inspector_without_a_model_says_to_train(env):
    at = new_app()
    at.switch_page("pages/model_inspector.py").run()
    no_exception(at)
    assert "Train a model on the Train page" in at.info[0].value
    assert not at.get("plotly_chart")


def test_inspector_shows_the_untrained_model_as_such(env):
    at = new_app().run()  # the Train page creates an untrained model (status "ready")
    at.switch_page("pages/model_inspector.py").run()
    no_exception(at)
    assert "Model of run 1 after 0 epochs" in texts(at)
    assert "untrained" in texts(at)
    assert len(charts(at)["mi_weights"]["data"]) == 10


def test_inspector_after_training(trained):
    at = trained
    at.switch_page("pages/model_inspector.py").run()
    no_exception(at)
    session = at.session_state.session
    test_acc = session.run.records[-1].test_acc
    assert "Model of run 1 after 5 epochs" in texts(at)
    figures = charts(at)
    weights = figures["mi_weights"]
    assert len(weights["data"]) == 10
    assert all(array(t["z"]).shape == (28, 28) for t in weights["data"])
    np.testing.assert_allclose(array(weights["data"][3]["z"]), session.model.W[:, 3].reshape(28, 28), rtol=1e-6)
    assert [a["text"] for a in weights["layout"]["annotations"]] == list(DATASETS["fashion-mnist"].class_names)
    confusion = np.asarray(figures["mi_confusion"]["data"][0]["z"])
    assert confusion.shape == (10, 10)
    assert confusion.sum() == 10000
    assert np.trace(confusion) == round(test_acc * 10000)
    assert next(m.value for m in at.metric if m.label == "Test accuracy") == f"{test_acc:.4f}"
    per_class = array(figures["mi_per_class"]["data"][0]["x"])
    np.testing.assert_allclose(per_class, np.diag(confusion) / confusion.sum(axis=1))
    grid = next(h.proto.body for h in at.get("html") if "<figure" in h.proto.body)
    assert grid.count("<figure") == 9 and grid.count("✗") == 9 and "✓" not in grid


def test_inspector_mistakes_of_one_class(trained):
    at = trained
    at.switch_page("pages/model_inspector.py").run()
    at.selectbox(key="mi_class").set_value(6).run()  # Shirt: the class with the most mistakes
    at.selectbox(key="mi_count").set_value(18).run()
    no_exception(at)
    grid = next(h.proto.body for h in at.get("html") if "<figure" in h.proto.body)
    assert grid.count("<figure") == 18
    assert grid.count("Shirt<br>") == 18  # every caption starts with the true class


def test_softmax_explorer(trained):
    at = trained
    at.switch_page("pages/softmax_explorer.py").run()
    no_exception(at)
    assert "softmax" in at.latex[0].value
    probs, stable = frames_with(at, "row sum")  # softmax(X) at T = 1, then the stable softmax of 100·X
    np.testing.assert_allclose(probs["row sum"], 1.0, rtol=1e-6)
    assert (probs.drop(columns="row sum").to_numpy() > 0).all()
    (naive,) = frames_with(at, "Σ exp")
    naive_cells = set(naive.drop(columns="Σ exp").to_numpy().ravel())
    assert naive_cells & {"nan", "inf"}, naive
    assert "inf" in set(naive["Σ exp"])
    stable_values = stable.drop(columns="row sum").to_numpy().astype(float)
    assert np.isfinite(stable_values).all()
    np.testing.assert_allclose(stable["row sum"].astype(float), 1.0, atol=1e-4)
    assert at.error, "the overflow is explained"
    # The lesson's cross-entropy example: -log 0.1 and -log 0.5, accuracy 1/2.
    (ce,) = frames_with(at, "loss −log ŷ[y]")
    np.testing.assert_allclose(ce["loss −log ŷ[y]"], [-math.log(0.1), -math.log(0.5)], rtol=1e-6)
    assert next(m.value for m in at.metric if m.label == "Accuracy") == "0.500"


def test_softmax_explorer_temperature_draw_and_persistence(env):
    at = new_app()
    at.switch_page("pages/softmax_explorer.py").run()
    before = at.dataframe[0].value.to_numpy()
    at.select_slider(key="sx_temp").set_value(0.1).run()
    sharp = frames_with(at, "row sum")[0]
    np.testing.assert_allclose(sharp["row sum"], 1.0, rtol=1e-6)
    assert sharp.drop(columns="row sum").to_numpy().max(axis=1).min() > 0.9  # T = 0.1: nearly one-hot
    at.button(key="sx_new").click().run()
    no_exception(at)
    assert at.number_input(key="sx_seed").value == 1
    assert not np.allclose(at.dataframe[0].value.to_numpy() * 0.1, before, atol=1e-3)  # a new matrix (shown as X / 0.1)
    at.switch_page("pages/data_explorer.py").run()
    at.run()
    at.switch_page("pages/softmax_explorer.py").run()
    assert at.select_slider(key="sx_temp").value == 0.1  # persist_state="session" survives the page switch
    assert at.number_input(key="sx_seed").value == 1


def test_data_explorer(trained):
    at = trained
    at.switch_page("pages/data_explorer.py").run()
    no_exception(at)
    counts = charts(at)["dx_counts"]["data"]
    train = next(t for t in counts if t["name"] == "train")
    test = next(t for t in counts if t["name"] == "test")
    assert array(train["y"]).tolist() == [6000] * 10
    assert array(test["y"]).tolist() == [1000] * 10
    rows = next(h.proto.body for h in at.get("html") if "Ankle boot" in h.proto.body and "<figure" not in h.proto.body)
    assert rows.count("<img") == 100  # 10 classes × 10 images
    means = [h.proto.body for h in at.get("html") if "<figure" in h.proto.body][-1]
    assert means.count("<figure") == 10
    at.selectbox(key="dx_class").set_value(9).run()
    at.segmented_control(key="dx_split").set_value("test").run()
    no_exception(at)
    grid = next(h.proto.body for h in at.get("html") if "<figure" in h.proto.body)
    assert grid.count("<figure") == 20 and grid.count(">#") == 20
    assert "**Ankle boot**: 20 of the 1,000 test images" in texts(at)
