"""The dashboard's first screen with no server work: `bench_dashboard.py --part A --app benchmarks/standin_app.py`.

The same sidebar controls, title, caption, buttons, status and metrics as a new tab's first run of the Train
page, with literal values: no NumPy, no data, no model. Its page-open time is the floor for any page that
shows these controls in Streamlit on the machine at hand. STANDIN_WIDGETS=light swaps the select boxes for
radio buttons and the number inputs for sliders, the lightest widgets that could hold the same settings.
"""

import os

import streamlit as st

LIGHT = os.environ.get("STANDIN_WIDGETS") == "light"


def choice(where, label: str, options: list[str], key: str) -> None:
    """A select box, or radio buttons in the light variant."""
    if LIGHT:
        where.radio(label, options, key=key, horizontal=True)
    else:
        where.selectbox(label, options, key=key)


def train_page() -> None:
    """The first screen of the Train page."""
    side = st.sidebar
    side.toggle("Presenter view", key="presenter", help="Larger charts and images for a projector.")
    side.header("Hyperparameters")
    side.select_slider("Learning rate", [0.001, 0.003, 0.01, 0.03, 0.1, 0.3, 1.0, 3.0, 10.0], value=0.1, key="lr", help="Step size of SGD.")
    side.slider("Epochs", 1, 100, 5, key="epochs", help="Passes over the training images.")
    side.select_slider("Batch size", [1, 16, 64, 256, 1024, 60000], value=256, key="batch_size", help="Images per SGD step.")
    side.header("Model and data")
    choice(side, "Data set", ["Fashion-MNIST", "MNIST digits"], "dataset")
    if LIGHT:
        side.select_slider("Init scale σ", [0.001, 0.005, 0.01, 0.05, 0.1, 1.0], value=0.01, key="sigma", help="W ~ Normal(0, σ²).")
        side.slider("Seed", 0, 1000, 0, key="seed", help="One seed gives one result.")
    else:
        cols = side.columns(2)
        cols[0].number_input("Init scale σ", 0.0, 1.0, 0.01, step=0.005, format="%.3f", key="sigma", help="W ~ Normal(0, σ²).")
        cols[1].number_input("Seed", 0, 2**31 - 1, 0, step=1, key="seed", help="One seed gives one result.")
    with side.expander("Advanced: optimiser"):
        st.slider("Momentum", 0.0, 0.99, 0.0, step=0.01, key="momentum", help="0 is plain SGD.")
        st.select_slider("Weight decay (L2 on W)", [0.0, 1e-4, 1e-3, 1e-2], key="weight_decay")
        choice(st, "Learning-rate schedule", ["constant", "step", "cosine"], "schedule")
        choice(st, "Softmax", ["stable", "naive"], "softmax")
        choice(st, "Pace", ["full speed", "1 s per epoch"], "pace")
    st.title("Softmax regression from scratch")
    st.caption("Fashion-MNIST (60,000 training and 10,000 test images, from `data/fashion-mnist`) · W (784×10) ~ Normal(0, σ²), b = 0")
    cols = st.columns(5)
    cols[0].button("Train", icon=":material/play_arrow:", type="primary", width="stretch", help="Train from a fresh initialisation.")
    cols[1].button("Stop", icon=":material/stop:", disabled=True, width="stretch", help="Stop after the current batch.")
    cols[2].button("Continue", icon=":material/fast_forward:", width="stretch", help="Train the current model more.")
    cols[3].button("Step", icon=":material/skip_next:", width="stretch", help="One more epoch.")
    cols[4].button("Reset", icon=":material/restart_alt:", width="stretch", help="Back to an untrained model.")
    st.info("Untrained model (epoch 0): test accuracy 0.086, about 1 in 10 by chance. Press **Train**.")
    cols = st.columns(4)
    cols[0].metric("Epoch", 0)
    cols[1].metric("Loss (untrained)", "2.3254", help="ln 10 ≈ 2.303 for a model that knows nothing")
    cols[2].metric("Train acc (untrained)", "0.085")
    cols[3].metric("Test acc", "0.086")
    st.container(height=340, border=False)  # the chart's room, as in the dashboard's first run


st.set_page_config(page_title="Softmax regression from scratch", page_icon=":material/functions:", layout="wide")
st.navigation([
    st.Page(train_page, title="Train", icon=":material/model_training:", default=True, url_path="train"),
    *(st.Page(train_page, title=title, icon=icon, url_path=f"page{i}") for i, (title, icon) in enumerate(
        [("Softmax explorer", ":material/functions:"), ("Model inspector", ":material/biotech:"), ("Data explorer", ":material/photo_library:")])),
]).run()
