"""Figures, tables and image grids for the explorer and inspector pages (pure functions of arrays; no Streamlit)."""

from __future__ import annotations

import html
from collections.abc import Sequence

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from .charts import GREEN, class_axis, png_data_uri

FLOAT32_EXP_LIMIT = float(np.log(np.finfo(np.float32).max))  # ≈ 88.72: exp of anything larger is inf in float32


# --- Softmax explorer -------------------------------------------------------------------------------


def matrix_frame(values: np.ndarray, column: str = "class", row: str = "row", sums: str | None = None) -> pd.DataFrame:
    """A small (rows, cols) matrix as a table with columns '<column> 0'…, rows 'row 1'…, and optionally a sum column."""
    values = np.asarray(values, dtype=np.float64)
    frame = pd.DataFrame(values, columns=[f"{column} {j}" for j in range(values.shape[1])], index=[f"{row} {i + 1}" for i in range(values.shape[0])])
    if sums:
        frame[sums] = values.sum(axis=1)
    return frame


def number_text(value: float, digits: int = 4) -> str:
    """A cell for the overflow tables: 'nan' and 'inf' spelled out, huge and tiny numbers in e-notation."""
    if np.isnan(value):
        return "nan"
    if np.isinf(value):
        return "inf" if value > 0 else "-inf"
    if value != 0 and not 1e-3 <= abs(value) < 1e5:
        return f"{value:.{min(digits, 3)}e}"
    return f"{value:.{digits}f}"


def text_frame(values: np.ndarray, sums: np.ndarray | None = None, sums_label: str = "row sum") -> pd.DataFrame:
    """Like matrix_frame, but every cell is text (so nan and inf show as such, not as empty cells)."""
    values = np.asarray(values)
    frame = pd.DataFrame(
        [[number_text(v) for v in row] for row in values],
        columns=[f"class {j}" for j in range(values.shape[1])],
        index=[f"row {i + 1}" for i in range(values.shape[0])],
    )
    if sums is not None:
        frame[sums_label] = [number_text(v) for v in sums]
    return frame


def probability_bars(probs: np.ndarray, title: str, height: int = 260) -> go.Figure:
    """Each row's softmax probabilities (rows, classes) as grouped bars, one colour per row."""
    fig = go.Figure()
    for i, row in enumerate(probs):
        fig.add_trace(
            go.Bar(
                x=[f"class {j}" for j in range(len(row))], y=row, name=f"row {i + 1}",
                text=[f"{p:.2f}" for p in row], textposition="outside", cliponaxis=False,
                hovertemplate=f"row {i + 1}, %{{x}}: %{{y:.4f}}<extra></extra>",
            )
        )
    fig.update_layout(
        height=height, barmode="group", title={"text": title, "x": 0.01},
        yaxis={"range": [0, 1.1], "title": "probability"},
        margin={"l": 10, "r": 10, "t": 40, "b": 10}, legend={"orientation": "h", "y": 1.12, "x": 1, "xanchor": "right"},
    )
    return fig


def overflow_notes(logits: np.ndarray) -> list[str]:
    """One sentence per row of float32 logits: does exp overflow there, and what the naive formula then returns."""
    notes = []
    with np.errstate(over="ignore"):
        for i, row in enumerate(logits, start=1):
            top = float(row.max())
            if top > FLOAT32_EXP_LIMIT:
                overflowing = int((row > FLOAT32_EXP_LIMIT).sum())
                notes.append(
                    f"Row {i}: the largest logit is {top:.1f} > {FLOAT32_EXP_LIMIT:.1f}, so exp gives inf "
                    f"({overflowing} of {row.size} entries); inf / inf = nan."
                )
            elif float(np.exp(row).sum()) == 0.0:
                notes.append(f"Row {i}: every logit is so negative that exp underflows to 0; 0 / 0 = nan.")
            else:
                notes.append(f"Row {i}: the largest logit is {top:.1f} ≤ {FLOAT32_EXP_LIMIT:.1f}: no overflow in this row.")
    return notes


# --- Model inspector --------------------------------------------------------------------------------


def weights_figure(W: np.ndarray, class_names: Sequence[str], height: int = 400) -> go.Figure:
    """The columns of W (784, 10) as ten 28×28 images in a 2×5 grid, on one colour scale centred on 0."""
    n_classes = W.shape[1]
    cols = (n_classes + 1) // 2
    fig = make_subplots(rows=2, cols=cols, subplot_titles=list(class_names), horizontal_spacing=0.02, vertical_spacing=0.08)
    limit = float(np.abs(W).max()) or 1.0
    for k in range(n_classes):
        fig.add_trace(
            go.Heatmap(
                z=W[:, k].reshape(28, 28), coloraxis="coloraxis", name=class_names[k],
                hovertemplate=f"{html.escape(class_names[k])}<br>row %{{y}}, column %{{x}}<br>weight %{{z:.4f}}<extra></extra>",
            ),
            row=k // cols + 1, col=k % cols + 1,
        )
    hidden = {"showticklabels": False, "ticks": "", "showgrid": False, "zeroline": False, "showline": False, "constrain": "domain"}
    fig.update_xaxes(**hidden)
    fig.update_yaxes(**hidden, autorange="reversed")
    for k in range(n_classes):  # square pixels: each y axis follows its own x axis
        suffix = "" if k == 0 else str(k + 1)
        fig.update_yaxes(scaleanchor=f"x{suffix}", scaleratio=1, row=k // cols + 1, col=k % cols + 1)
    fig.update_layout(
        height=height, margin={"l": 10, "r": 10, "t": 30, "b": 10},
        coloraxis={"colorscale": "RdBu", "cmid": 0, "cmin": -limit, "cmax": limit,
                   "colorbar": {"title": {"text": "weight"}, "thickness": 14, "len": 0.9}},
    )
    return fig


def confusion_counts(labels: np.ndarray, predictions: np.ndarray, n_classes: int) -> np.ndarray:
    """Counts (n_classes, n_classes) of images per (true class, predicted class): rows true, columns predicted."""
    pairs = np.asarray(labels, dtype=np.intp) * n_classes + np.asarray(predictions, dtype=np.intp)
    return np.bincount(pairs, minlength=n_classes * n_classes).reshape(n_classes, n_classes)


def confusion_figure(counts: np.ndarray, class_names: Sequence[str], height: int = 520) -> go.Figure:
    """The confusion matrix as a heatmap with its counts written in the cells (rows true, columns predicted)."""
    names = list(class_names)
    fig = go.Figure(
        go.Heatmap(
            z=counts.tolist(), x=names, y=names, colorscale="Blues", text=counts.tolist(), texttemplate="%{text}",
            textfont={"size": 12}, showscale=False,
            hovertemplate="true %{y}, predicted %{x}: %{z} images<extra></extra>",
        )
    )
    fig.update_layout(
        height=height, margin={"l": 10, "r": 10, "t": 10, "b": 10},
        xaxis={"title": "predicted class", "side": "bottom", "tickangle": -35, **class_axis(names)},
        yaxis={"title": "true class", "autorange": "reversed", **class_axis(names)},
    )
    return fig


def per_class_figure(accuracies: Sequence[float], class_names: Sequence[str], overall: float, height: int = 520) -> go.Figure:
    """Accuracy of each true class as horizontal bars: green at or above the overall accuracy, orange below."""
    names = list(class_names)
    colors = [GREEN if a >= overall else "#e08a1e" for a in accuracies]
    fig = go.Figure(
        go.Bar(
            x=list(accuracies), y=names, orientation="h", marker_color=colors,
            text=[f"{a:.3f}" for a in accuracies], textposition="outside", cliponaxis=False,
            hovertemplate="%{y}: %{x:.4f}<extra></extra>",
        )
    )
    fig.update_layout(
        height=height, margin={"l": 10, "r": 10, "t": 10, "b": 10},
        xaxis={"range": [0, 1.16], "tickvals": [0, 0.25, 0.5, 0.75, 1], "title": "accuracy"},
        yaxis={"autorange": "reversed", **class_axis(names)},
    )
    return fig


def confident_mistakes(probs: np.ndarray, labels: np.ndarray, count: int, true_class: int | None = None) -> np.ndarray:
    """Indices of up to `count` wrongly classified rows of probs (n, classes), most confident (highest max prob) first."""
    predictions = probs.argmax(axis=1)
    wrong = predictions != labels
    if true_class is not None:
        wrong &= labels == true_class
    indices = np.flatnonzero(wrong)
    order = np.argsort(-probs[indices, predictions[indices]], kind="stable")
    return indices[order[:count]]


def top_confusions(counts: np.ndarray, class_names: Sequence[str], n: int = 3) -> list[str]:
    """The n most frequent off-diagonal cells, as 'Shirt → T-shirt/top (161)'."""
    off = counts.copy()
    np.fill_diagonal(off, 0)
    flat = np.argsort(-off, axis=None, kind="stable")[:n]
    return [f"{class_names[i]} → {class_names[j]} ({off[i, j]})" for i, j in zip(*np.unravel_index(flat, off.shape)) if off[i, j]]


# --- Data explorer ----------------------------------------------------------------------------------


def class_counts_figure(counts: dict[str, np.ndarray], class_names: Sequence[str], height: int = 320) -> go.Figure:
    """Images per class, one bar group per split (e.g. {'train': (10,), 'test': (10,)})."""
    fig = go.Figure()
    for split, values in counts.items():
        fig.add_trace(
            go.Bar(
                x=list(class_names), y=values, name=split, text=[f"{v:,}" for v in values], textposition="outside",
                cliponaxis=False, hovertemplate=f"{split}, %{{x}}: %{{y:,}} images<extra></extra>",
            )
        )
    top = max(int(np.max(v)) for v in counts.values())
    fig.update_layout(
        height=height, barmode="group", margin={"l": 10, "r": 10, "t": 30, "b": 10},
        xaxis=class_axis(class_names),
        yaxis={"title": "images", "range": [0, top * 1.15]}, legend={"orientation": "h", "y": 1.12, "x": 1, "xanchor": "right"},
    )
    return fig


def mean_images(images: np.ndarray, labels: np.ndarray, n_classes: int) -> np.ndarray:
    """The mean image of each class, (n_classes, 28, 28) uint8 (rounded), from uint8 images (n, 28, 28)."""
    flat = images.reshape(len(images), -1)
    means = np.zeros((n_classes, flat.shape[1]), dtype=np.float64)
    for k in range(n_classes):
        rows = flat[labels == k]
        if len(rows):
            means[k] = rows.mean(axis=0, dtype=np.float64)
    return np.rint(means).astype(np.uint8).reshape(n_classes, *images.shape[1:])


def captioned_grid_html(images: np.ndarray, captions: Sequence[str], size: int, per_row: int) -> str:
    """Grey images, at most per_row a row, with a one- or two-line caption under each (captions may contain '\\n')."""
    cells = []
    for image, caption in zip(images, captions):
        text = "<br>".join(html.escape(line) for line in caption.split("\n"))
        cells.append(
            f'<figure style="margin:0;text-align:center;width:{size}px">'
            f'<img src="{png_data_uri(image)}" width="{size}" height="{size}" alt="{html.escape(caption)}" '
            f'style="image-rendering:pixelated;border-radius:3px;display:block;margin:auto">'
            f'<figcaption style="font-size:0.85em;line-height:1.25;margin-top:3px">{text}</figcaption></figure>'
        )
    # At most per_row images a row, fewer when the page is narrower (auto-fill wraps instead of overflowing).
    return (
        f'<div style="display:grid;grid-template-columns:repeat(auto-fill,{size}px);gap:12px 10px;'
        f'max-width:{per_row * size + (per_row - 1) * 10}px">' + "".join(cells) + "</div>"
    )


def class_rows_html(rows: Sequence[tuple[str, np.ndarray]], size: int) -> str:
    """One row of images per class, the class name on the left."""
    lines = []
    for name, images in rows:
        pictures = "".join(
            f'<img src="{png_data_uri(image)}" width="{size}" height="{size}" alt="{html.escape(name)}" '
            f'style="image-rendering:pixelated;border-radius:2px">'
            for image in images
        )
        lines.append(
            f'<div style="display:flex;align-items:center;gap:6px;margin-bottom:6px">'
            f'<div style="width:7.5em;flex:none;font-weight:600">{html.escape(name)}</div>'
            f'<div style="display:flex;flex-wrap:wrap;gap:6px">{pictures}</div></div>'
        )
    return "".join(lines)
