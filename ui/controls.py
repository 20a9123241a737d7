"""The sidebar controls: hyperparameters with the lesson's defaults, kept in session state and the URL."""

from __future__ import annotations

import math
import re
import string
import unicodedata
from collections.abc import Callable, Mapping, Sequence
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


ECHO_LIMIT = 40  # characters of a URL value repeated in a message; the rest is cut ("…")
# Markdown's backslash escapes cover ASCII punctuation. "-" means something only at the start of a line (a list,
# a rule), and escaped text never holds a line break, so a "-" later on stays as it is (negative numbers stay readable).
_PUNCTUATION = frozenset(string.punctuation)
_KEEP_FORMAT = {"\u200d"}  # the zero-width joiner inside emoji such as 👩‍🔬: harmless, and showing it would break them
_JOINER = "\u2060"  # WORD JOINER: invisible, and no URL or e-mail pattern runs across it
_AUTOLINK = re.compile(r"(?<=:)(?=//)|(?<=[wW]{3})(?=\.)|(?=@)")  # where "http://x", "www.x" and "a@b.c" are cut
_DECIMAL = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")  # ASCII only; unambiguous: no backtracking blow-up


def escape_markdown(text: str, line_start: bool = True) -> str:
    """text to put inside Markdown (st.markdown, st.warning, ...) so that it shows as itself: never a link, image, tag or format.

    Every ASCII punctuation character is backslash-escaped (a leading "-" too); line breaks, tabs, other control
    characters and invisible format characters (bidi overrides) are shown by their code ("\\u000a"), so nothing
    can start a new block or turn the text around. Escapes do not stop GitHub-style autolinks (Streamlit finds
    URLs and e-mail addresses in the text after parsing), so an invisible word joiner breaks them up:
    "www.", "://" and "@" stay as they look but are never made a link. line_start=False: the text follows other
    text on its line.
    """
    text = str(text)
    joins = {m.start() for m in _AUTOLINK.finditer(text)}
    out = []
    started = not line_start  # past the leading spaces of a line
    for i, ch in enumerate(text):
        if i in joins:
            out.append(_JOINER)
        if unicodedata.category(ch) in ("Cc", "Zl", "Zp") or (unicodedata.category(ch) == "Cf" and ch not in _KEEP_FORMAT):
            out.append(f"\\\\u{ord(ch):04x}")  # a visible backslash, then the code
        elif ch in _PUNCTUATION and (ch != "-" or not started):
            out.append("\\" + ch)
        else:
            out.append(ch)
        started = started or not ch.isspace()
    return "".join(out)


def echo(text: str, limit: int = ECHO_LIMIT) -> str:
    """User text for a message, after other text on its line: cut to limit characters (then "…") and escaped for Markdown."""
    text = str(text)
    cut = text[:limit]
    core = cut.strip()
    start = cut.index(core) if core else len(cut)
    # spaces at either end are shown by their code: they matter ("mnist " is no data set) and would undo the bold around the echo
    ends = [re.sub(r"\s", lambda m: f"\\\\u{ord(m.group()):04x}", part) for part in (cut[:start], cut[start + len(core):])]
    return ends[0] + escape_markdown(core, line_start=False) + ends[1] + ("…" if len(text) > limit else "")


@dataclass(frozen=True)
class _Param:
    """One URL parameter: its session-state key, a parser and how the URL writes a value."""

    key: str
    parse: Callable[[str], tuple[object, bool]]  # text -> (value, exact?); ValueError("is not ...") says why not
    show: Callable[[object], str]
    adjusted: str = ""  # what an inexact value is not, for the message ("a slider step")


def _show(value: object) -> str:
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, float):
        short = f"{value + 0.0:g}"  # "1", "0.5", "1e-05"; never "-0"
        return short if float(short) == value else repr(value + 0.0)  # else the shortest text that reads back the same
    return str(value)


def _number(low: float, high: float, integer: bool = False, steps: tuple = (), log: bool = True) -> Callable[[str], tuple[object, bool]]:
    def parse(text: str) -> tuple[object, bool]:
        if not _DECIMAL.fullmatch(text):
            word = text.strip().lower().lstrip("+-")
            raise ValueError("is not a finite number" if word in ("nan", "inf", "infinity") else "is not a number")
        value = float(text) + 0.0  # a 100,000-digit number is inf here: outside any range
        if not low <= value <= high:
            raise ValueError(f"is outside {low:g} to {high:g}")
        if integer and value != int(value):
            raise ValueError("is not a whole number")
        exact = True
        if steps:  # sliders offer fixed steps: take the nearest (on a log scale for rates and sizes)
            distance = (lambda o: abs(math.log((o or 1e-9) / (value or 1e-9)))) if log else (lambda o: abs(o - value))
            snapped = min(steps, key=distance)
            exact, value = snapped == value, snapped
        return (int(value) if integer else float(value)), exact

    return parse


def _choice(options: tuple | dict) -> Callable[[str], tuple[object, bool]]:
    def parse(text: str) -> tuple[object, bool]:
        if text not in options:
            raise ValueError(f"is not one of {', '.join(options)}")
        return text, True

    return parse


def _flag(text: str) -> tuple[bool, bool]:
    if text.lower() in ("1", "true", "yes", "on"):
        return True, True
    if text.lower() in ("0", "false", "no", "off", ""):
        return False, True
    raise ValueError("is not 1 or 0")


_PACE_SECONDS = {seconds: label for label, seconds in PACES.items()}


def _pace(text: str) -> tuple[str, bool]:
    seconds, exact = _number(min(_PACE_SECONDS), max(_PACE_SECONDS), steps=tuple(_PACE_SECONDS), log=False)(text)
    return _PACE_SECONDS[seconds], exact


def _show_pace(label: object) -> str:
    return _show(PACES[label]) if label in PACES else ""


_NUMBER = (_show, "a slider step")
# URL name -> the parameter; the URL's names are short, the session's keys are the core's field names
_URL: dict[str, _Param] = {
    "dataset": _Param("dataset", _choice(DATASETS), _show),
    "lr": _Param("lr", _number(1e-4, 100, steps=LEARNING_RATES), *_NUMBER),
    "epochs": _Param("epochs", _number(1, 100, integer=True), _show),
    "batch": _Param("batch_size", _number(1, 60000, integer=True, steps=BATCH_SIZES), *_NUMBER),
    "sigma": _Param("sigma", _number(0, 1), _show),
    "seed": _Param("seed", _number(0, 2**31 - 1, integer=True), _show),
    "momentum": _Param("momentum", _number(0, 0.99), _show),
    "wd": _Param("weight_decay", _number(0, 0.01, steps=WEIGHT_DECAYS), *_NUMBER),
    "schedule": _Param("schedule", _choice(SCHEDULES), _show),
    "step": _Param("step_size", _number(1, 100, integer=True), _show),
    "gamma": _Param("gamma", _number(0.05, 1), _show),
    "softmax": _Param("softmax", _choice(SOFTMAXES), _show),
    "presenter": _Param("presenter", _flag, _show),
    "pace": _Param("pace", _pace, _show_pace, f"one of the paces ({', '.join(map(_show, _PACE_SECONDS))} seconds per epoch)"),
}


def parse_query(params: Mapping[str, str | Sequence[str]]) -> tuple[dict[str, object], list[str]]:
    """Settings from URL parameters, and one Markdown-safe message per parameter that was refused or adjusted.

    A parameter given several times (a list of values) takes the last one. Unknown parameters are ignored.
    """
    values: dict[str, object] = {}
    problems = []
    for name, param in _URL.items():  # our names only: nothing of an unknown parameter is ever repeated
        if name not in params:
            continue
        given = params[name]
        texts = [given] if isinstance(given, str) else [str(t) for t in given]
        if not texts:
            continue
        text = texts[-1]
        if len(set(texts)) > 1:
            problems.append(f"**{name}** was given {len(texts)} times; using the last one, **{name}={echo(text)}**.")
        default = param.show(DEFAULTS[param.key])
        try:
            value, exact = param.parse(text)
        except ValueError as err:
            problems.append(f"**{name}={echo(text)}** was ignored: it {escape_markdown(str(err))}; using {escape_markdown(default)}.")
            continue
        values[param.key] = value
        if not exact:
            problems.append(f"**{name}={echo(text)}** is not {escape_markdown(param.adjusted)}; using {escape_markdown(param.show(value))}.")
    return values, problems


def query_of(state: Mapping[str, object]) -> dict[str, str]:
    """URL parameters for the current settings (only those that differ from the defaults; never an id)."""
    out = {}
    for name, param in _URL.items():
        value = state.get(param.key, DEFAULTS[param.key])
        if value != DEFAULTS[param.key] and (text := param.show(value)):
            out[name] = text
    return out


def student_link_query(state: Mapping[str, object]) -> dict[str, str]:
    """The URL parameters of a link to share with a class: the settings, presenter view and pace, but no session id (sid)."""
    return {name: text for name, text in query_of(state).items() if name != "sid"}


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
    values, problems = parse_query({name: st.query_params.get_all(name) for name in st.query_params})
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
