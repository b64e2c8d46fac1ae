"""What every session of the page shares: the base pipeline, the image cache and run scans."""

from __future__ import annotations

import os

import streamlit as st

import zbench

SCAN_TTL = float(os.environ.get("ZBENCH_SCAN_TTL", "3"))  # seconds; new epochs of a live run show up


@st.cache_resource(max_entries=1, show_spinner="Loading the base model (once per server)…")
def base_for(config_path: str) -> zbench.Base:
    return zbench.get_base(zbench.load_config(config_path))


@st.cache_resource
def image_cache_in(folder: str) -> zbench.ImageCache:
    return zbench.get_image_cache(folder)


def image_cache() -> zbench.ImageCache:
    return image_cache_in(str(zbench.default_cache_dir()))


@st.cache_data(ttl=SCAN_TTL, show_spinner=False)
def scan(folder: str) -> list[zbench.Checkpoint]:
    return zbench.scan_run(folder)
