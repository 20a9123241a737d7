"""Data sets for the pages: loaded once per server process and shared read-only by every session."""

from __future__ import annotations

import logging
import threading
from pathlib import Path

import streamlit as st

from softmax_core import DATASETS, DataError, Dataset, EpochRecord, load_dataset
from softmax_core.data import ENV_DATA_DIR, FILES, default_cache_dir, fetch
from softmax_core.shared import share

from .session import Setup, untrained_record

_LOG = logging.getLogger(__name__)


_downloaded: dict[str, Path] = {}  # data set -> the cache folder a Download button filled (read first from then on)


@st.cache_resource(show_spinner="Loading the data set…", max_entries=len(DATASETS))
def get_dataset(name: str) -> Dataset:
    """The data set from the usual places (never downloads: that is the user's choice, see data_missing_ui).

    What the page's Download button fetched is read first, so a damaged folder earlier in the search order
    cannot hide it. The arrays are memory-mapped from files the training workers map too: one copy for the server.
    """
    return share(load_dataset(name, download=False, prefer=_downloaded.get(name)))


@st.cache_resource(show_spinner=False, max_entries=256)
def epoch_zero(setup: Setup) -> EpochRecord:
    """A fresh model's epoch 0: the same for every session with this setup, so evaluated once per process."""
    return untrained_record(get_dataset(setup.dataset), setup)


def warm_up(setup: Setup) -> None:
    """Load the data set and evaluate a fresh model in the background, while the page's first run draws the rest."""

    def work() -> None:
        try:
            epoch_zero(setup)
        except DataError:
            pass  # the page explains what is missing
        except Exception:  # noqa: BLE001 -- the page's own call computes it again and shows the error
            _LOG.exception("warming up %s failed", setup)

    threading.Thread(target=work, name="warm-up", daemon=True).start()


def dataset_or_help(name: str) -> Dataset | None:
    """The data set, or None after drawing what is wrong and how to get it (with a download button)."""
    try:
        return get_dataset(name)
    except DataError as err:
        data_missing_ui(name, err)
        return None


def data_missing_ui(name: str, err: DataError) -> None:
    """Say plainly that the data is not on this server, what Download will do and how long it takes; offer it."""
    title = DATASETS[name].title
    size = 30 if name == "fashion-mnist" else 11  # MB of the four gzip files
    if "downloading is switched off" in str(err):  # found nowhere: the usual first start
        st.warning(f"**{title} is not on this server yet**, so there is nothing to train on.", icon=":material/cloud_download:")
    else:  # a damaged or partial folder: say which file, and that a download is read before it from then on
        st.error(f"**{title} could not be loaded.** Download fetches a fresh copy that this server then reads first; "
                 "or do what the message says.", icon=":material/error:")
        st.code(str(err), language=None, wrap_lines=True)
    st.markdown(
        f"**Download {title}** fetches its four files (about {size} MB) from the internet, checks each one against its "
        f"known hash and keeps them in this server's download cache, so it happens only once. That takes about "
        f"{size * 8 // 10} seconds on a 10 Mbit/s connection (a few seconds on a faster one); a progress bar shows each "
        "file, and the page opens by itself when they are in."
    )
    if st.button(f"Download {title} ({size} MB)", type="primary", icon=":material/download:", key=f"download_{name}"):
        bar = st.progress(0.0, text="Starting the download…")

        def progress(file_name: str, done: int, total: int) -> None:
            bar.progress(min(done / total, 1.0) if total else 0.0, text=f"{file_name}: {done / 1e6:.1f} of {total / 1e6:.1f} MB")

        try:
            _downloaded[name] = fetch(name, default_cache_dir(), progress)
        except DataError as download_err:
            st.error(f"The download failed.\n\n```\n{download_err}\n```")
            return
        get_dataset.clear()
        st.rerun()
    with st.expander("Other ways to get the data, and where the page looked"):
        st.markdown(
            f"""
1. Debian/Ubuntu: `sudo apt install dataset-fashion-mnist` (Fashion-MNIST only), then reload.
2. Put the four files ({", ".join(f"`{f}`" for f in FILES.values())}) in `ROOT/{name}/`
   and start the server with `{ENV_DATA_DIR}=ROOT`.
"""
        )
        st.code(str(err), language=None, wrap_lines=True)
