"""The Pick tab's two small components: the keys that vote on the blind pair, and an image shown pixel for pixel."""

from __future__ import annotations

import streamlit as st

# Blind votes by key: ← or A prefers the left image, → or B the right one, S skips. The listener runs in the
# capture phase on the window, before the page's own handlers: right after the tab is clicked the tab button has
# the focus, and the tab list would take the arrows to move between tabs. It stays quiet while a field has the
# focus (typing), while the grid's large view is open (there the arrows flip epochs) and while the pair is not
# on screen (another tab). A line under the buttons says which keys are live.
_KEYS_JS = """
export default function (component) {
  const { setTriggerValue, parentElement } = component;
  let legend = parentElement.querySelector(".zb-keys");
  if (!legend) {
    legend = document.createElement("div");
    legend.className = "zb-keys";
    legend.style.cssText = "font: 13px system-ui, sans-serif; color: #555; padding: 2px 0";
    parentElement.appendChild(legend);
  }
  const host = () => parentElement.host || parentElement; // the shadow root's element, or the element itself
  const typing = (el) => {
    const tag = (el && el.tagName) || "";
    return ["INPUT", "TEXTAREA", "SELECT"].includes(tag) || (el && el.isContentEditable);
  };
  const live = () => host().isConnected && host().getClientRects().length > 0 &&
    !(window.__zbenchGrid && window.__zbenchGrid.open);
  const show = () => {
    const paused = typing(document.activeElement);
    legend.textContent = paused
      ? "Keys paused while you type in a field (click outside it to vote by key)"
      : "Keys live: ← or A = left is better · → or B = right is better · S = skip";
  };
  show();
  if (window.__zbKeysHandler) {
    window.removeEventListener("keydown", window.__zbKeysHandler, true);
    document.removeEventListener("focusin", window.__zbKeysShow, true);
    document.removeEventListener("focusout", window.__zbKeysShow, true);
  }
  const onKey = (e) => {
    if (!live() || typing(e.target) || e.ctrlKey || e.metaKey || e.altKey) return;
    const key = e.key.length === 1 ? e.key.toLowerCase() : e.key;
    const vote = { ArrowLeft: "left", a: "left", ArrowRight: "right", b: "right", s: "skip" }[key];
    if (!vote) return;
    e.preventDefault();
    e.stopPropagation(); // never reaches the tab list (or anything else)
    setTriggerValue("key", vote);
  };
  const onFocus = () => setTimeout(show, 0);
  window.addEventListener("keydown", onKey, true);
  document.addEventListener("focusin", onFocus, true);
  document.addEventListener("focusout", onFocus, true);
  window.__zbKeysHandler = onKey;
  window.__zbKeysShow = onFocus;
  return () => {
    window.removeEventListener("keydown", onKey, true);
    document.removeEventListener("focusin", onFocus, true);
    document.removeEventListener("focusout", onFocus, true);
    if (window.__zbKeysHandler === onKey) window.__zbKeysHandler = null;
  };
}
"""
KEYS = st.components.v2.component("zbench.keys", js=_KEYS_JS)
# One image of the blind pair as the grid shows its cells: lossless PNG, its native pixels times the largest whole
# factor that fits the column (in device pixels; pixelated when enlarged). A render wider than the column is shown
# whole, scaled down.
_PIXELS_JS = """
export default function (component) {
  const { data, parentElement } = component;
  let box = parentElement.querySelector(".zb-pixels");
  if (!box) {
    box = document.createElement("div");
    box.className = "zb-pixels";
    box.style.cssText = "width: 100%; line-height: 0";
    box.appendChild(document.createElement("img")).draggable = false;
    parentElement.appendChild(box);
    if (window.ResizeObserver) new ResizeObserver(() => box.fit()).observe(box);
  }
  const img = box.querySelector("img");
  const base = window.location.href.replace(/[?#].*$/, "").replace(/[^/]*$/, "");
  const src = data.src.startsWith("/media/") ? base + data.src.slice(1) : data.src;
  if (img.getAttribute("src") !== src) img.src = src;
  img.alt = data.alt;
  box.fit = () => {
    const dpr = window.devicePixelRatio || 1;
    const height = Math.max(data.height, window.innerHeight * 0.6);
    const device = Math.floor(Math.min(box.clientWidth / data.width, height / data.height) * dpr);
    img.style.width = device >= 1 ? `${(data.width * device) / dpr}px` : "100%";
    img.style.imageRendering = device > 1 ? "pixelated" : "auto";
    box.dataset.factor = String(Math.max(device, 0) / dpr);
  };
  box.fit();
}
"""
PIXELS = st.components.v2.component("zbench.pixels", js=_PIXELS_JS)
