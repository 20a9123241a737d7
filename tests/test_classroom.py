"""Classroom load, small: 4 emulated browser sessions train at once on one real Streamlit server.

Uses the machinery of benchmarks/load_classroom.py (loaded by file path: benchmarks/ is not a package):
every session must reach epoch 5, and every log line it showed must equal its seed trained alone.
No timing is asserted: the load waits on its sessions finishing with a limit that only catches a hang (the
machine is shared, so 25 epochs may take minutes with nothing wrong); the times are printed (pytest -rP shows them).
"""

from __future__ import annotations

import importlib.util
import sys
import threading
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
SESSIONS = 4
HANG_LIMIT_S = 600.0  # a hang, not slowness: benchmarks/load_classroom.py measures the time


def load_script():
    """benchmarks/load_classroom.py as a module."""
    path = REPO / "benchmarks" / "load_classroom.py"
    spec = importlib.util.spec_from_file_location("load_classroom", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the class is built
    spec.loader.exec_module(module)
    return module


@pytest.mark.timeout(HANG_LIMIT_S + 300)  # past the load's own limit: its report says which session hung
def test_sessions_train_at_once_without_crosstalk(data_root: Path) -> None:
    lc = load_script()
    result: dict = {}

    def drive() -> None:  # its own thread: the browser tests' Playwright keeps an event loop in this one
        result["out"] = lc.run_load(sessions=SESSIONS, data_dir=data_root, timeout=HANG_LIMIT_S, page_check=False, log=lambda _: None)

    worker = threading.Thread(target=drive)
    worker.start()
    worker.join()
    out = result["out"]
    text = lc.report(out)
    print(text)  # the timing, reported and not asserted
    assert out["server_alive_at_end"], text
    assert not out["failed"], text
    assert len(out["results"]) == SESSIONS + 1, text  # the load and the warm-up session
    for result in out["results"]:
        assert sorted(result["lines"]) == list(range(lc.EPOCHS + 1)), text  # untrained + epochs 1-5
        assert result["exceptions"] == [] and result["error"] is None, text
    assert out["crosstalk"] == [], text
    assert out["ok"], text
