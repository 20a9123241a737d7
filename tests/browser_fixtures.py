"""Fixtures for end-to-end tests: a real `streamlit run dashboard.py` and Debian's headless Chromium."""
