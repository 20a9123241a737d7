"""AppTest tests of the softmax explorer, model inspector and data explorer, before and after training, and of the
Train page's image grid and downloads after training.

With a `pages/` folder, `at.switch_page("pages/x.py")` runs the page file without dashboard.py (as a first
visit to a sub-page URL does on a fresh server), so these tests also check that every page stands alone.
Every test builds its own app (its own session state): none depends on what another one did.
"""

from __future__ import annotations

import base64
import csv
import html
import io
import json
import math
import re
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pytest
from PIL import Image
from streamlit.runtime.memory_media_file_storage import MemoryMediaFileStorage
from streamlit.testing.v1 import AppTest

from softmax_core import DATASETS, Dataset, softmax
from ui.charts import GREEN, RED

from .conftest import REPO

PAGES = ("pages/softmax_explorer.py", "pages/model_inspector.py", "pages/data_explorer.py")


def new_app() -> AppTest:
    return AppTest.from_file(str(REPO / "dashboard.py"), default_timeout=60)


@pytest.fixture
def env(data_root, monkeypatch) -> None:
    monkeypatch.setenv("SOFTMAX_DATA_DIR", str(data_root))
    monkeypatch.setenv("SOFTMAX_RUNS_DB", "off")  # no run persistence


@pytest.fixture
def trained(env) -> AppTest:
    """A session of this test's own that has trained the lesson's model for 5 epochs on the Train page."""
    at = new_app().run()
    at.button(key="train").click().run()
    no_exception(at)
    assert at.session_state.session.wait(60), "training did not finish"  # it runs in the background
    at.run()
    assert at.session_state.session.run.trained_epochs == 5
    return at


@pytest.fixture
def media(monkeypatch) -> dict[str, bytes]:
    """The files the app hands to st.download_button, by media file id (AppTest keeps them in memory only during a run)."""
    files: dict[str, bytes] = {}
    load = MemoryMediaFileStorage.load_and_get_id

    def keep(self, path_or_data, mimetype, kind, filename=None):
        file_id = load(self, path_or_data, mimetype, kind, filename)
        files[file_id] = path_or_data
        return file_id

    monkeypatch.setattr(MemoryMediaFileStorage, "load_and_get_id", keep)
    return files


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


def shown_text(table) -> np.ndarray:
    """The text a table shows in its cells (a pandas Styler's display values), rows × columns."""
    assert table.proto.arrow_data.styler.display_values, "the table's cells carry no text of their own (no Styler)"
    display = pa.ipc.open_stream(table.proto.arrow_data.styler.display_values).read_all().to_pandas()
    return display[list(table.value.columns)].to_numpy()


@dataclass(frozen=True)
class Shown:
    """One image of a true / predicted grid (ui.charts.image_grid_html), as the page shows it."""

    pixels: np.ndarray  # (28, 28) uint8, decoded from the <img>
    frame: str  # the colour of the frame
    true: str
    mark: str  # ✓ or ✗
    predicted: str  # the class, then (on the inspector) its probability


FIGURE = re.compile(
    r'<figure.*?<img src="data:image/png;base64,(?P<png>[^"]+)".*?border:4px solid (?P<frame>rgb\([^)]*\));.*?'
    r'<figcaption[^>]*><span[^>]*>[^<]*</span> (?P<true>[^<]*)<br><b[^>]*>(?P<mark>[✓✗]) (?P<predicted>[^<]*)</b></figcaption></figure>',
    re.S,
)


def grid(at: AppTest) -> list[Shown]:
    """The images of the page's true / predicted grid, in order."""
    body = next(h.proto.body for h in at.get("html") if "<figure" in h.proto.body and "border:4px" in h.proto.body)
    shown = [
        Shown(np.asarray(Image.open(io.BytesIO(base64.b64decode(m["png"])))), m["frame"], html.unescape(m["true"]),
              m["mark"], html.unescape(m["predicted"]))
        for m in FIGURE.finditer(body)
    ]
    assert len(shown) == body.count("<figure"), "a grid cell does not have the expected form"
    return shown


def index_of(images: np.ndarray, labels: np.ndarray, shown: Shown, names: tuple[str, ...]) -> int:
    """The test image a grid cell shows (the one with these pixels and this true class)."""
    matches = [int(i) for i in np.flatnonzero((images == shown.pixels).all(axis=(1, 2))) if names[labels[i]] == shown.true]
    assert matches, f"no test image of class {shown.true} has the pixels shown"
    return matches[0]


def model_probs(at: AppTest, dataset: Dataset) -> np.ndarray:
    """The session's model's softmax probabilities on every test image, (10000, 10)."""
    return softmax(at.session_state.session.display_model.image_logits(dataset.test_images))


def assert_most_confident_mistakes(at: AppTest, fashion: Dataset, count: int, true_class: int | None) -> None:
    """The grid lists `count` test images the model gets wrong, the most confident first, and nothing else."""
    names, labels = fashion.class_names, fashion.test_labels
    probs = model_probs(at, fashion)
    predicted = probs.argmax(axis=1)
    confidence = probs.max(axis=1)
    wrong = predicted != labels
    if true_class is not None:
        wrong &= labels == true_class
    shown = grid(at)
    assert len(shown) == count
    indices = [index_of(fashion.test_images, labels, s, names) for s in shown]
    for i, s in zip(indices, shown):
        assert wrong[i], f"test image {i} ({s.true}) is shown as a mistake but the model gets it right"
        assert s.predicted == f"{names[predicted[i]]} {confidence[i]:.3f}"
        assert s.mark == "✗" and s.frame == RED
    shown_confidence = confidence[indices]
    assert (np.diff(shown_confidence) <= 0).all(), "not sorted by confidence, highest first"
    top = np.sort(confidence[wrong])[::-1][:count]  # no mistake left out is more confident than one shown
    np.testing.assert_allclose(shown_confidence, top, rtol=0, atol=1e-7)


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


def test_inspector_after_training(trained, fashion):
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
    predicted = model_probs(at, fashion).argmax(axis=1)
    expected = np.zeros((10, 10), dtype=int)
    np.add.at(expected, (fashion.test_labels, predicted), 1)
    np.testing.assert_array_equal(confusion, expected)  # rows true, columns predicted
    assert np.trace(confusion) == round(test_acc * 10000)
    assert next(m.value for m in at.metric if m.label == "Test accuracy") == f"{test_acc:.4f}"
    per_class = array(figures["mi_per_class"]["data"][0]["x"])
    np.testing.assert_allclose(per_class, np.diag(confusion) / confusion.sum(axis=1))
    assert_most_confident_mistakes(at, fashion, 9, None)  # the page's defaults: 9, all classes


def test_inspector_mistakes_of_one_class(trained, fashion):
    at = trained
    at.switch_page("pages/model_inspector.py").run()
    at.selectbox(key="mi_class").set_value(6).run()  # Shirt: the class with the most mistakes
    at.selectbox(key="mi_count").set_value(18).run()
    no_exception(at)
    assert_most_confident_mistakes(at, fashion, 18, 6)
    assert {s.true for s in grid(at)} == {"Shirt"}


def test_train_page_frames_exactly_the_mistakes_red(trained, fashion):
    """The Train page's grid (the first 36 test images): a red frame and ✗ for each image the model gets wrong, green and ✓ else."""
    at = trained
    at.selectbox(key="grid_count").set_value(36).run()
    no_exception(at)
    predicted = model_probs(at, fashion).argmax(axis=1)
    shown = grid(at)
    assert len(shown) == 36
    indices = [index_of(fashion.test_images, fashion.test_labels, s, fashion.class_names) for s in shown]
    assert indices == list(range(36))  # "first images"
    wrong = [bool(predicted[i] != fashion.test_labels[i]) for i in indices]
    assert 0 < sum(wrong) < 36, "the lesson's model gets some of the first 36 test images wrong, most right"
    assert sum(s.frame == RED for s in shown) == sum(wrong)
    for s, i, w in zip(shown, indices, wrong):
        assert (s.frame, s.mark) == ((RED, "✗") if w else (GREEN, "✓"))
        assert s.predicted == fashion.class_names[predicted[i]]


def test_downloads_hold_the_runs_and_the_model(trained, media):
    at = trained
    at.run()  # with the media files kept
    no_exception(at)
    session = at.session_state.session

    def content(key: str) -> bytes:
        url = at.download_button(key=key).proto.url  # /media/<file id>.<extension>
        return media[url.rsplit("/", 1)[1].split(".")[0]]

    records = [r.as_dict() for r in session.run.records]
    assert len(records) == 6  # epoch 0 (untrained) and the 5 trained
    for key, rows in (("csv", records), ("csv_all", [{"run": session.run.id, **r} for r in records])):
        parsed = list(csv.DictReader(io.StringIO(content(key).decode())))
        assert len(parsed) == len(rows), key
        for line, row in zip(parsed, rows):
            assert list(line)[: len(row)] == [str(k) for k in row], key  # the record's figures, then its segment's settings
            assert line["segment"] == ("" if line["epoch"] == "0" else "train") and line["batch_size"] in ("", "256"), key
            for name, value in row.items():
                if isinstance(value, float):
                    assert float(line[name]) == pytest.approx(value, rel=1e-12, abs=0), (key, name)
                else:
                    assert line[name] == str(value), (key, name)
    with np.load(io.BytesIO(content("npz")), allow_pickle=False) as npz:
        assert set(npz.files) == {"W", "b"}
        np.testing.assert_array_equal(npz["W"], session.display_model.W)
        np.testing.assert_array_equal(npz["b"], session.display_model.b)


def test_softmax_explorer(env):
    at = new_app()
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


def test_softmax_explorer_shows_every_digit_at_low_temperature(env):
    """At T = 0.1, exp(X / T) reaches 10⁵: each cell's text is its number (no leading digit cut off), each column is
    wide enough for its text, and the three tables' columns line up."""
    at = new_app()
    at.switch_page("pages/softmax_explorer.py").run()
    at.select_slider(key="sx_temp").set_value(0.1).run()
    no_exception(at)
    tables = at.dataframe[:3]  # X / T, exp, softmax
    exp = tables[1].value
    assert exp.to_numpy().max() > 1e5, "seed 0 at T = 0.1 has an exp(X) above 100,000"
    widths = []
    for table in tables:
        values, text = table.value.to_numpy(), shown_text(table)
        for value, cell in zip(values.ravel(), text.ravel()):  # 460,469 written as 468.5938 would fail here
            assert float(cell.replace(",", "")) == pytest.approx(value, rel=5e-4, abs=5e-5), (cell, value)
        config = json.loads(table.proto.columns)
        widths.append([config[c]["width"] for c in table.value.columns])
        for width, column in zip(widths[-1], text.T):
            assert width >= 7 * max(len(t) for t in column) + 16  # room for the text and the cell's padding
    assert widths[0] == widths[1][:5] == widths[2][:5]  # the class columns line up
    assert widths[1][5] == widths[2][5]  # Σ and row sum


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


def test_data_explorer(env):
    at = new_app()
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
    grid_body = next(h.proto.body for h in at.get("html") if "<figure" in h.proto.body)
    assert grid_body.count("<figure") == 20 and grid_body.count(">#") == 20
    assert "**Ankle boot**: 20 of the 1,000 test images" in texts(at)
