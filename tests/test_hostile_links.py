"""Hostile links: URL values are checked, never rendered as Markdown or HTML, echoed briefly, and every change is said."""

from __future__ import annotations

import re

import pytest
from streamlit.testing.v1 import AppTest

from softmax_core import TrainConfig
from ui.controls import (
    BATCH_SIZES,
    DEFAULTS,
    ECHO_LIMIT,
    LEARNING_RATES,
    PACES,
    WEIGHT_DECAYS,
    escape_markdown,
    parse_query,
    query_of,
    student_link_query,
)
from ui.session import Setup

from .conftest import REPO

MESSAGE_LIMIT = 300  # characters of one message, however long the value
# Characters that start Markdown/HTML constructs wherever they stand (links, images, tags, code, emphasis,
# entities, tables, strikethrough, math, headings, directives); "*" is left out: the messages bold the echo.
ACTIVE = set("[]()!<>`_&|~$#:@\\")

LINK = "[Session expired - click here](https://evil.example/login)"
FIELDS = {"dataset": "dataset", "lr": "lr", "epochs": "epochs", "batch": "batch_size", "sigma": "sigma", "seed": "seed",
          "momentum": "momentum", "wd": "weight_decay", "schedule": "schedule", "step": "step_size", "gamma": "gamma",
          "softmax": "softmax", "presenter": "presenter", "pace": "pace"}
# the lesson's defaults as a link writes them (the page says "using ..." with these)
DEFAULT_TEXT = {"dataset": "fashion-mnist", "lr": "0.1", "epochs": "5", "batch": "256", "sigma": "0.01", "seed": "0", "momentum": "0",
                "wd": "0", "schedule": "constant", "step": "5", "gamma": "0.5", "softmax": "stable", "presenter": "0", "pace": "0"}


def unescaped(markdown: str) -> str:
    """markdown with every backslash-escaped character (and its backslash) blanked out: what Markdown still reads as syntax."""
    return re.sub(r"\\.", " ", markdown, flags=re.DOTALL)


def parsed(markdown: str) -> str:
    """The text Markdown reads out of markdown: escapes resolved (Streamlit's autolinks then search this text)."""
    return re.sub(r"\\(.)", r"\1", markdown, flags=re.DOTALL)


def shown(markdown: str) -> str:
    """The text a reader sees: escapes resolved, bold markers and invisible word joiners gone."""
    return parsed(markdown.replace("**", "")).replace("\u2060", "")


def assert_inert(markdown: str) -> None:
    """No character of markdown can start a link, image, tag, autolink, code span or block."""
    live = unescaped(markdown).replace("**", "")
    # our own words use ":" and ";" ("was ignored: it is ..."), never next to user text
    assert not ACTIVE & set(live.replace("ignored: it", "")), live
    assert "\n" not in markdown and "\r" not in markdown
    assert not re.search(r"\s\*\*(?=[\s.,;]|$)", markdown)  # every bold echo closes (a space before its ** would leave the stars showing)
    # GitHub-style autolinks are found in the parsed text, escapes or not: what they look for must not be there
    assert not re.search(r"(?i)https?://|www\.|[-.\w+]@", parsed(markdown))
    assert all(ord(ch) >= 32 for ch in markdown)


def valid_settings(values: dict) -> None:
    """The settings the page would use are ones its controls can show and the core accepts."""
    state = {**DEFAULTS, **values}
    TrainConfig(lr=state["lr"], batch_size=state["batch_size"], epochs=state["epochs"], momentum=state["momentum"],
                weight_decay=state["weight_decay"], schedule=state["schedule"], step_size=state["step_size"],
                gamma=state["gamma"], softmax=state["softmax"])
    Setup(dataset=state["dataset"], seed=state["seed"], sigma=state["sigma"])
    assert state["lr"] in LEARNING_RATES and state["batch_size"] in BATCH_SIZES and state["weight_decay"] in WEIGHT_DECAYS
    assert state["pace"] in PACES and isinstance(state["presenter"], bool)
    assert type(state["epochs"]) is int and type(state["seed"]) is int and type(state["batch_size"]) is int
    assert parse_query(query_of(state)) == ({k: v for k, v in values.items() if v != DEFAULTS[k]}, [])  # the URL written back reads the same


# (parameter, value, what happens: "refused", or the value the page uses and the "using ..." it says when it changed the value)
CASES = [
    ("presenter", LINK, "refused"),
    ("dataset", "![x](http://host/p.png)", "refused"),
    ("schedule", "<img src=x onerror=alert(1)>", "refused"),
    ("softmax", "<script>alert('hi')</script>", "refused"),
    ("dataset", "`code` **bold** _it_ ~~s~~ $x^2$ :red[hi] :smile: &lt;", "refused"),
    ("softmax", "naive\n\n[click](http://evil.example)\n# Heading", "refused"),
    ("dataset", "fashion-mnist\u202e\u2066 [x](javascript:alert(1))", "refused"),
    ("lr", "www.evil.example", "refused"),
    ("gamma", "HTTPS://evil.example/x?a=1", "refused"),
    ("schedule", "mail@evil.example", "refused"),
    ("dataset", ":material/home: :smile: :red[alert]", "refused"),
    ("lr", "1" * 100_000, "refused"),
    ("seed", "9" * 100_000 + "x", "refused"),
    ("lr", "nan", "refused"),
    ("sigma", "-inf", "refused"),
    ("gamma", "Infinity", "refused"),
    ("epochs", "-5", "refused"),
    ("lr", "-0.1", "refused"),
    ("seed", str(2**64), "refused"),
    ("epochs", "7.5", "refused"),
    ("batch", "１２８", "refused"),  # full-width digits are not a number here
    ("step", "0x10", "refused"),
    ("dataset", "", "refused"),
    ("dataset", " mnist  ", "refused"),  # the message shows the spaces: dataset=\u0020mnist\u0020\u0020
    ("presenter", "", (False, "")),
    ("presenter", "yes", (True, "")),
    ("batch", "300", (256, "256")),
    ("batch", "100", (128, "128")),
    ("batch", "1e9", "refused"),
    ("lr", "0.15", (0.2, "0.2")),
    ("wd", "0.005", (0.01, "0.01")),
    ("wd", "1e-3", (0.001, "")),
    ("epochs", "1e2", (100, "")),
    ("pace", "1.7", ("2 s per epoch", "2")),
    ("pace", "0.5", ("0.5 s per epoch", "")),
    ("pace", "-1", "refused"),
    ("momentum", ["0.5", "0.9"], (0.9, "")),  # given twice: the last one, and it says so
]


@pytest.mark.parametrize(("name", "text", "outcome"), CASES, ids=[f"{n}-{i}" for i, (n, _, _) in enumerate(CASES)])
def test_hostile_values(name: str, text: str | list[str], outcome) -> None:
    values, problems = parse_query({name: text, "utm_source": LINK, "sid": "<b>x</b>"})  # unknown parameters: ignored
    last = text[-1] if isinstance(text, list) else text
    key = FIELDS[name]
    for message in problems:
        assert_inert(message)
        assert len(message) <= MESSAGE_LIMIT
        assert "utm_source" not in message and "<b>" not in message
    said = " ".join(shown(m) for m in problems)
    plain = last.isprintable() and last == last.strip()  # else spaces and control characters are shown by their code
    echoed = f"{name}={last[:ECHO_LIMIT]}" if plain else f"{name}="
    if outcome == "refused":
        assert key not in values and len(problems) == 1
        assert echoed in said and "was ignored" in said
        assert ("…" in said) == (len(last) > ECHO_LIMIT)
        assert said.endswith(f"using {DEFAULT_TEXT[name]}.")
    else:
        value, using = outcome  # using: the value the message says is used instead ("": no message)
        assert values[key] == value and type(values[key]) is type(value)
        if isinstance(text, list):
            assert said == f"{name} was given 2 times; using the last one, {name}={last}."
        elif using:
            assert len(problems) == 1 and echoed in said and said.endswith(f"using {using}.")
        else:
            assert problems == []
    valid_settings(values)


def test_escape_markdown_shows_text_as_itself() -> None:
    for text in [LINK, "![x](http://h/p.png)", "<a href='x'>y</a>", "a\\b", "`x`", "- item", "1. item", "# h", "|a|b|",
                 "www.x.org", "me@x.org", "mailto:me@x.org"]:
        escaped = escape_markdown(text)
        assert shown(escaped) == text and not ACTIVE & set(unescaped(escaped))
        assert not re.search(r"(?i)https?://|www\.|[-.\w+]@", parsed(escaped))
        assert not unescaped(escaped).lstrip().startswith(("-", "1.", "#", "+", "*"))  # no list or heading either
    assert escape_markdown("a - b -1") == "a - b -1"  # a "-" after other text stays
    assert escape_markdown("-1") == "\\-1" and escape_markdown("-1", line_start=False) == "-1"
    assert escape_markdown("x\ny\u202e") == "x\\\\u000ay\\\\u202e"  # shown as x\u000ay\u202e: no line break, no bidi turn
    assert escape_markdown("👩\u200d🔬 Zoë") == "👩\u200d🔬 Zoë"


def test_pace_and_student_links() -> None:
    state = {**DEFAULTS, "pace": "1 s per epoch", "presenter": True, "lr": 0.5, "owner": "abc", "sid": "abc"}
    query = student_link_query(state)
    assert query == {"lr": "0.5", "presenter": "1", "pace": "1"}
    assert query_of(state) == query and "sid" not in query
    assert parse_query(query) == ({"lr": 0.5, "presenter": True, "pace": "1 s per epoch"}, [])
    assert query_of(DEFAULTS) == {} and student_link_query(DEFAULTS) == {}


def test_the_page_shows_hostile_values_as_plain_text(data_root, monkeypatch) -> None:
    monkeypatch.setenv("SOFTMAX_DATA_DIR", str(data_root))
    monkeypatch.setenv("SOFTMAX_RUNS_DB", "off")
    hostile = {"presenter": LINK, "dataset": "![x](http://host/p.png)", "lr": "1" * 100_000,
               "schedule": "<img src=x onerror=alert(1)>", "batch": "100", "ref": LINK}
    at = AppTest.from_file(str(REPO / "dashboard.py"), default_timeout=60)
    at.query_params.update(hostile)
    at.run()
    assert not at.exception, [e.message for e in at.exception]
    [warning] = [w for w in at.warning if "settings were checked" in w.value]
    body = warning.value
    assert len(body) < 1000  # five messages, each bounded, not a 200,000-character alert
    items = body.split("\n\n", 1)[1].split("\n")
    assert len(items) == 5 and all(item.startswith("- ") for item in items)
    for item in items:
        assert_inert(item[2:])
    for raw in ("[", "](", "![", "<img", "http:", "https:"):
        assert raw not in unescaped(body)
    for escaped in (r"\[Session expired - click here\]\(https\:", r"\!\[x\]\(http\:", r"\<img src\=x"):
        assert escaped in body
    assert "batch=100** is not a slider step; using 128." in body
    assert "ref" not in body
    assert at.select_slider(key="batch_size").value == 128 and at.select_slider(key="lr").value == 0.1
    assert at.toggle(key="presenter").value is False
