"""Plotly figures and image helpers for the pages (pure functions of runs and arrays)."""

from __future__ import annotations

import base64
import functools
import html
import io
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from .session import Run

if TYPE_CHECKING:
    import plotly.graph_objects as go

GREEN, RED = "rgb(0,150,70)", "rgb(215,25,28)"  # a true class or right guess; a wrong guess
COLORS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf")
# The current run's four curves, each its own colour and dash, as in the lesson's plot (d2l's Animator: '-', 'm--',
# 'g-.', and 'r:' for the fourth). Overlaid runs: one colour per run (none of these four), the same dashes.
CURVES = {  # attribute -> (legend label, colour of the current run, dash)
    "train_loss": ("train loss", "#1f77b4", "solid"),
    "test_loss": ("test loss", "#d62728", "dot"),
    "train_acc": ("train acc", "#bf00bf", "dash"),
    "test_acc": ("test acc", "#008000", "dashdot"),
}
RUN_COLORS = ("#ff7f0e", "#8c564b", "#17becf", "#7f7f7f", "#bcbd22", "#9467bd")


def as_figure(spec: dict) -> go.Figure:
    """A figure dict that st.plotly_chart sends as it is, with the default template as a Figure would carry it.

    st.plotly_chart validates a dict (~15 ms) and copies a Figure's (a few ms, and Plotly's objects take as
    long again to build): too much for a chart that thirty pages redraw every epoch. The dict is built by
    this module and its shape is checked by the tests.
    """
    import plotly.io as pio  # noqa: PLC0415

    return _spec_figure_class()({**spec, "layout": {**spec.get("layout", {}), "template": _template(pio.templates.default)}})


@functools.cache
def _template(name: str) -> dict:
    import plotly.io as pio  # noqa: PLC0415

    return pio.templates[name].to_plotly_json()


@functools.cache
def _spec_figure_class() -> type:
    import plotly.graph_objects as go  # noqa: PLC0415 -- not needed for a tab's light first run

    class SpecFigure(go.Figure):
        """A Figure that is only its dict: st.plotly_chart asks a Figure for to_dict() and validates nothing else."""

        def __init__(self, spec: dict) -> None:  # noqa: PLW0231 -- Plotly's own set-up is what this skips
            object.__setattr__(self, "_spec", spec)

        def to_dict(self) -> dict:
            return self._spec

    return SpecFigure


def class_axis(class_names: Sequence[str]) -> dict:
    """A Plotly axis with one tick per class, in order: MNIST's names "0"…"9" would otherwise be read as numbers
    and labelled 0, 2, 4, 6, 8 only."""
    names = list(class_names)
    return {"type": "category", "categoryorder": "array", "categoryarray": names, "tickmode": "array", "tickvals": names, "ticktext": names}


def curves_figure(current: Run | None, overlays: Sequence[Run], height: int = 320, font_size: int = 13) -> dict:
    """Loss (left) and accuracy (right) per epoch: the current run solid and bold, overlaid runs fainter.

    font_size sets the ticks, axis titles and legend (the subplot titles are 3 px larger); a presenter asks for ≥ 18.
    A plain figure dict: it is redrawn while training, and Plotly's figure objects cost ~30 ms to build.
    """
    runs = [r for r in overlays if r is not current] + ([current] if current else [])
    traces = []
    for run in runs:
        is_current = run is current
        for attr, (label, own_color, dash) in CURVES.items():
            xaxis, yaxis = ("x", "y") if attr.endswith("loss") else ("x2", "y2")
            color = own_color if is_current else RUN_COLORS[(run.id - 1) % len(RUN_COLORS)]
            # Epoch 0 has no training pass: its train accuracy is not the lesson's "train acc".
            points = [r for r in run.records if r.epoch > 0 or attr != "train_acc"]
            traces.append({
                "type": "scatter", "xaxis": xaxis, "yaxis": yaxis,
                "x": [r.epoch for r in points],
                "y": [float(getattr(r, attr)) for r in points],
                "name": label if is_current else f"run {run.id}: {label}",
                "legendgroup": str(run.id),
                "showlegend": is_current or xaxis == "x",
                "mode": "lines+markers",
                "line": {"color": color, "dash": dash, "width": 3 if is_current else 1.5},
                "marker": {"size": 7 if is_current else 4, "symbol": "circle" if "train" in attr else "diamond"},
                "opacity": 1.0 if is_current else 0.55,
                "hovertemplate": f"{label}, epoch %{{x}}: %{{y:.4f}}<extra>run {run.id}</extra>",
            })
    last_epoch = max((r.records[-1].epoch for r in runs if r.records), default=1)
    epoch_axis = {"title": {"text": "epoch"}, "range": [-0.3, max(last_epoch, 5) + 0.3]}
    if last_epoch <= 20:
        epoch_axis["dtick"] = 1
    title = {"xref": "paper", "yref": "paper", "y": 1.0, "yanchor": "bottom", "showarrow": False, "font": {"size": font_size + 3}}
    layout = {
        "height": height,
        "font": {"size": font_size},
        "margin": {"l": 10, "r": 10, "t": 40, "b": 10},
        "legend": {"orientation": "v", "x": 1.01, "y": 1, "xanchor": "left"},
        "uirevision": "curves",  # keep the user's zoom while points are added
        "xaxis": {**epoch_axis, "domain": [0, 0.46], "anchor": "y"},
        "xaxis2": {**epoch_axis, "domain": [0.54, 1], "anchor": "y2"},
        "yaxis": {"title": {"text": "cross-entropy"}, "rangemode": "tozero", "anchor": "x"},
        "yaxis2": {"title": {"text": "accuracy"}, "range": [0, 1], "anchor": "x2"},
        "annotations": [
            {**title, "text": "Loss per epoch", "x": 0.23, "xanchor": "center"},
            {**title, "text": "Accuracy per epoch", "x": 0.77, "xanchor": "center"},
        ],
    }
    return {"data": traces, "layout": layout}


def probability_figure(probs: np.ndarray, class_names: Sequence[str], true: int, height: int = 300, font_size: int | None = None,
                       title: str | None = None) -> dict:
    """The 10 softmax probabilities of one image, the true class in green and a wrong guess in red.

    font_size (None: Plotly's 12) sets the ticks, bar labels and axis title; the title is 2 px larger. title (None:
    the true and predicted classes) replaces the title. A plain figure dict, like curves_figure: every full run of
    the Train page draws it, and building Plotly's objects took about 15 ms.
    """
    pred = int(np.argmax(probs))
    colors = ["#9aa5b1"] * len(class_names)
    colors[true] = GREEN
    if pred != true:
        colors[pred] = RED
    bar = {
        "type": "bar", "x": list(class_names), "y": [float(p) for p in probs], "marker": {"color": colors},
        "text": [f"{p:.2f}" for p in probs], "textposition": "outside", "hovertemplate": "%{x}: %{y:.4f}<extra></extra>",
    }
    layout = {
        "height": height, "margin": {"l": 10, "r": 10, "t": 40, "b": 10},
        "title": {"text": title or f"softmax probabilities (true: {class_names[true]}, predicted: {class_names[pred]})", "x": 0.02},
        "xaxis": class_axis(class_names),
        "yaxis": {"range": [0, 1.12], "title": {"text": "probability"}},
    }
    if font_size:
        layout["font"] = {"size": font_size}
        layout["title"]["font"] = {"size": font_size + 2}
    return {"data": [bar], "layout": layout}


def png_data_uri(image: np.ndarray) -> str:
    """A small uint8 image (grey or RGB) as a PNG data URI, for inline HTML."""
    from PIL import Image  # noqa: PLC0415 -- imported when first drawn, like plotly above

    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="PNG", compress_level=1)  # redrawn every epoch: fast beats a few bytes less
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


def image_uri(image: np.ndarray) -> str:
    """png_data_uri of a test image, kept: every page shows the same few images again after every epoch."""
    return _cached_uri(image.tobytes(), image.shape)


@functools.lru_cache(maxsize=2048)
def _cached_uri(pixels: bytes, shape: tuple[int, ...]) -> str:
    return png_data_uri(np.frombuffer(pixels, dtype=np.uint8).reshape(shape))


def image_grid_html(images: np.ndarray, titles: Sequence[tuple[str, str, bool]], size: int, per_row: int) -> str:
    """Images in rows, each captioned true / predicted; a wrong prediction is framed and written in red."""
    cells = []
    for number, (image, (true, pred, ok)) in enumerate(zip(images, titles), start=1):
        color = GREEN if ok else RED
        mark = "✓" if ok else "✗"
        cells.append(
            f'<figure style="margin:0;text-align:center;width:{size + 8}px">'
            f'<img src="{image_uri(image)}" width="{size}" height="{size}" alt="test image {number}: {html.escape(true)}" '
            f'style="image-rendering:pixelated;border:4px solid {color};border-radius:3px;display:block;margin:auto">'
            f'<figcaption style="font-size:0.85em;line-height:1.25;margin-top:2px">'
            f'<span style="opacity:0.6">#{number}:</span> {html.escape(true)}<br>'
            f'<b style="color:{color}">{mark} {html.escape(pred)}</b></figcaption></figure>'
        )
    return (
        f'<div style="display:grid;grid-template-columns:repeat(auto-fill,minmax({size + 8}px,1fr));gap:12px 6px;'
        f'max-width:{per_row * (size + 16)}px">' + "".join(cells) + "</div>"
    )


# --- How it learns, Why this prediction: 28×28 maps side by side on diverging scales centred at 0 -----------------


def image_maps_figure(
    panels: Sequence[tuple[str, np.ndarray, int | None]], scales: Sequence[str], height: int = 300, font_size: int = 13,
) -> dict:
    """28×28 maps in a row, each (title, map, scale): scale indexes `scales` (colour bar titles), None draws a uint8 image in grey.

    Maps of one scale share one red-white-blue colour axis, symmetric about 0 (white), with its colour bar under
    them: blue is positive, red negative, as in the inspector's weight images. A title may have two lines ("\\n").
    A plain figure dict, like curves_figure.
    """
    n, gap, bottom = len(panels), 0.025, 0.2  # bottom: the colour bars' room
    width = (1 - gap * (n - 1)) / n
    domains = [(i * (width + gap), i * (width + gap) + width) for i in range(n)]
    lines = max(title.count("\n") + 1 for title, _, _ in panels)
    hidden = {"showticklabels": False, "ticks": "", "showgrid": False, "zeroline": False, "showline": False, "constrain": "domain"}
    traces, annotations = [], []
    layout: dict = {"height": height, "font": {"size": font_size}, "margin": {"l": 4, "r": 4, "t": 8 + 2 * lines * font_size, "b": 4}}
    for i, (title, values, scale) in enumerate(panels):
        suffix = "" if i == 0 else str(i + 1)
        title_lines = [html.escape(line) for line in title.split("\n")]
        z = np.asarray(values, dtype=np.float64).reshape(28, 28)  # float32 values are exact in float64
        trace = {"type": "heatmap", "z": z.tolist(), "xaxis": f"x{suffix}", "yaxis": f"y{suffix}", "name": " ".join(title_lines)}
        if scale is None:
            trace.update(colorscale=[[0, "black"], [1, "white"]], zmin=0, zmax=255, showscale=False,
                         hovertemplate="row %{y}, column %{x}: pixel %{z:.0f}<extra></extra>")
        else:
            trace.update(coloraxis=f"coloraxis{'' if scale == 0 else scale + 1}",
                         hovertemplate=f"row %{{y}}, column %{{x}}: %{{z:.5f}}<extra>{title_lines[0]}</extra>")
        traces.append(trace)
        layout[f"xaxis{suffix}"] = {**hidden, "domain": list(domains[i]), "anchor": f"y{suffix}"}
        layout[f"yaxis{suffix}"] = {**hidden, "domain": [bottom, 1], "anchor": f"x{suffix}", "autorange": "reversed",
                                    "scaleanchor": f"x{suffix}", "scaleratio": 1}
        annotations.append({"text": "<br>".join(title_lines), "xref": "paper", "yref": "paper", "x": sum(domains[i]) / 2, "y": 1,
                            "xanchor": "center", "yanchor": "bottom", "showarrow": False, "font": {"size": font_size + 1}})
    for s, name in enumerate(scales):
        members = [i for i, panel in enumerate(panels) if panel[2] == s]
        if not members:
            continue
        magnitudes = np.concatenate([np.abs(np.ravel(panels[i][1])) for i in members])
        limit = float(magnitudes[np.isfinite(magnitudes)].max(initial=0.0)) or 1.0  # an inf or NaN must not hide the rest
        left, right = domains[members[0]][0], domains[members[-1]][1]
        layout[f"coloraxis{'' if s == 0 else s + 1}"] = {
            "colorscale": "RdBu", "cmid": 0, "cmin": -limit, "cmax": limit,
            "colorbar": {"title": {"text": html.escape(name), "side": "top"}, "orientation": "h", "x": (left + right) / 2,
                         "xanchor": "center", "len": (right - left) * 0.9, "lenmode": "fraction", "y": bottom - 0.06,
                         "yanchor": "top", "thickness": 10, "tickfont": {"size": font_size - 2}, "exponentformat": "e"},
        }
    layout["annotations"] = annotations
    return {"data": traces, "layout": layout}


# --- Train page: the ten columns of W beside the curves --------------------------------------------------------------


def weight_images(W: np.ndarray) -> np.ndarray:
    """The columns of W (784, c) as c RGB images (c, 28, 28, 3): red where a pixel raises the class's score, blue where it
    lowers it, white at 0, on one scale for all classes (the 99th percentile of |w|: a few large weights would wash out the rest)."""
    maps = np.asarray(W, dtype=np.float32).T.reshape(-1, 28, 28)  # (c, 28, 28)
    scale = float(np.percentile(np.abs(maps), 99)) or 1.0
    t = np.clip(maps / scale, -1.0, 1.0)[..., None]  # (c, 28, 28, 1) in [-1, 1]
    red, white, blue = np.array([178, 24, 43], np.float32), np.float32(255), np.array([33, 102, 172], np.float32)
    rgb = np.where(t >= 0, white + t * (red - white), white + (-t) * (blue - white))
    return rgb.round().astype(np.uint8)


def weights_strip_html(W: np.ndarray, class_names: Sequence[str], size: int) -> str:
    """The ten columns of W as small images in a row, each captioned with its class (no <figure>: not test images)."""
    cells = "".join(
        f'<div style="text-align:center;width:{size + 4}px">'
        f'<img src="{png_data_uri(image)}" width="{size}" height="{size}" alt="weights of class {html.escape(name)}" '
        f'style="image-rendering:pixelated;border-radius:3px;display:block;margin:auto">'
        f'<div style="font-size:0.8em;line-height:1.2;margin-top:2px;overflow:hidden;text-overflow:ellipsis;white-space:nowrap">'
        f"{html.escape(name)}</div></div>"
        for image, name in zip(weight_images(W), class_names)
    )
    return f'<div style="display:flex;flex-wrap:wrap;gap:6px" data-testid="weights-strip">{cells}</div>'
