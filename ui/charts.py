"""Plotly figures and image helpers for the pages (pure functions of runs and arrays)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import plotly.graph_objects as go

from .session import Run

COLORS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf")
RIGHT, WRONG = (0, 150, 70), (215, 25, 28)  # frame colours of correct and wrong predictions


def curves_figure(current: Run | None, overlays: Sequence[Run], kind: str, height: int = 320) -> go.Figure:
    """Loss ("loss") or accuracy ("accuracy") per epoch: the current run solid, overlaid runs fainter."""
    fig = go.Figure()
    series = (("train_loss", "train loss", "solid"), ("test_loss", "test loss", "dot"))
    if kind == "accuracy":
        series = (("train_acc", "train acc", "solid"), ("test_acc", "test acc", "dot"))
    runs = [r for r in overlays if r is not current] + ([current] if current else [])
    for run in runs:
        records = run.records
        is_current = run is current
        color = COLORS[(run.id - 1) % len(COLORS)]
        for attr, label, dash in series:
            # Epoch 0 has no training-pass figures: the lesson's train curves start at epoch 1.
            points = [r for r in records if r.epoch > 0 or attr.startswith("test") or kind == "loss"]
            fig.add_trace(
                go.Scatter(
                    x=[r.epoch for r in points],
                    y=[getattr(r, attr) for r in points],
                    name=f"{label}" if is_current else f"run {run.id}: {label}",
                    mode="lines+markers",
                    line={"color": color, "dash": dash, "width": 3 if is_current else 1.5},
                    marker={"size": 7 if is_current else 4},
                    opacity=1.0 if is_current else 0.6,
                    hovertemplate=f"{label}, epoch %{{x}}: %{{y:.4f}}<extra>run {run.id}</extra>",
                )
            )
    last_epoch = max((r.records[-1].epoch for r in runs if r.records), default=1)
    fig.update_layout(
        height=height,
        margin={"l": 10, "r": 10, "t": 40, "b": 10},
        title={"text": "Loss per epoch" if kind == "loss" else "Accuracy per epoch", "x": 0.02},
        legend={"orientation": "h", "y": -0.2},
        xaxis={"title": "epoch", "range": [-0.2, max(last_epoch, 5) + 0.2], "dtick": 1 if last_epoch <= 20 else None},
        yaxis={"title": "cross-entropy" if kind == "loss" else "accuracy", "range": [0, 1] if kind == "accuracy" else None, "rangemode": "tozero"},
        uirevision=kind,  # keep the user's zoom while points are added
    )
    return fig


def probability_figure(probs: np.ndarray, class_names: Sequence[str], true: int, height: int = 300) -> go.Figure:
    """The 10 softmax probabilities of one image, the true class in green and a wrong guess in red."""
    pred = int(np.argmax(probs))
    colors = ["#9aa5b1"] * len(class_names)
    colors[true] = "rgb(0,150,70)"
    if pred != true:
        colors[pred] = "rgb(215,25,28)"
    fig = go.Figure(
        go.Bar(
            x=list(class_names), y=probs, marker_color=colors,
            text=[f"{p:.2f}" for p in probs], textposition="outside",
            hovertemplate="%{x}: %{y:.4f}<extra></extra>",
        )
    )
    fig.update_layout(
        height=height, margin={"l": 10, "r": 10, "t": 40, "b": 10},
        title={"text": f"softmax probabilities (true: {class_names[true]}, predicted: {class_names[pred]})", "x": 0.02},
        yaxis={"range": [0, 1.12], "title": "probability"},
    )
    return fig


def framed(image: np.ndarray, correct: bool | None, scale: int = 4, border: int = 3) -> np.ndarray:
    """A 28x28 uint8 image enlarged `scale` times (crisp pixels) with a green, red or no frame, as RGB."""
    big = np.kron(image, np.ones((scale, scale), dtype=np.uint8))
    rgb = np.repeat(big[:, :, None], 3, axis=2)
    if correct is None:
        return rgb
    out = np.empty((rgb.shape[0] + 2 * border, rgb.shape[1] + 2 * border, 3), dtype=np.uint8)
    out[:] = RIGHT if correct else WRONG
    out[border:-border, border:-border] = rgb
    return out
