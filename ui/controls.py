"""The sidebar controls: hyperparameters with the lesson's defaults, kept in session state and the URL."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass

import streamlit as st

from softmax_core import DATASETS, ConfigError, TrainConfig
from softmax_core.training import SCHEDULES, SOFTMAXES

from .session import Setup

LEARNING_RATES = (0.001, 0.002, 0.003, 0.005, 0.01, 0.02, 0.03, 0.05, 0.1, 0.2, 0.3, 0.5, 1.0, 2.0, 3.0, 5.0, 10.0)
BATCH_SIZES = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096, 8192, 16384, 32768, 60000)
WEIGHT_DECAYS = (0.0, 1e-5, 1e-4, 1e-3, 1e-2)
PACES = {"as fast as possible": 0.0, "0.5 s per epoch": 0.5, "1 s per epoch": 1.0, "2 s per epoch": 2.0}
# The lesson's settings, as the core and the session define them, plus the page's own two.
DEFAULTS = {**asdict(Setup()), **asdict(TrainConfig()), "presenter": False, "pace": next(iter(PACES))}


def _number(low: float, high: float, integer: bool = False, snap: tuple | None = None) -> Callable[[str], object]:
    def parse(text: str) -> object:
        try:
            value = float(text)
        except ValueError:
            raise ValueError(f"{text!r} is not a number") from None
        if not math.isfinite(value) or not low <= value <= high:
            raise ValueError(f"{text} is outside {low:g} to {high:g}")
        if integer:
            if value != int(value):
                raise ValueError(f"{text} is not a whole number")
            value = int(value)
        if snap:  # sliders offer fixed steps: take the nearest (on a log scale for rates)
            value = min(snap, key=lambda option: abs(math.log((option or 1e-9) / (value or 1e-9))))
        return value

    return parse


def _choice(options: tuple | dict) -> Callable[[str], object]:
    def parse(text: str) -> object:
        if text not in options:
            raise ValueError(f"{text!r} is not one of {', '.join(options)}")
        return text

    return parse


def _flag(text: str) -> bool:
    if text.lower() in ("1", "true", "yes", "on"):
        return True
    if text.lower() in ("0", "false", "no", "off", ""):
        return False
    raise ValueError(f"{text!r} is not 1 or 0")


# URL name -> (session key, parser that returns the value or raises ValueError with the reason)
_URL: dict[str, tuple[str, Callable[[str], object]]] = {
    "dataset": ("dataset", _choice(DATASETS)),
    "lr": ("lr", _number(1e-4, 100, snap=LEARNING_RATES)),
    "epochs": ("epochs", _number(1, 100, integer=True)),
    "batch": ("batch_size", _number(1, 60000, integer=True, snap=BATCH_SIZES)),
    "sigma": ("sigma", _number(0, 1)),
    "seed": ("seed", _number(0, 2**31 - 1, integer=True)),
    "momentum": ("momentum", _number(0, 0.99)),
    "wd": ("weight_decay", _number(0, 0.01, snap=WEIGHT_DECAYS)),
    "schedule": ("schedule", _choice(SCHEDULES)),
    "step": ("step_size", _number(1, 100, integer=True)),
    "gamma": ("gamma", _number(0.05, 1)),
    "softmax": ("softmax", _choice(SOFTMAXES)),
    "presenter": ("presenter", _flag),
}


def parse_query(params: Mapping[str, str]) -> tuple[dict[str, object], list[str]]:
    """Settings from URL parameters, and one message per parameter that was refused or adjusted."""
    values: dict[str, object] = {}
    problems = []
    for name, text in params.items():
        if name not in _URL:
            continue
        key, parse = _URL[name]
        try:
            values[key] = parse(str(text))
        except ValueError as err:
            problems.append(f"`{name}={text}` was ignored: {err}; using {DEFAULTS[key]}.")
            continue
        if isinstance(values[key], float) and float(text) != values[key]:
            problems.append(f"`{name}={text}` was rounded to the nearest slider step, {values[key]:g}.")
    return values, problems


def query_of(state: Mapping[str, object]) -> dict[str, str]:
    """URL parameters for the current settings (only those that differ from the defaults)."""
    out = {}
    for name, (key, _) in _URL.items():
        value = state.get(key, DEFAULTS[key])
        if value != DEFAULTS[key]:
            out[name] = ("1" if value else "0") if isinstance(value, bool) else f"{value:g}" if isinstance(value, float) else str(value)
    return out


@dataclass(frozen=True)
class Controls:
    """What the sidebar asks for."""

    setup: Setup
    config: TrainConfig | None
    error: str  # why config is None
    presenter: bool
    pace: float  # seconds to spend per epoch at least (slow motion for a class)


def init_state() -> None:
    """Put the defaults, overridden by valid URL parameters, into session state once per session."""
    if "controls_ready" in st.session_state:
        return
    values, problems = parse_query(st.query_params.to_dict())
    for key, default in DEFAULTS.items():
        st.session_state.setdefault(key, values.get(key, default))
    st.session_state.url_problems = problems
    st.session_state.controls_ready = True


def chosen_setup() -> Setup:
    """The data set, seed and σ that the controls hold (before or after they are drawn)."""
    init_state()
    state = st.session_state
    return Setup(dataset=state.dataset, seed=int(state.seed), sigma=float(state.sigma))


def sidebar_controls(extra_query: Mapping[str, str] | None = None) -> Controls:
    """Draw the hyperparameter controls in the sidebar and return what they say; the URL gets the settings."""
    init_state()
    side = st.sidebar
    presenter = side.toggle("Presenter view", key="presenter", persist_state="session", help="Larger charts and images for a projector; hides the advanced settings.")
    side.header("Hyperparameters")
    side.select_slider("Learning rate", LEARNING_RATES, key="lr", persist_state="session", help="Step size of SGD (log scale). The lesson uses 0.1.")
    side.slider("Epochs", 1, 100, key="epochs", persist_state="session", help="Passes over the 60,000 training images per Train or Continue.")
    side.select_slider("Batch size", BATCH_SIZES, key="batch_size", persist_state="session", help="Images per SGD step; 60000 is the whole training set (full-batch gradient descent).")
    side.header("Model and data")
    side.selectbox("Data set", list(DATASETS), format_func=lambda n: DATASETS[n].title, key="dataset", persist_state="session")
    cols = side.columns(2)
    cols[0].number_input("Init scale σ", 0.0, 1.0, step=0.005, format="%.3f", key="sigma", persist_state="session", help="W ~ Normal(0, σ²); b = 0.")
    cols[1].number_input("Seed", 0, 2**31 - 1, step=1, key="seed", persist_state="session", help="One seed gives one result: the same init and the same shuffles.")
    if not presenter:
        with side.expander("Advanced: optimiser"):
            st.slider("Momentum", 0.0, 0.99, step=0.01, key="momentum", persist_state="session", help="0 is the lesson's plain SGD; 0.9 is a common choice.")
            st.select_slider("Weight decay (L2 on W)", WEIGHT_DECAYS, key="weight_decay", format_func=lambda v: f"{v:g}", persist_state="session")
            st.selectbox("Learning-rate schedule", SCHEDULES, key="schedule", persist_state="session", help="step: multiply by γ every few epochs; cosine: decay smoothly to 0 over the run.")
            if st.session_state.schedule == "step":
                c1, c2 = st.columns(2)
                c1.number_input("every (epochs)", 1, 100, step=1, key="step_size", persist_state="session")
                c2.number_input("γ", 0.05, 1.0, step=0.05, key="gamma", persist_state="session")
            st.selectbox(
                "Softmax", SOFTMAXES, key="softmax", persist_state="session",
                format_func=lambda v: {"stable": "stable (log-sum-exp)", "naive": "naive exp(z) / Σ exp(z), as in the lesson"}[v],
                help="The lesson's naive formula overflows once logits pass about 88 (float32): try it with learning rate 10.",
            )
            st.selectbox("Pace", list(PACES), key="pace", persist_state="session", help="Slow motion for a class: wait so each epoch takes at least this long.")
    state = st.session_state
    setup = chosen_setup()
    try:
        config = TrainConfig(
            lr=float(state.lr), batch_size=int(state.batch_size), epochs=int(state.epochs),
            momentum=float(state.momentum), weight_decay=float(state.weight_decay), schedule=state.schedule,
            step_size=int(state.step_size), gamma=float(state.gamma), softmax=state.softmax,
        )
        error = ""
    except (ConfigError, TypeError, ValueError) as err:
        config, error = None, str(err)
    st.query_params.from_dict({**query_of(state), **(extra_query or {})})
    return Controls(setup, config, error, bool(presenter), PACES.get(state.pace, 0.0))
