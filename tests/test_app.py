"""AppTest tests of the Train page: controls -> train -> history -> grid, URL settings, model files."""

from __future__ import annotations

import csv
import io
import json
import re
import time

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

from softmax_core import SoftmaxRegression

from .conftest import REPO, is_lesson_epoch_1


@pytest.fixture(scope="module", autouse=True)
def run_store_file(tmp_path_factory):
    """One run store for this module (the app opens it once per process, like a server)."""
    import os

    path = tmp_path_factory.mktemp("store") / "runs.sqlite3"
    old = os.environ.get("SOFTMAX_RUNS_DB")
    os.environ["SOFTMAX_RUNS_DB"] = str(path)
    yield path
    if old is None:
        del os.environ["SOFTMAX_RUNS_DB"]
    else:
        os.environ["SOFTMAX_RUNS_DB"] = old


def new_app(data_root, monkeypatch, **query) -> AppTest:
    """The Train page as a browser has it once loaded: the light first run, then the whole page it asks for."""
    at = first_run(data_root, monkeypatch, **query)
    no_exception(at)
    return at.run()


def first_run(data_root, monkeypatch, **query) -> AppTest:
    monkeypatch.setenv("SOFTMAX_DATA_DIR", str(data_root))
    at = AppTest.from_file(str(REPO / "dashboard.py"), default_timeout=60)
    at.query_params.update(query)
    return at.run()


@pytest.fixture
def app(data_root, monkeypatch) -> AppTest:
    return new_app(data_root, monkeypatch)


def no_exception(at: AppTest) -> None:
    assert not at.exception, [e.message for e in at.exception]


def finish(at: AppTest, timeout: float = 60) -> AppTest:
    """Wait for the background training, then draw the page again (in a browser, a timer redraws it)."""
    no_exception(at)
    assert at.session_state.session.wait(timeout), "training did not finish"
    at.run()
    no_exception(at)
    return at


def log_text(at: AppTest) -> str:
    return at.code[0].value


def metric(at: AppTest, label: str) -> str:
    return next(m.value for m in at.metric if m.label == label)


def grid_html(at: AppTest) -> str:
    return next(h.proto.body for h in at.get("html") if "<figure" in h.proto.body)


def curves(at: AppTest) -> dict:
    return json.loads(at.get("plotly_chart")[0].proto.spec)


def test_opens_with_the_lessons_defaults_and_the_untrained_model(app):
    no_exception(app)
    assert app.select_slider(key="lr").value == 0.1
    assert app.slider(key="epochs").value == 5
    assert app.select_slider(key="batch_size").value == 256
    assert app.number_input(key="sigma").value == 0.01 and app.number_input(key="seed").value == 0
    acc = float(metric(app, "Test acc"))
    assert 0.05 <= acc <= 0.15
    assert log_text(app) == f"untrained test acc {acc:.3f}"
    assert metric(app, "Epoch") == "0"
    assert grid_html(app).count("<figure") == 9


def test_first_run_draws_the_controls_and_figures_then_the_whole_page(data_root, monkeypatch):
    at = first_run(data_root, monkeypatch)
    no_exception(at)
    # Usable at once: the controls, the buttons and the untrained model's figures on the real data.
    assert at.slider(key="epochs").value == 5 and not at.button(key="train").disabled
    acc = float(metric(at, "Test acc"))
    assert 0.05 <= acc <= 0.15 and metric(at, "Epoch") == "0"
    # The heavy parts wait for the browser's signal that it has drawn this run.
    assert not at.get("plotly_chart") and not at.code and not [h for h in at.get("html") if "<figure" in h.proto.body]
    assert [c.proto.component_name for c in at.get("bidi_component")] == ["first_paint"]  # the browser's signal
    assert "Run history" not in [h.value for h in at.subheader]
    at.run()  # the browser's signal, or any other reason to run again
    no_exception(at)
    assert metric(at, "Test acc") == f"{acc:.3f}"
    assert log_text(at) == f"untrained test acc {acc:.3f}"
    assert curves(at)["data"] and grid_html(at).count("<figure") == 9
    assert {"Run history", "Model file"} <= {h.value for h in at.subheader}
    assert not at.get("bidi_component")


def test_train_shows_each_epoch_then_history_and_grid(app):
    app.button(key="train").click().run()
    seen = []
    while app.session_state.session.job is not None:  # the page shows the epochs as they come
        app.run()
        no_exception(app)
        seen.append(len(log_text(app).splitlines()))
    finish(app)
    assert seen == sorted(seen) and len(log_text(app).splitlines()) == 6  # the untrained line and 5 epochs
    lines = log_text(app).splitlines()
    assert is_lesson_epoch_1(lines[1])
    assert re.fullmatch(r"epoch 5, loss 0\.4\d{3}, train acc 0\.8\d\d, test acc 0\.8\d\d", lines[5])
    assert any("Finished 5 epochs" in s.value for s in app.success)
    figure = curves(app)
    train_loss = next(t for t in figure["data"] if t["name"] == "train loss")
    assert train_loss["x"] == [0, 1, 2, 3, 4, 5]
    table = app.dataframe[0].value
    assert list(table.index) == [1] and table.loc[1, "status"] == "finished" and table.loc[1, "epochs"] == 5
    html = grid_html(app)
    assert html.count("<figure") == 9 and "Ankle boot" in html  # the first test image is an ankle boot
    assert len(app.get("download_button")) >= 2
    weights_shown_are_the_models(app)


def weights_shown_are_the_models(app) -> None:
    """The strip under the curves holds the ten columns of the session's current W, in class order."""
    from ui import charts  # noqa: PLC0415

    strip = next(h.proto.body for h in app.get("html") if "weights-strip" in h.proto.body)
    sources = re.findall(r'src="(data:image/png;base64,[^"]+)"', strip)
    model = app.session_state.session.model
    assert sources == [charts.png_data_uri(image) for image in charts.weight_images(model.W)]
    assert len(sources) == 10 and "weights of class Ankle boot" in strip
    red = charts.weight_images(model.W)[0]  # class 0's map is not the untrained noise: it changed with training
    assert not np.array_equal(red, charts.weight_images(np.zeros_like(model.W))[0])


def test_continue_step_stop_and_reset(app):
    app.slider(key="epochs").set_value(2).run()
    app.button(key="train").click().run()
    finish(app)
    app.button(key="continue").click().run()
    finish(app)
    assert [r.epoch for r in app.session_state.session.run.records] == [0, 1, 2, 3, 4]  # no reset
    app.button(key="step").click().run()
    finish(app)
    assert app.session_state.session.run.trained_epochs == 5
    # Stop mid-job: the finished epochs stay, the job is gone.
    app.slider(key="epochs").set_value(30).run()
    app.button(key="continue").click().run()
    session = app.session_state.session
    while session.run.trained_epochs < 6:
        time.sleep(0.02)
    app.button(key="stop").click().run()
    no_exception(app)
    session = app.session_state.session
    assert session.job is None and session.run.status == "stopped"
    kept = session.run.trained_epochs
    time.sleep(0.5)
    assert session.run.trained_epochs == kept  # nothing trains after Stop
    app.run()
    assert 6 <= kept < 35 and log_text(app).splitlines()[-1].startswith(f"epoch {kept},")
    app.button(key="reset").click().run()
    assert metric(app, "Epoch") == "0" and len(app.session_state.session.runs) == 1


def test_runs_are_kept_and_overlaid(app):
    for lr in (0.01, 1.0):
        app.select_slider(key="lr").set_value(lr).run()
        app.slider(key="epochs").set_value(1).run()
        app.button(key="train").click().run()
        finish(app)
    table = app.dataframe[0].value
    assert list(table["lr"]) == ["0.01", "1"]
    app.multiselect(key="overlay").set_value([1]).run()
    shown = [t["name"] for t in curves(app)["data"] if t.get("showlegend", True)]
    assert "run 1: train loss" in shown and "run 1: test acc" in shown  # every overlaid curve has its own entry
    assert "run 2 (current): train loss" in shown and "train loss" not in shown  # the legend names the current run
    assert len(shown) == len(set(shown)) == 8


def test_url_carries_settings_and_refuses_absurd_values(data_root, monkeypatch):
    at = new_app(data_root, monkeypatch, lr="0.5", epochs="7", batch="64", presenter="1")
    no_exception(at)
    assert at.select_slider(key="lr").value == 0.5 and at.slider(key="epochs").value == 7
    assert at.select_slider(key="batch_size").value == 64 and at.toggle(key="presenter").value
    assert not [e for e in at.expander if e.label.startswith("Advanced")]  # presenter view hides the advanced settings

    bad = new_app(data_root, monkeypatch, lr="-1", batch="0", epochs="1000000000", seed="abc", dataset="cifar")
    no_exception(bad)
    warnings = " ".join(w.value for w in bad.warning)
    for name in ("lr=-1", "batch=0", "epochs=1000000000", "seed=abc", "dataset=cifar"):
        assert name in warnings
    assert bad.select_slider(key="lr").value == 0.1 and bad.slider(key="epochs").value == 5


def test_settings_are_written_to_the_url(app):
    app.slider(key="epochs").set_value(3).run()
    app.select_slider(key="lr").set_value(0.5).run()
    assert app.query_params["epochs"] in ("3", ["3"]) and app.query_params["lr"] in ("0.5", ["0.5"])


def test_grid_options(app):
    app.button(key="train").click().run()
    finish(app)
    app.segmented_control(key="grid_mode").set_value("misclassified").run()
    html = grid_html(app)
    assert html.count("<figure") == 9 and html.count("border:4px solid rgb(215,25,28)") == 9 and html.count("✗") == 9 and "✓" not in html  # every one framed red
    app.segmented_control(key="grid_mode").set_value("one class").run()
    app.selectbox(key="grid_class").set_value(8).run()  # Bag
    assert grid_html(app).count("Bag<br>") == 9
    app.selectbox(key="inspect").set_value(2).run()
    probs = json.loads(app.get("plotly_chart")[-1].proto.spec)["data"][0]["y"]
    assert len(probs) == 10 and abs(sum(probs) - 1) < 1e-4


def test_model_upload_checks_the_file(app):
    good = SoftmaxRegression(np.zeros((784, 10), np.float32), np.zeros(10, np.float32)).to_bytes()
    app.file_uploader(key="upload").upload("zeros.npz", good, "application/octet-stream").run()
    no_exception(app)
    loaded = app.session_state.session.run
    assert loaded.status == "loaded" and loaded.label == "loaded from zeros.npz" and loaded in app.session_state.session.runs
    assert any("zeros\\.npz" in s.value and "Continue" in s.value for s in app.success)  # the name shown as text, not markup
    assert metric(app, "Test acc") == "0.100"
    np.testing.assert_array_equal(app.session_state.session.model.W, 0)  # every view shows the loaded model
    before = app.session_state.session.model.W.copy()
    def npz(**arrays) -> bytes:
        buffer = io.BytesIO()
        np.savez(buffer, **arrays)
        return buffer.getvalue()

    bad = {
        "nan.npz": npz(W=np.full((784, 10), np.nan), b=np.zeros(10)),
        "shape.npz": npz(W=np.zeros((10, 784)), b=np.zeros(10)),
        "pickle.npz": npz(W=np.array([{"evil": 1}] * 7840, dtype=object).reshape(784, 10), b=np.zeros(10)),
        "junk.npz": b"not a model",
    }
    for name, data in bad.items():
        app.file_uploader(key="upload").upload(name, data, "application/octet-stream").run()
        no_exception(app)
        assert any(f"{name.replace('.', chr(92) + '.')} was not loaded" in e.value and "Nothing was changed." in e.value for e in app.error)
        np.testing.assert_array_equal(app.session_state.session.model.W, before)


def test_divergence_warns_and_keeps_the_page_usable(app):
    app.select_slider(key="lr").set_value(10.0).run()
    app.selectbox(key="softmax").set_value("naive").run()
    app.button(key="train").click().run()
    finish(app)
    assert any("diverged in epoch 1" in w.value for w in app.warning)
    assert app.session_state.session.run.status == "diverged"
    app.selectbox(key="softmax").set_value("stable").run()
    app.select_slider(key="lr").set_value(0.1).run()
    app.slider(key="epochs").set_value(1).run()
    app.button(key="train").click().run()
    finish(app)
    assert app.session_state.session.run.status == "finished" and len(app.session_state.session.runs) == 2


def test_a_reload_brings_the_runs_and_model_back_and_only_with_the_id(app, data_root, monkeypatch):
    app.slider(key="epochs").set_value(2).run()
    app.button(key="train").click().run()
    finish(app)
    app.slider(key="epochs").set_value(30).run()
    app.button(key="train").click().run()
    while app.session_state.session.run.trained_epochs < 1:
        time.sleep(0.02)
    app.button(key="stop").click().run()  # as if the tab were closed mid-run: the thread stops, the run stays
    token = app.session_state.owner
    assert app.query_params["sid"] in (token, [token])
    trained = app.session_state.session.run.trained_epochs

    reloaded = new_app(data_root, monkeypatch, sid=token)
    no_exception(reloaded)
    session = reloaded.session_state.session
    assert [r.id for r in session.runs] == [1, 2]
    assert session.runs[0].status == "finished" and session.runs[0].trained_epochs == 2
    assert session.run is session.runs[1] and session.run.status == "stopped" and session.run.trained_epochs == trained
    np.testing.assert_array_equal(session.model.W, app.session_state.session.model.W)  # the model too
    reloaded.slider(key="epochs").set_value(1).run()
    reloaded.button(key="continue").click().run()
    finish(reloaded)
    assert session.run.trained_epochs == trained + 1  # Continue trains the restored model on

    stranger = new_app(data_root, monkeypatch, sid="A" * 22)  # a well-formed id that owns nothing
    assert stranger.session_state.session.runs == []
    junk = new_app(data_root, monkeypatch, sid="../../etc/passwd")
    assert junk.session_state.owner != "../../etc/passwd" and junk.session_state.session.runs == []

    reloaded.button(key="forget").click().run()
    assert new_app(data_root, monkeypatch, sid=token).session_state.session.runs == []


def download_text(at: AppTest, key: str) -> str:
    """The bytes a download button hands over, as text."""
    from streamlit.runtime import Runtime  # noqa: PLC0415

    url = at.download_button(key=key).proto.url
    file_id = url.rsplit("/", 1)[-1].split(".")[0]
    return Runtime._instance.media_file_mgr._storage.get_file(file_id).content.decode() if Runtime.exists() else ""


def test_a_continue_at_another_rate_keeps_both_in_the_history_csv_and_chart(app):
    app.slider(key="epochs").set_value(2).run()
    app.button(key="train").click().run()
    finish(app)
    app.select_slider(key="lr").set_value(0.2).run()
    app.slider(key="epochs").set_value(1).run()
    app.button(key="continue").click().run()
    finish(app)
    run = app.session_state.session.run
    assert [(s["kind"], s["first_epoch"], s["lr"], s["epochs"]) for s in run.segments] == [("train", 1, 0.1, 2), ("continue", 3, 0.2, 1)]
    table = app.dataframe[0].value
    assert table.loc[1, "lr"] == "0.1 → 0.2" and table.loc[1, "batch"] == "256" and table.loc[1, "epochs"] == 3
    assert "lr 0.1 → 0.2" in run.name
    # Every epoch row of the CSV carries the settings it was trained with.
    from ui.train_page import csv_bytes, epoch_rows  # noqa: PLC0415 -- what the download buttons hand over

    rows = list(csv.DictReader(io.StringIO(csv_bytes(epoch_rows(run)).decode())))
    assert [(r["epoch"], r["lr"], r["segment"], r["epochs asked"]) for r in rows] == [
        ("0", "0.0", "", ""), ("1", "0.1", "train", "2"), ("2", "0.1", "train", "2"), ("3", "0.2", "continue", "1")]
    # The chart marks where the Continue began, with its settings, on both plots.
    layout = curves(app)["layout"]
    lines = [s for s in layout["shapes"] if s["line"]["dash"] == "dot"]
    assert [(s["xref"], s["x0"]) for s in lines] == [("x", 2), ("x2", 2)]
    assert [a["text"] for a in layout["annotations"] if a["x"] == 2 and a.get("textangle") == -90] == ["Continue: lr 0.2, batch 256"] * 2
    # Saved and read back (the run store's form), the segments come back; a run stored before them gets one.
    from ui.session import Run  # noqa: PLC0415

    again = Run.from_dict(json.loads(json.dumps(run.to_dict())))
    assert again.segments == run.segments and again.summary()["lr"] == "0.1 → 0.2"
    old = run.to_dict()
    del old["segments"]
    assert [(s["kind"], s["first_epoch"], s["lr"]) for s in Run.from_dict(old).segments] == [("train", 1, 0.2)]


def test_resume_after_a_reload_trains_exactly_the_epochs_left(app, data_root, monkeypatch):
    app.slider(key="epochs").set_value(6).run()
    app.select_slider(key="lr").set_value(0.2).run()
    app.button(key="train").click().run()
    session = app.session_state.session
    while session.run.trained_epochs < 2:
        time.sleep(0.02)
    token = app.session_state.owner
    session.stop("when the page was closed or reloaded")  # the tab went away mid-run
    done = session.run.trained_epochs
    assert 2 <= done < 6
    app.run()

    reloaded = new_app(data_root, monkeypatch, sid=token)  # the lesson's defaults: lr 0.1, 5 epochs
    no_exception(reloaded)
    run = reloaded.session_state.session.run
    assert run.status == "stopped" and run.epochs_left == 6 - done
    said = " ".join(i.value for i in reloaded.info)
    assert f"{6 - done} of 6 epochs left from the interrupted run" in said, said
    assert not reloaded.button(key="resume").disabled
    reloaded.button(key="resume").click().run()
    finish(reloaded)
    assert run.trained_epochs == 6 and run.status == "finished"  # exactly those, not the 5 of the sliders
    assert [(s["kind"], s["lr"], s["epochs"]) for s in run.segments] == [("train", 0.2, 6)]  # the same segment
    assert reloaded.button(key="resume").disabled and run.epochs_left == 0


def test_resume_keeps_the_schedule_position(data_root, monkeypatch):
    """A resumed step schedule goes on where it stopped: its epochs train at the rates of their places in it."""
    from softmax_core import TrainConfig  # noqa: PLC0415

    at = new_app(data_root, monkeypatch)
    session = at.session_state.session
    session.pace = 2.0  # an epoch takes 2 s at least: Stop comes well before the third
    config = TrainConfig(epochs=4, schedule="step", step_size=1, gamma=0.5)
    job = session.start(config, "train")
    while session.run.trained_epochs < 2:
        time.sleep(0.01)
    session.stop()
    done = session.run.trained_epochs
    assert done < 4 and session.run.epochs_left == 4 - done
    session.pace = 0.0
    resumed = session.resume()
    assert resumed.start == done and resumed.epochs_asked == 4 - done and resumed.config == config
    assert session.wait(60) and session.run.trained_epochs == 4 and job is not resumed


def test_status_words_and_deltas(app):
    app.slider(key="epochs").set_value(1).run()
    app.button(key="train").click().run()
    finish(app)
    assert any(s.value.startswith("Finished 1 epoch:") for s in app.success)  # not "1 epochs"
    # A change that rounds to 0 is neither green nor red and has no arrow.
    from ui.train_page import delta  # noqa: PLC0415

    assert delta(0.81234, 0.81201, 3) == {"delta": "±0.000", "delta_color": "off", "delta_arrow": "off"}
    assert delta(0.8124, 0.8101, 3) == {"delta": "+0.002", "delta_color": "normal"}
    assert delta(0.5, 0.6, 4, inverse=True) == {"delta": "-0.1000", "delta_color": "inverse"}
    # The history shows a dash for figures a run does not have (a loaded model has no training figures).
    good = SoftmaxRegression(np.zeros((784, 10), np.float32), np.zeros(10, np.float32)).to_bytes()
    app.file_uploader(key="upload").upload("zeros.npz", good, "application/octet-stream").run()
    shown = app.dataframe[-1].value
    loaded = shown.loc[shown.index[-1]]
    assert loaded["status"] == "loaded" and loaded["train loss"] == "—" and loaded["train acc"] == "—"
    assert loaded["test acc"] == "0.100"  # all-zero weights: every image gets class 0, one test image in ten
    assert not shown.isna().any().any() and "None" not in shown.astype(str).to_numpy()


def test_divergence_is_said_once_and_wraps(app):
    app.select_slider(key="lr").set_value(10.0).run()
    caption = " ".join(c.value for c in app.caption)
    assert "does not diverge" in caption and "log-sum-exp" in caption and "naive softmax" in caption  # lr 10, stable
    app.selectbox(key="softmax").set_value("naive").run()
    assert "does not diverge" not in " ".join(c.value for c in app.caption)
    app.button(key="train").click().run()
    finish(app)
    warning = next(w.value for w in app.warning if "iverged" in w.value)
    assert warning.lower().count("diverged") == 1 and warning.startswith("**Training diverged in epoch 1**: the loss"), warning
    assert app.code[0].proto.wrap_lines  # the long divergence line wraps inside the log box


def test_presenter_view_has_a_pace_control_and_large_chart_text(data_root, monkeypatch):
    at = new_app(data_root, monkeypatch, presenter="1", pace="1")
    no_exception(at)
    assert at.selectbox(key="pace").value == "1 s per epoch"
    at.selectbox(key="pace").set_value("2 s per epoch").run()
    assert at.query_params["pace"] in ("2", ["2"]) and at.session_state.session.pace == 2.0
    layout = curves(at)["layout"]
    sizes = [layout[a]["tickfont"]["size"] for a in ("xaxis", "yaxis", "xaxis2", "yaxis2")]
    sizes += [layout["legend"]["font"]["size"]] + [n["font"]["size"] for n in layout["annotations"]]
    assert min(sizes) >= 18, sizes
    assert '<div class="presenter-grid">' in grid_html(at)


def test_no_data_says_what_download_does(tmp_path, monkeypatch):
    monkeypatch.setenv("SOFTMAX_DATA_DIR", str(tmp_path))  # nothing there
    monkeypatch.setenv("SOFTMAX_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setattr("softmax_core.data.SYSTEM_ROOTS", ())
    from ui.data import get_dataset  # noqa: PLC0415

    get_dataset.clear()
    try:
        at = AppTest.from_file(str(REPO / "dashboard.py"), default_timeout=60).run()
        no_exception(at)
        text = " ".join([w.value for w in at.warning] + [m.value for m in at.markdown])
        assert "not on this server" in text and "30 MB" in text and "seconds" in text and "switched off" not in text
        assert at.button(key="download_fashion-mnist").label.startswith("Download Fashion-MNIST")
    finally:
        get_dataset.clear()


def test_download_button_is_what_the_page_then_uses(tmp_path, monkeypatch, data_root):
    """A damaged folder in SOFTMAX_DATA_DIR: the page says which file; Download (from a loopback mirror) and the page trains on it."""
    import hashlib  # noqa: PLC0415

    from tests.test_data import OFFICIAL_MD5, Mirror, _official_gzip  # noqa: PLC0415
    from ui.data import get_dataset  # noqa: PLC0415

    def official(name: str) -> bytes:
        """The official file, as a mirror serves it (the data may be Debian's package: the same content, another gzip header)."""
        raw = (data_root / "fashion-mnist" / name).read_bytes()
        return raw if hashlib.md5(raw).hexdigest() == OFFICIAL_MD5["fashion-mnist"][name] else _official_gzip(raw, name)

    real = {"fashion-mnist": {f: official(f) for f in ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz",
                                                       "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz")}}
    damaged = tmp_path / "root" / "fashion-mnist"
    damaged.mkdir(parents=True)
    for name, body in real["fashion-mnist"].items():
        (damaged / name).write_bytes(body[: len(body) // 2] if name.startswith("t10k-labels") else body)
    mirror = Mirror(real)
    monkeypatch.setenv("SOFTMAX_DATA_DIR", str(tmp_path / "root"))
    monkeypatch.setenv("SOFTMAX_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("SOFTMAX_DATA_MIRRORS", mirror.url("good", "fashion-mnist"))
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    monkeypatch.setattr("softmax_core.data.SYSTEM_ROOTS", ())
    get_dataset.clear()
    try:
        at = AppTest.from_file(str(REPO / "dashboard.py"), default_timeout=120).run()
        no_exception(at)
        assert any("t10k-labels-idx1-ubyte.gz" in c.value for c in at.code), [c.value for c in at.code]  # which file
        at.button(key="download_fashion-mnist").click().run()
        at.run()
        no_exception(at)
        assert sorted(mirror.hits("good")) == sorted(real["fashion-mnist"]), "the page did not download the four files"
        assert not at.error, [e.value for e in at.error]
        assert "download cache" in " ".join(c.value for c in at.caption)  # the page now reads what it downloaded
        assert log_text(at).startswith("untrained test acc")
    finally:
        mirror.close()
        get_dataset.clear()


def test_the_servers_settings_are_made_once_and_a_failure_only_logged(monkeypatch, caplog) -> None:
    """A fresh server's first visitors arrive together: the BLAS limit (threadpoolctl, not thread-safe) is set by
    one of them, once; if setting it fails, the pages still open and the log says why."""
    import threading

    from ui import state

    calls = []

    def failing_limits(*args, **kwargs) -> None:
        calls.append(args)
        time.sleep(0.05)  # long enough for every other visitor to arrive meanwhile
        raise OSError("libopenblas.so: cannot open shared object file")

    monkeypatch.setattr(state, "_configured", [])
    monkeypatch.setattr(state, "threadpool_limits", failing_limits)
    errors, start = [], threading.Barrier(8)

    def visitor() -> None:
        start.wait()
        try:
            state.configure_server()
        except Exception as err:  # noqa: BLE001 -- what the page would have shown
            errors.append(err)

    threads = [threading.Thread(target=visitor) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == [] and len(calls) == 1
    assert "could not limit BLAS to one thread" in caplog.text and "libopenblas.so" in caplog.text
