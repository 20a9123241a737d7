"""Data explorer: browse the training or test images by class, the class counts and each class's mean image."""

from __future__ import annotations

import numpy as np
import streamlit as st

from softmax_core import DATASETS, Dataset
from ui import explain
from ui.data import dataset_or_help, get_dataset
from ui.state import presenter_css, through_the_entry_point

SPLITS = ("train", "test")
PER_CLASS = (5, 8, 10)
COUNTS = (20, 40, 60, 80)
ALL = -1  # the "all classes" choice of the class picker


@st.cache_resource(max_entries=2 * len(DATASETS))
def class_means(name: str, split: str) -> np.ndarray:
    """Mean image of each class of one split, (10, 28, 28) uint8, computed once per server."""
    dataset = get_dataset(name)
    images, labels = split_arrays(dataset, split)
    means = explain.mean_images(images, labels, len(dataset.class_names))
    means.setflags(write=False)
    return means


def split_arrays(dataset: Dataset, split: str) -> tuple[np.ndarray, np.ndarray]:
    """(images (n, 28, 28) uint8, labels (n,)) of the train or test split."""
    if split == "train":
        return dataset.train_images, dataset.train_labels
    return dataset.test_images, dataset.test_labels


def main() -> None:
    """Draw the page for the data set chosen on the Train page."""
    st.set_page_config(page_title="Data explorer", layout="wide")
    presenter = bool(st.session_state.get("presenter", False))
    presenter_css(presenter)
    st.title("Data explorer")
    name = st.session_state.get("dataset", "fashion-mnist")
    dataset = dataset_or_help(name)
    if dataset is None:
        return
    st.markdown(
        f"**{dataset.title}**: {len(dataset.train_images):,} training and {len(dataset.test_images):,} test images of "
        f"28 × 28 grey pixels in {len(dataset.class_names)} classes (from the {dataset.source_kind}). "
        "The data set is chosen in the Train page's sidebar."
    )
    browse_section(dataset, presenter)
    counts_section(dataset)
    means_section(dataset, presenter)


def new_sample() -> None:
    st.session_state.dx_seed = int(st.session_state.get("dx_seed", 0)) + 1


def browse_section(dataset: Dataset, presenter: bool) -> None:
    """A random sample of images: one row per class, or a grid of one class."""
    st.subheader("Browse the images by class")
    names = dataset.class_names
    cols = st.columns([2, 3, 2, 2], vertical_alignment="bottom")
    split = cols[0].segmented_control("Split", SPLITS, default="train", key="dx_split", persist_state="session", format_func=str.capitalize) or "train"
    klass = cols[1].selectbox(
        "Class", [ALL, *range(len(names))], key="dx_class", persist_state="session",
        format_func=lambda k: "all classes (one row each)" if k == ALL else names[k],
    )
    cols[3].button("New sample", icon=":material/casino:", key="dx_resample", on_click=new_sample, width="stretch")
    images, labels = split_arrays(dataset, split)
    rng = np.random.default_rng(int(st.session_state.get("dx_seed", 0)))
    if klass == ALL:
        per_class = cols[2].selectbox("Per class", PER_CLASS, index=2, key="dx_per_class", persist_state="session")
        rows = []
        for k, class_name in enumerate(names):
            members = np.flatnonzero(labels == k)
            picked = np.sort(rng.choice(members, size=min(int(per_class), len(members)), replace=False))
            rows.append((class_name, images[picked]))
        st.html(explain.class_rows_html(rows, 72 if presenter else 56))
    else:
        count = cols[2].selectbox("How many", COUNTS, key="dx_count", persist_state="session")
        members = np.flatnonzero(labels == klass)
        picked = np.sort(rng.choice(members, size=min(int(count), len(members)), replace=False))
        captions = [f"#{i}" for i in picked]
        st.markdown(f"**{names[klass]}**: {len(picked)} of the {len(members):,} {split} images of this class")
        size, per_row = (110, 8) if presenter else (80, 10)
        st.html(explain.captioned_grid_html(images[picked], captions, size, per_row))
    st.caption(f"A random sample from the {split} split (#: the image's position in the split). New sample draws again.")


def counts_section(dataset: Dataset) -> None:
    """Images per class in each split."""
    st.subheader("Images per class")
    n = len(dataset.class_names)
    counts = {"train": np.bincount(dataset.train_labels, minlength=n), "test": np.bincount(dataset.test_labels, minlength=n)}
    st.plotly_chart(explain.class_counts_figure(counts, dataset.class_names), key="dx_counts", config={"displaylogo": False})
    balanced = all(len(set(v.tolist())) == 1 for v in counts.values())
    st.caption(
        "Every class has the same number of images, so a model that guesses at random is right 1 time in 10."
        if balanced else "The classes are not equally frequent: a model that always guesses the largest class beats 1 in 10."
    )


def means_section(dataset: Dataset, presenter: bool) -> None:
    """The mean image of each class: roughly the template a linear model can learn."""
    st.subheader("The mean image of each class")
    split = st.session_state.get("dx_split") or "train"
    means = class_means(dataset.name, split)
    size = 140 if presenter else 112  # 2 rows of 5, like the weights on the Model inspector page
    st.html(explain.captioned_grid_html(means, list(dataset.class_names), size, 5))
    st.caption(
        f"Pixel-wise mean over every {split} image of the class. Softmax regression scores each class with one weight "
        "per pixel, so it can only learn a template like these: compare with the weights on the Model inspector page."
    )


through_the_entry_point()
main()
