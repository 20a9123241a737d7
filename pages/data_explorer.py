import streamlit as st

st.title('data_explorer')
st.info('Coming soon')
