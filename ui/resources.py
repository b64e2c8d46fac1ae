"""What every session of the page shares: the base pipeline, the image cache and run scans."""

from __future__ import annotations

import os

import streamlit as st

import zbench

SCAN_TTL = float(os.environ.get("ZBENCH_SCAN_TTL", "3"))  # seconds; new epochs of a live run show up


def base_for(config: zbench.BenchConfig) -> zbench.Base:
    """The server's one base pipeline (zbench keeps it; switching configs releases the old one first)."""
    with st.spinner("Loading the base model (once per server)…"):
        return zbench.get_base(config)


@st.cache_resource
def image_cache_in(folder: str) -> zbench.ImageCache:
    return zbench.get_image_cache(folder)


def image_cache() -> zbench.ImageCache:
    return image_cache_in(str(zbench.default_cache_dir()))


@st.cache_data(ttl=SCAN_TTL, show_spinner=False)
def scan(folder: str) -> list[zbench.Checkpoint]:
    return zbench.scan_run(folder)
