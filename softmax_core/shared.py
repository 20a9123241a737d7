"""A data set shared read-only between processes: its arrays as .npy files that every process memory-maps.

The server loads a data set once and publishes it; training workers map the same pages instead of
loading (and holding) a copy each. The files live in RAM where the system has /dev/shm, and are
removed when the publishing process exits (a folder left by a killed server is removed by the next one).
"""

from __future__ import annotations

import atexit
import contextlib
import os
import secrets
import shutil
import tempfile
import threading
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from .data import Dataset

ARRAYS = ("train_images", "train_labels", "test_images", "test_labels")
_PREFIX = "softmax-data-"
_lock = threading.Lock()
_published: dict[int, tuple[Dataset, SharedData]] = {}  # id(dataset) -> (that dataset, where its arrays are)


@dataclass(frozen=True)
class SharedData:
    """Where a published data set's four arrays are (a folder of .npy files), small enough to send to a worker."""

    name: str
    folder: str

    def arrays(self) -> dict[str, np.ndarray]:
        """The four arrays, memory-mapped read-only."""
        return {key: np.load(Path(self.folder) / f"{key}.npy", mmap_mode="r", allow_pickle=False) for key in ARRAYS}


def share(dataset: Dataset) -> Dataset:
    """The same data set on memory-mapped arrays that worker processes can map too (published once per dataset)."""
    return _publish(dataset)[0]


def shared_ref(dataset: Dataset) -> SharedData:
    """Where this data set's arrays are for other processes (published now if it was not yet)."""
    return _publish(dataset)[1]


def _publish(dataset: Dataset) -> tuple[Dataset, SharedData]:
    with _lock:
        if id(dataset) in _published:
            return _published[id(dataset)]
        _remove_stale()
        folder = Path(tempfile.mkdtemp(prefix=f"{_PREFIX}{os.getpid()}-{secrets.token_hex(4)}-", dir=_base()))
        atexit.register(shutil.rmtree, folder, ignore_errors=True)
        for key in ARRAYS:
            np.save(folder / f"{key}.npy", np.ascontiguousarray(getattr(dataset, key)), allow_pickle=False)
        ref = SharedData(dataset.name, str(folder))
        mapped = replace(dataset, **{key: array.view(np.ndarray) for key, array in ref.arrays().items()})
        # Both the original and the mapped data set lead to the same files (the loader may be asked either).
        _published[id(dataset)] = _published[id(mapped)] = (mapped, ref)
        return mapped, ref


def _base() -> str:
    shm = Path("/dev/shm")
    return str(shm) if shm.is_dir() and os.access(shm, os.W_OK) else tempfile.gettempdir()


def _remove_stale() -> None:
    """Remove folders published by processes that no longer run (a server that was killed)."""
    for folder in Path(_base()).glob(f"{_PREFIX}*"):
        pid = folder.name[len(_PREFIX) :].split("-", 1)[0]
        if pid.isdigit() and int(pid) != os.getpid() and not _running(int(pid)):
            with contextlib.suppress(OSError):
                shutil.rmtree(folder)


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
