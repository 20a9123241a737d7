"""Streamlit front end helpers: session state, data access, controls and charts (pages import these)."""
