"""The main page: controls, Train/Stop/Continue/Step/Reset, live curves, log lines, test images, runs."""

from __future__ import annotations

import csv
import io
import math
import time
from dataclasses import replace
from html import escape as html_escape

import numpy as np
import streamlit as st

from softmax_core import ModelFileError, SoftmaxRegression, TrainConfig, softmax

from . import charts
from .controls import PACES, Controls, escape_markdown, sidebar_controls, student_link_query
from .data import dataset_or_help, epoch_zero
from .push import PUSHER
from .session import SETTING_NAMES, SETTINGS, Run, Session, Setup, show_setting
from .state import forget_runs, get_engine, get_session, owner_token, presenter_css, store_notice, store_problem

GRID_MODES = ("first images", "random sample", "misclassified", "one class")
PRESENTER_FONT = 18  # px: the smallest text a back row reads on a projector (charts included)
NAIVE_OVERFLOW_LR = 5.0  # from here on the lesson's naive softmax overflows within an epoch; the stable one does not
# A browser's first run of the page draws the controls and figures only; once the browser has them on
# screen, a small script asks for the whole page.
# (Any later run draws the whole page too, and the script gives up waiting after a few seconds.)
PAINTED_JS = """
export default function ({ setTriggerValue }) {
  const started = performance.now();
  const app = document.querySelector('[data-testid="stApp"]');
  const drawn = () => app && app.getAttribute('data-test-script-state') === 'notRunning'
    && !document.querySelector('[data-testid="stSkeleton"]');
  const check = () => {
    if (!drawn() && performance.now() - started < 3000) return requestAnimationFrame(check);
    requestAnimationFrame(() => setTimeout(() => setTriggerValue('painted', true), 0));  // once that frame is shown
  };
  requestAnimationFrame(check);
}
"""
painted_signal = st.components.v2.component("first_paint", js=PAINTED_JS)


def render() -> None:
    """Draw the page; while a job trains in the background, the live area polls it and redraws in place."""
    session = get_session()
    session.redraw = False  # this run draws the whole page
    light = first_paint()
    member = st.session_state.get("board_member")  # a class board's student keeps the board in the address
    controls = sidebar_controls(extra_query={"sid": owner_token(), **({"board": member.code} if member else {})})
    if controls.presenter:  # the sidebar hides Advanced in presenter view, but a presenter sets the pace for the room
        st.sidebar.selectbox("Pace", list(PACES), key="pace", persist_state="session",
                             help="Slow motion for a class: wait so each epoch takes at least this long.")
    if not light:
        student_link()
    presenter_css(controls.presenter)
    # A metric's change appears from the first epochs on: its room is kept from the start, so nothing below moves.
    st.html("<style>.st-key-metrics [data-testid='stMetric'] {min-height: 6.45rem;}</style>")
    st.title("Softmax regression from scratch")
    if problems := st.session_state.get("url_problems"):  # already escaped: URL text never becomes markup
        st.warning("The link's settings were checked:\n\n" + "\n".join(f"- {p}" for p in problems), icon=":material/link:")
    if note := st.session_state.get("link_note"):
        st.warning(note, icon=":material/link_off:")
    dataset = dataset_or_help(controls.setup.dataset)
    if dataset is None:
        return
    st.caption(
        f"{dataset.title} ({len(dataset.train_images):,} training and {len(dataset.test_images):,} test images, "
        f"from the {dataset.source_kind}) · W (784×10) ~ Normal(0, σ²), b = 0 · softmax · cross-entropy · minibatch SGD"
    )
    if problem := store_problem(session):
        st.caption(f":material/cloud_off: Runs are not saved on the server right now: {escape_markdown(problem)}")
    if notice := store_notice():
        st.caption(f":material/info: {escape_markdown(notice)}")
    run = session.run
    if run is None or run.setup.dataset != dataset.name or (run.status == "ready" and run.setup != controls.setup):
        # A model belongs to one data set; an untrained one follows the seed and σ as they change.
        new_untrained_run(session, dataset, controls.setup, controls.config or run_config(run))
    session.pace = controls.pace
    buttons(session, controls, dataset)
    if controls.error:
        st.error(f"Invalid setting: {controls.error}")
    if controls.config is not None and controls.config.lr >= NAIVE_OVERFLOW_LR and controls.config.softmax == "stable":
        st.caption(
            f":material/info: At learning rate {controls.config.lr:g} the stable softmax does not diverge: it subtracts each row's "
            "largest logit before exp (log-sum-exp), so exp never overflows. The lesson's naive softmax (Softmax under "
            "Advanced, outside presenter view) shows the overflow at this rate."
        )
    st.fragment(live, run_every=poll_every(session))(session, controls, dataset, light)
    if light:
        st.session_state.drawn_light = True
        painted_signal(key="first_paint", on_painted_change=lambda: None, height=0)
        return
    downloads(session.run)
    run_history(session, controls.presenter)
    model_files(session, dataset, controls)


def student_link() -> None:
    """The address to give a class: these settings (presenter view and pace too) without this tab's own id."""
    from urllib.parse import urlencode, urlsplit, urlunsplit  # noqa: PLC0415

    with st.sidebar.expander("Link for students", icon=":material/share:"):
        parts = urlsplit(st.context.url or "http://localhost:8501/")
        url = urlunsplit((parts.scheme, parts.netloc, parts.path, urlencode(student_link_query(st.session_state)), ""))
        st.code(url, language=None, wrap_lines=True)
        st.caption("Copy it with the button at its right. Everyone who opens it starts their own session with these settings; "
                   "the address bar of this tab carries your own id, which is for you alone.")


def first_paint() -> bool:
    """True on a browser session's first run of this page, which draws only what makes the page usable.

    A browser shows a new page only once it has loaded the code of every kind of element on it: the
    Plotly charts, the log, the image grid and the sections below them kept the controls and figures off
    the screen for seconds. The next run (the browser asks for it once it has drawn this one) draws the
    whole page.
    """
    return not st.session_state.get("drawn_light", False)


def live(session: Session, controls: Controls, dataset, light: bool = False) -> None:
    """Status, progress, figures, curves, log lines and test images of the current run (light: no chart, log, images)."""
    if session.redraw:  # the job ended since the last full run: history, buttons and downloads changed
        session.redraw = False
        st.rerun()
    session.push = target = PUSHER.attach(lambda: live_state(session), LIVE_AFTER)
    try:
        draw_live(session, controls, dataset, light)
    finally:
        if target is not None:
            target.finish()


def draw_live(session: Session, controls: Controls, dataset, light: bool) -> None:
    """The live area's elements, in page order."""
    run, job = session.run, session.job
    session.shown(run.trained_epochs)
    # Drawn in page order, no empty placeholders first: each element replaces its old self in place.
    draw_status(st.container(), run)
    # The bar is always there (idle: empty), so the chart below never moves when training starts or ends.
    if job is not None:
        done, total = job.progress
        where = "waiting for its turn (other sessions are training)" if job.status == "queued" else f"{done:,} / {total:,} images"
        st.progress(done / total if total else 0.0,
                    text=f"Epoch {run.trained_epochs + 1} ({job.epochs_done + 1} of {job.epochs_asked}): {where}")
    else:
        st.progress(0.0, text=f"Not training: {epochs_text(run.trained_epochs)} trained")
    draw_metrics(st.container(), run)
    overlay_ids = st.session_state.get("overlay", [])
    overlays = [r for r in session.runs if r.id in overlay_ids and r is not run]
    height = 480 if controls.presenter else 340
    font = PRESENTER_FONT if controls.presenter else 13
    if light:  # the chart's room: the page keeps its length when the chart comes
        st.container(height=height, border=False)
        return
    st.plotly_chart(curves(session, overlays, height, font), key="curves", config={"displaylogo": False})
    weights_strip(session, dataset, controls.presenter)
    st.code("\n".join(log_lines(run)), language=None, wrap_lines=True)  # a divergence line is long
    test_image_grid(session, dataset, controls.presenter, training=job is not None)


LIVE_AFTER = 1.0  # seconds an epoch must take before the chart shows the running figures within it
POLLS_PER_SECOND = 8  # where the server cannot push: live-area runs per second for all training sessions together
PUSHED_POLL = 15.0  # s: where the server pushes redraws, the browser's own timer is only a safety net


def poll_every(session: Session) -> float | None:
    """How often the browser reruns the live area while a job trains (None: it does not).

    The server pushes a redraw when an epoch ends (ui/push.py). Where it cannot, every poll is a script
    run on the server, so the pace slows as more sessions train: a server that falls behind its reruns
    drops their output, and forty pages polling fast would leave it no time for anything else.
    """
    if session.job is None:
        return None
    if session.push is not None:
        return PUSHED_POLL
    active = get_engine().training()
    return 0.1 if active <= 1 else min(max(0.25, active / POLLS_PER_SECOND), 5.0)


def live_state(session: Session) -> tuple | None:
    """What of the job a live redraw would show: None without a job, else (status, seconds into the epoch, 2 % steps done)."""
    job = session.job
    if job is None:
        return None
    done, total = job.progress
    began = job.epoch_began
    return job.status, 0.0 if began is None else time.monotonic() - began, 50 * done // total if total else 0


def drawn_for_model(session: Session, name: str, key: object, draw):
    """draw(), kept in session.cache until the model or key changes (a new state each epoch or manual step, never
    while the page only polls)."""
    cached = session.cache.get(name)
    if cached is None or cached[0] is not session.state or cached[1] != key:
        session.cache[name] = cached = (session.state, key, draw())
    return cached[2]


def weights_strip(session: Session, dataset, presenter: bool) -> None:
    """The ten columns of W as small images under the curves, as after the chart's last point (redrawn when it changes)."""
    size = 84 if presenter else 52
    html = drawn_for_model(session, "weights", size, lambda: charts.weights_strip_html(session.model.W, dataset.class_names, size))
    st.caption("What each class looks for: its column of W as an image (red raises the class's score, blue lowers it), "
               f"after epoch {session.run.trained_epochs}.")
    st.html(html)


def curves(session: Session, overlays: list[Run], height: int, font: int):
    """The loss and accuracy chart as a Plotly figure, built only when what it shows changes.

    The page redraws several times an epoch while training, so the dict goes to Streamlit as it is
    (charts.as_figure), neither validated nor copied by Plotly. In a slow epoch the running training loss
    and accuracy within it are drawn as hollow points at fractional epochs (moving every 2 % of the epoch).
    """
    run, job = session.run, session.job
    partial = None
    if job is not None and job.status == "training" and job.progress[1]:
        done, total = job.progress
        began = job.epoch_began
        if 0 < done < total and began is not None and time.monotonic() - began > LIVE_AFTER and math.isfinite(job.running[0]):
            partial = (run.trained_epochs + round(50 * done / total) / 50, *job.running)
    key = (run.id, len(run.records), len(run.segments), tuple(r.id for r in overlays), height, font, partial)
    cached = session.cache.get("curves")
    if cached is None or cached[0] != key:
        spec = charts.curves_figure(run, overlays, height, font)
        name_curves(spec, run, overlays)
        add_segment_marks(spec, run, font)
        readable(spec["layout"], font)
        if partial is not None:
            add_running_points(spec, *partial)
        session.cache["curves"] = cached = (key, charts.as_figure(spec))
    return cached[1]


def readable(layout: dict, font: int) -> None:
    """Give every axis, the legend and the notes `font` px at least: Streamlit's chart theme sets its own 12 px ticks."""
    for name, axis in layout.items():
        if name.startswith(("xaxis", "yaxis")):
            axis["tickfont"] = {**axis.get("tickfont", {}), "size": font}
            title = axis.get("title") or {}
            axis["title"] = {**title, "font": {**title.get("font", {}), "size": font}} if isinstance(title, dict) else {"text": title, "font": {"size": font}}
    layout["legend"] = {**layout.get("legend", {}), "font": {"size": font}}
    layout["hoverlabel"] = {"font": {"size": font}}
    for note in layout.get("annotations", []):
        note["font"] = {**note.get("font", {}), "size": max(font, note.get("font", {}).get("size", 0))}


def name_curves(spec: dict, run: Run, overlays: list[Run]) -> None:
    """With runs overlaid, the legend names the current run too ("run 3 (current): train loss") and lists every curve."""
    if not overlays:
        return
    labels = {label for label, _, _ in charts.CURVES.values()}
    for trace in spec["data"]:
        if trace["name"] in labels:
            trace["name"] = f"run {run.id} (current): {trace['name']}"
        trace["showlegend"] = True  # an overlaid run's accuracy curves too: each curve has its own entry


def segment_label(seg: dict, before: dict) -> str:
    """What a Continue or Step trained with, for its mark on the chart: 'Continue: lr 0.2, batch 256' (+ what else changed)."""
    shown = [name for name in SETTINGS if name in ("lr", "batch_size") or seg[name] != before[name]]
    settings = ", ".join(f"{SETTING_NAMES[name]} {show_setting(seg[name])}" for name in shown)
    return f"{seg['kind'].capitalize()}: {settings}"


def segment_marks(run: Run) -> list[tuple[int, str]]:
    """(epoch, label) where a Continue began, or a Step changed the settings: the model it started from is that epoch's."""
    segs = run.trained_segments()
    marks = []
    for before, seg in zip(segs, segs[1:]):
        changed = any(seg[name] != before[name] for name in SETTINGS)
        if seg["kind"] == "continue" or changed:
            marks.append((seg["first_epoch"] - 1, segment_label(seg, before)))
    return marks


def add_segment_marks(spec: dict, run: Run, font: int) -> None:
    """A dotted vertical line on both plots where a Continue began, labelled with its settings."""
    shapes = spec["layout"].setdefault("shapes", [])
    annotations = spec["layout"].setdefault("annotations", [])
    for epoch, label in segment_marks(run):
        for xref in ("x", "x2"):
            shapes.append({"type": "line", "xref": xref, "yref": "paper", "x0": epoch, "x1": epoch, "y0": 0, "y1": 1,
                           "line": {"color": "#555", "width": 1.5, "dash": "dot"}, "layer": "below"})
            annotations.append({"xref": xref, "yref": "paper", "x": epoch, "y": 0.02, "xanchor": "left", "yanchor": "bottom",
                                "text": html_escape(label), "textangle": -90, "showarrow": False, "xshift": 2,
                                "font": {"size": font, "color": "#444"}, "name": "segment"})


def add_running_points(spec: dict, epoch: float, loss: float, acc: float) -> None:
    """Put the running training loss and accuracy of the epoch on its way into a curves figure (hollow points)."""
    for attr, value, axes in (("train_loss", loss, ("x", "y")), ("train_acc", acc, ("x2", "y2"))):
        label, color, _ = charts.CURVES[attr]
        spec["data"].append({
            "type": "scatter", "xaxis": axes[0], "yaxis": axes[1], "x": [epoch], "y": [value], "mode": "markers",
            "name": f"{label} so far in this epoch", "showlegend": False,
            "marker": {"size": 11, "symbol": "circle-open", "color": color, "line": {"width": 2.5, "color": color}},
            "hovertemplate": f"{label} so far, epoch %{{x:.2f}}: %{{y:.4f}}<extra></extra>",
        })
    for axis in ("xaxis", "xaxis2"):
        low, high = spec["layout"][axis]["range"]
        spec["layout"][axis]["range"] = [low, max(high, epoch + 0.3)]


def new_untrained_run(session: Session, dataset, setup: Setup, config: TrainConfig) -> Run:
    """A new untrained model of this setup and its run, with the epoch 0 that every session shares."""
    return session.new_model(dataset, setup, config, initial=epoch_zero(setup))


def run_config(run: Run | None) -> TrainConfig:
    """The config of the run, or the lesson's defaults."""
    return run.config if run else TrainConfig()


def buttons(session: Session, controls: Controls, dataset) -> None:
    """Train, Stop, Continue, Resume, Step and Reset; their callbacks change the session before the page is drawn."""
    config, setup = controls.config, controls.setup
    training = session.job is not None
    left = session.run.epochs_left if session.state is not None else 0
    cols = st.columns(6)
    cols[0].button("Train", icon=":material/play_arrow:", key="train", type="primary", disabled=config is None, width="stretch",
                   help="Train from a fresh initialisation (seed and σ) for the chosen epochs.",
                   on_click=lambda: (new_untrained_run(session, dataset, setup, config), session.start(config, "train")))
    cols[1].button("Stop", icon=":material/stop:", key="stop", disabled=not training, width="stretch",
                   help="Stop after the current batch; every finished epoch is kept.", on_click=session.stop)
    cols[2].button("Continue", icon=":material/fast_forward:", key="continue", disabled=config is None or training, width="stretch",
                   help="Train the current model for the chosen epochs more, with the current hyperparameters (no reset).",
                   on_click=lambda: session.start(config, "continue"))
    cols[3].button("Resume", icon=":material/resume:", key="resume", disabled=training or not left, width="stretch",
                   help="Train the epochs an interrupted run has left, with its own settings, its schedule going on where it stopped.",
                   on_click=session.resume)
    cols[4].button("Step", icon=":material/skip_next:", key="step", disabled=config is None or training, width="stretch",
                   help="Train the current model for one more epoch.",
                   on_click=lambda: session.start(replace(config, epochs=1, schedule="constant"), "step"))
    cols[5].button("Reset", icon=":material/restart_alt:", key="reset", width="stretch",
                   help="Back to an untrained model (finished runs stay in the run history).",
                   on_click=lambda: new_untrained_run(session, dataset, setup, config or run_config(session.run)))


def delta(now: float, before: float | None, digits: int, inverse: bool = False) -> dict:
    """metric() arguments for the change since the epoch before: none at the start, neutral and arrowless when it rounds to 0."""
    if before is None:
        return {}
    text = f"{now - before:+.{digits}f}"
    if float(text) == 0:  # "+0.000" in green would praise a change too small to show
        return {"delta": f"±{0:.{digits}f}", "delta_color": "off", "delta_arrow": "off"}
    return {"delta": text, "delta_color": "inverse" if inverse else "normal"}


def draw_metrics(area, run: Run) -> None:
    """Epoch, losses and accuracies of the last record, with the change since the epoch before."""
    last = run.records[-1]
    before = run.records[-2] if len(run.records) > 1 else None
    trained_before = before if before is not None and before.epoch else None
    with area.container(key="metrics"):
        cols = st.columns(4)
        cols[0].metric("Epoch", last.epoch)
        if last.epoch:
            cols[1].metric("Train loss", f"{last.train_loss:.4f}",
                           **delta(last.train_loss, trained_before and trained_before.train_loss, 4, inverse=True))
            cols[2].metric("Train acc", f"{last.train_acc:.3f}", **delta(last.train_acc, trained_before and trained_before.train_acc, 3))
        else:
            cols[1].metric("Loss (untrained)", f"{last.train_loss:.4f}", help="ln 10 ≈ 2.303 for a model that knows nothing")
            cols[2].metric("Train acc (untrained)", f"{last.train_acc:.3f}")
        cols[3].metric("Test acc", f"{last.test_acc:.3f}", **delta(last.test_acc, before and before.test_acc, 3))


def epochs_text(n: int) -> str:
    """'1 epoch', '5 epochs'."""
    return f"{n} epoch" if n == 1 else f"{n} epochs"


def diverged_text(message: str) -> str:
    """The status of a diverged run, saying 'diverged' once: the engine's message begins with 'training diverged'."""
    prefix = "training diverged"
    if not message.lower().startswith(prefix):
        return f"**Training diverged:** {message}" if message else "**Training diverged.**"
    head, colon, rest = message.partition(":")  # "training diverged in epoch 3: the loss is ..."
    return f"**Training{head[len('training'):]}**{colon}{rest}"


def draw_status(area, run: Run) -> None:
    """Say what state the run is in; a diverged or overshooting run gets a warning with what to try."""
    with area.container():
        if run.status == "diverged":
            st.warning(diverged_text(run.message), icon=":material/warning:")
        elif run.status == "stopped":
            said = f"Stopped {run.message or f'after epoch {run.trained_epochs}'}."
            if left := run.epochs_left:
                seg = run.segments[-1]
                asked = seg["epochs"] - seg["start"]
                said += (f" {left} of {epochs_text(asked)} left from the interrupted run: **Resume** trains exactly those "
                         f"(at lr {show_setting(seg['lr'])}, its schedule going on where it stopped); **Continue** trains the chosen epochs more.")
            else:
                said += " **Continue** trains on from here."
            st.info(said)
        elif run.status == "training":
            seg = run.segments[-1] if run.segments else None
            what = f" ({seg['kind']}, lr {show_setting(seg['lr'])}, batch {seg['batch_size']})" if seg else ""
            st.info(f"Training{what}: epochs appear below as they finish. **Stop** keeps every finished epoch.")
        elif run.status == "loaded":
            st.success(
                f"Model **{escape_markdown(run.label)}** (not trained here): test accuracy {run.records[0].test_acc:.3f}. "
                f"Press **Continue** to train it further with the settings on the left; **Train** starts a fresh model "
                f"(this one stays in the run history).", icon=":material/upload_file:")
        elif run.status == "ready":
            st.info(f"Untrained model (epoch 0): test accuracy {run.records[0].test_acc:.3f}, about 1 in 10 by chance. Press **Train**.")
        elif run.status == "finished":
            st.success(f"Finished {epochs_text(run.trained_epochs)}: test accuracy {run.records[-1].test_acc:.3f}.")
        last, first = run.records[-1], run.records[0]
        if last.epoch and run.status != "diverged" and last.train_loss > first.train_loss:
            st.warning(
                f"The training loss ({last.train_loss:.3g}) is above the untrained model's ({first.train_loss:.3f}): "
                f"the steps overshoot. Try a smaller learning rate than {run.config.lr:g}.", icon=":material/trending_up:",
            )


def log_lines(run: Run) -> list[str]:
    """The lesson's lines, one per epoch, after the untrained accuracy."""
    lines = [f"untrained test acc {run.records[0].test_acc:.3f}"]
    lines += [r.log_line() for r in run.records[1:]]
    if run.status == "diverged":
        lines.append(run.message)
    return lines


def downloads(run: Run) -> None:
    """The current run's per-epoch history as CSV."""
    rows = epoch_rows(run)
    st.download_button("History as CSV", csv_bytes(rows), icon=":material/download:", file_name=f"softmax-run-{run.id}.csv",
                       mime="text/csv", key="csv", on_click="ignore")


def epoch_rows(run: Run) -> list[dict]:
    """One row per epoch, each with the settings of the Train, Continue or Step that trained it (blank for epoch 0)."""
    rows = []
    for record in run.records:
        seg = run.segment_of(record.epoch)
        # The record's own lr is the rate that epoch used (a schedule changes it); the segment's is its starting one.
        rows.append({**record.as_dict(), "segment": seg["kind"] if seg else "",
                     **{name: seg[name] if seg else "" for name in (*SETTINGS, "epochs") if name != "lr"}})
    for row in rows:
        row["epochs asked"] = row.pop("epochs")
    return rows


def csv_bytes(rows: list[dict]) -> bytes:
    """Rows of dicts with the same keys as CSV (UTF-8, a header line first)."""
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=list(rows[0]), lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return out.getvalue().encode()


def test_image_grid(session: Session, dataset, presenter: bool, training: bool) -> None:
    """The lesson's labelled test images (true / predicted) with options, and one image's probabilities."""
    st.subheader("Test images: true / predicted")
    cols = st.columns([4, 1, 2], vertical_alignment="bottom")
    mode = cols[0].segmented_control("Show", GRID_MODES, key="grid_mode", default=GRID_MODES[0], persist_state="session") or GRID_MODES[0]
    count = cols[1].selectbox("How many", (9, 18, 27, 36), key="grid_count", persist_state="session")
    klass = None
    if mode == "one class":
        klass = cols[2].selectbox("Class", range(len(dataset.class_names)), format_func=lambda i: dataset.class_names[i], key="grid_class", persist_state="session")
    if mode == "random sample" and cols[2].button("New sample", icon=":material/casino:", key="grid_resample"):
        st.session_state.grid_seed = int(st.session_state.get("grid_seed", 0)) + 1
    labels, names = dataset.test_labels, dataset.class_names
    seed = int(st.session_state.get("grid_seed", 0))
    # The page is redrawn several times an epoch while training: the grid changes only with the model.
    def draw() -> tuple:
        model = session.display_model  # during training: as after the last finished epoch
        indices = pick_images(model, dataset.test_images, labels, mode, count, klass, seed)
        probs = softmax(model.image_logits(dataset.test_images[indices]))  # (count, 10)
        titles = [(names[labels[i]], names[p], labels[i] == p) for i, p in zip(indices, probs.argmax(axis=1))]
        size, per_row = (130, 9) if presenter else (76, 9)
        html = charts.image_grid_html(dataset.test_images[indices], titles, size, per_row) if len(indices) else ""
        if presenter and html:  # the presenter view's styles stretch it to the page's width, nine to a row
            html = f'<div class="presenter-grid">{html}</div>'
        return indices, probs, html

    indices, probs, html = drawn_for_model(session, "grid", (session.run.id, mode, count, klass, seed, presenter), draw)
    if not len(indices):
        st.info("Every test image is classified correctly." if mode == "misclassified" else "No images to show.")
        return
    st.html(html)
    if training:
        return  # the probability chart waits for the end of training: one chart less to redraw per epoch
    left, right = st.columns([1, 3])
    choice = left.selectbox(
        "Inspect image", range(len(indices)), key="inspect",
        format_func=lambda k: f"#{k + 1}: {names[labels[indices[k]]]}", help="Its 10 softmax probabilities are drawn beside.",
    )
    choice = min(int(choice or 0), len(indices) - 1)
    left.caption("Green: the true class. Red: a wrong prediction. A confident model puts almost all probability on one class.")
    figure = charts.probability_figure(probs[choice], names, int(labels[indices[choice]]), height=340 if presenter else 260,
                                       font_size=PRESENTER_FONT if presenter else None)
    right.plotly_chart(charts.as_figure(figure), key="probs_chart", config={"displaylogo": False})


def pick_images(model: SoftmaxRegression, images: np.ndarray, labels: np.ndarray, mode: str, count: int, klass: int | None, seed: int) -> np.ndarray:
    """Indices of the test images to show for the chosen mode."""
    if mode == "random sample":
        return np.random.default_rng(seed).choice(len(labels), size=count, replace=False)
    if mode == "misclassified":
        wrong = np.flatnonzero(model.image_logits(images).argmax(axis=1) != labels)
        return wrong[:count]
    if mode == "one class" and klass is not None:
        return np.flatnonzero(labels == klass)[:count]
    return np.arange(count)


def run_history(session: Session, presenter: bool = False) -> None:
    """Every run of this session in a table; the ones picked are overlaid on the charts."""
    st.subheader("Run history")
    if not session.runs:
        st.caption("Each Train starts a run; finished and stopped runs are kept here for this session.")
        # The picker and the table are drawn empty: the browser loads their code now, not on the first Train,
        # whose page (and the first epochs behind it) it held up by a second or more.
        st.multiselect("Overlay on the charts", [], disabled=True, placeholder="Pick runs to compare with the current one")
        table = run_table([session.run]).iloc[0:0]  # the columns, no row
        if presenter:
            st.table(table)
        else:
            st.dataframe(table, width="stretch")
        return
    names = {r.id: r.name for r in session.runs}
    if "overlay" in st.session_state:  # runs may have been forgotten since
        st.session_state.overlay = [i for i in st.session_state.overlay if i in names]
    st.multiselect("Overlay on the charts", list(names), format_func=names.get, key="overlay", persist_state="session",
                   placeholder="Pick runs to compare with the current one")
    table = run_table(session.runs)
    if presenter:  # an HTML table: its text takes the presenter view's size (a data grid draws on a canvas)
        st.table(table)
    else:
        changed = [name for name in table.columns if any("→" in str(v) for v in table[name])]  # "0.1 → 0.2" needs room
        st.dataframe(table, width="stretch", column_config={name: st.column_config.TextColumn(width="medium") for name in changed})
    every = [{"run": r.id, **row} for r in session.runs for row in epoch_rows(r)]
    cols = st.columns([1, 1, 3])
    cols[0].download_button("All runs as CSV", csv_bytes(every), icon=":material/download:", file_name="softmax-runs.csv", mime="text/csv", key="csv_all", on_click="ignore")
    cols[1].button("Forget these runs", icon=":material/delete:", key="forget", on_click=forget_runs, args=(session,),
                   help="Delete the run history of this session, here and on the server.")
    if not store_problem(session):
        cols[2].caption(":material/bookmark: Runs are saved on this server under the link in the address bar: bookmark it to come back to "
                        "them. That link is yours alone: to share the settings with a class, use **Link for students** in the sidebar.")


FIGURE_FORMATS = {"test acc": "{:.3f}", "train acc": "{:.3f}", "train loss": "{:.4f}", "σ": "{:g}", "seconds": "{:.2f}"}


def run_table(runs: list[Run]):
    """The run history as shown: one row per run, its figures as text, a dash where a run has none (a loaded model's loss).

    Formatted here rather than by a pandas Styler, which cost the server about 20 ms on every run of the page.
    """
    import pandas as pd  # noqa: PLC0415 -- not in a tab's light first run
    rows = []
    for run in runs:
        row = run.summary()
        rows.append({**row, **{name: "—" if row[name] is None else form.format(row[name]) for name, form in FIGURE_FORMATS.items()}})
    return pd.DataFrame(rows).set_index("run")


def model_files(session: Session, dataset, controls: Controls) -> None:
    """Download the current parameters; upload a model file to continue from it."""
    st.subheader("Model file")
    cols = st.columns(2)
    cols[0].download_button("Parameters (.npz: W, b)", session.display_model.to_bytes(), icon=":material/download:", file_name=f"softmax-{dataset.name}-run-{session.run.id}.npz",
                            mime="application/octet-stream", key="npz", on_click="ignore")
    upload = cols[1].file_uploader("Continue from a model file (.npz with W 784×10 and b 10)", type=["npz"], key="upload")
    if upload is not None and st.session_state.get("upload_done") != upload.file_id:
        st.session_state.upload_done = upload.file_id
        try:
            model = SoftmaxRegression.load(upload.getvalue())  # bytes: a refusal says the file's size
        except ModelFileError as err:
            st.session_state.upload_message = ("error", f"{escape_markdown(upload.name)} was not loaded: {escape_markdown(str(err).rstrip('.'))}. Nothing was changed.")
        else:
            session.load_model(dataset, controls.setup, controls.config or run_config(session.run), model, upload.name)
            st.session_state.upload_message = None  # the status above says what was loaded and what to do next
        st.rerun()
    kind, text = st.session_state.get("upload_message") or (None, None)
    if kind == "error":
        st.error(text)
    elif kind == "success":
        st.success(text)
