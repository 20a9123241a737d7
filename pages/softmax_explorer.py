import streamlit as st

st.title('softmax_explorer')
st.info('Coming soon')
