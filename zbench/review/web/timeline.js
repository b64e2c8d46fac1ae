// zbench timeline player: one grid row (or a zoom region of it) epoch by epoch, on the page's Timeline tab (a
// Streamlit component). Each frame is one checkpoint's lossless PNG, labelled by epoch ("base", "epoch 20 · step
// 500"), shown at its native resolution times a whole factor (never a fractional resize: "fit" picks the largest
// factor that fits the width and the window's height, in whole device pixels; pixelated when enlarged). Play and
// pause, a speed, first / previous / next / last and a slider over the checkpoints. Everything runs here: playing,
// stepping and changing the speed or size send nothing to the server. Keys work only while the player has the
// focus (click it), and never reach the page: Space plays or pauses, ← → step one frame, Home / End.
"use strict";

const ZB_TL_FRAME_MS = 450; // each checkpoint at 1× (as the exported timelines)
const ZB_TL_HOLD_MS = 1200; // the base and the last checkpoint
const ZB_TL_SPEEDS = [0.25, 0.5, 1, 2, 4];
const ZB_TL_SIZES = [1, 2, 3, 4, 6, 8, 12, 16];
const ZB_TL_MAX_FIT = 16; // "fit" never enlarges more (a small zoom region)
const ZB_TL_BELOW = 40; // px under the frame: the keys line and the player's border

// What the player keeps between mounts (another tab and back, another row): speed, size, playing, frame.
function zbTlPrefs() {
  if (!window.__zbTimelinePrefs) window.__zbTimelinePrefs = { speed: 1, size: "fit", playing: true, index: 0 };
  return window.__zbTimelinePrefs;
}

function zbTlEl(tag, cls, text) {
  const node = document.createElement(tag);
  if (cls) node.className = cls;
  if (text !== undefined && text !== null) node.textContent = text;
  return node;
}

function zbTlButton(bar, act, text, title) {
  const b = zbTlEl("button", "zb-tl-" + act, text);
  b.type = "button";
  b.title = title;
  b.setAttribute("aria-label", title.replace(/ \(.*\)$/, ""));
  bar.appendChild(b);
  return b;
}

function zbTlSetup(parent) {
  const t = { prefs: zbTlPrefs(), frames: [], images: [], index: 0, timer: null, factor: 1, srcKey: "" };
  const root = (t.root = zbTlEl("div", "zb-tl"));
  root.tabIndex = 0;
  root.setAttribute("role", "group");
  root.setAttribute("aria-label", "Timeline player");
  const head = zbTlEl("div", "zb-tl-head");
  t.label = head.appendChild(zbTlEl("span", "zb-tl-label"));
  t.name = head.appendChild(zbTlEl("span", "zb-tl-name"));
  t.count = head.appendChild(zbTlEl("span", "zb-tl-count"));
  root.appendChild(head);
  const bar = root.appendChild(zbTlEl("div", "zb-tl-bar"));
  const first = zbTlButton(bar, "first", "⇤", "First frame (Home)");
  const prev = zbTlButton(bar, "prev", "‹ prev", "Previous frame (←)");
  t.play = zbTlButton(bar, "play", "Play", "Play (Space)");
  const next = zbTlButton(bar, "next", "next ›", "Next frame (→)");
  const last = zbTlButton(bar, "last", "⇥", "Last frame (End)");
  const track = bar.appendChild(zbTlEl("div", "zb-tl-track"));
  t.slider = track.appendChild(zbTlEl("input", "zb-tl-slider"));
  t.slider.type = "range";
  t.slider.min = "0";
  t.slider.step = "1";
  t.slider.setAttribute("aria-label", "Checkpoint");
  const ends = track.appendChild(zbTlEl("div", "zb-tl-ends"));
  t.start = ends.appendChild(zbTlEl("span"));
  t.end = ends.appendChild(zbTlEl("span"));
  const speedLabel = bar.appendChild(zbTlEl("label", "zb-tl-choice", "speed "));
  t.speed = speedLabel.appendChild(zbTlEl("select", "zb-tl-speed"));
  for (const s of ZB_TL_SPEEDS) {
    const o = t.speed.appendChild(zbTlEl("option", null, `${s}×`));
    o.value = String(s);
    o.title = `${Math.round(ZB_TL_FRAME_MS / s)} ms a checkpoint`;
  }
  const sizeLabel = bar.appendChild(zbTlEl("label", "zb-tl-choice", "size "));
  t.size = sizeLabel.appendChild(zbTlEl("select", "zb-tl-size"));
  t.fitOption = t.size.appendChild(zbTlEl("option", null, "fit"));
  t.fitOption.value = "fit";
  for (const k of ZB_TL_SIZES) t.size.appendChild(zbTlEl("option", null, `${k}×`)).value = String(k);
  t.stage = root.appendChild(zbTlEl("div", "zb-tl-stage"));
  t.img = t.stage.appendChild(zbTlEl("img", "zb-tl-img"));
  t.img.draggable = false;
  t.missing = t.stage.appendChild(zbTlEl("div", "zb-tl-missing"));
  root.appendChild(zbTlEl("div", "zb-tl-keys",
    "Click the player for keys: Space plays or pauses · ← → one frame · Home / End the first and last"));
  parent.appendChild(root);

  const stepTo = (i) => { zbTlPause(t); zbTlShow(t, i); };
  first.addEventListener("click", () => stepTo(0));
  prev.addEventListener("click", () => stepTo(t.index - 1));
  next.addEventListener("click", () => stepTo(t.index + 1));
  last.addEventListener("click", () => stepTo(t.frames.length - 1));
  t.play.addEventListener("click", () => zbTlToggle(t));
  t.slider.addEventListener("input", () => stepTo(Number(t.slider.value)));
  t.speed.addEventListener("change", () => {
    t.prefs.speed = Number(t.speed.value) || 1;
    zbTlSchedule(t);
  });
  t.size.addEventListener("change", () => {
    t.prefs.size = t.size.value === "fit" ? "fit" : Number(t.size.value);
    zbTlFit(t);
  });
  t.stage.addEventListener("click", () => root.focus({ preventScroll: true }));
  // The player's own keys, while the focus is in it; they go no further (not to the tab list, the page's other
  // keys or Streamlit's). A focused select or button keeps its own keys (Space on a button clicks it).
  root.addEventListener("keydown", (e) => {
    if (e.ctrlKey || e.metaKey || e.altKey) return;
    const tag = e.target && e.target.tagName;
    if (tag === "SELECT" || (tag === "BUTTON" && (e.key === " " || e.key === "Enter"))) return;
    const acts = {
      " ": () => zbTlToggle(t),
      k: () => zbTlToggle(t),
      ArrowLeft: () => stepTo(t.index - 1),
      ArrowRight: () => stepTo(t.index + 1),
      ",": () => stepTo(t.index - 1),
      ".": () => stepTo(t.index + 1),
      Home: () => stepTo(0),
      End: () => stepTo(t.frames.length - 1),
    };
    const act = acts[e.key];
    if (!act) return;
    e.preventDefault();
    e.stopPropagation();
    act();
  });
  // Refit when the width changes (a sidebar, the window) or the window's height does.
  if (window.ResizeObserver) new ResizeObserver(() => zbTlFit(t)).observe(root);
  t.onResize = () => zbTlFit(t);
  window.addEventListener("resize", t.onResize);
  return t;
}

// New frames (another row or region, a checkpoint saved since): the same position, speed, size and play state.
function zbTlUpdate(t, data, resolve) {
  t.data = data;
  const frames = (data.frames || []).map((f) => ({ ...f, src: f.src ? resolve(f.src) : null }));
  const key = JSON.stringify(frames);
  if (key !== t.srcKey) {
    t.srcKey = key;
    t.frames = frames;
    // Every frame is fetched now, so playing never waits on the network mid-run (the grid's PNGs: cached already).
    t.images = frames.map((f) => {
      if (!f.src) return null;
      const im = new Image();
      im.src = f.src;
      return im;
    });
    t.slider.max = String(Math.max(0, frames.length - 1));
    t.start.textContent = frames.length ? frames[0].label : "";
    t.end.textContent = frames.length > 1 ? frames[frames.length - 1].label : "";
  }
  t.speed.value = String(t.prefs.speed);
  t.size.value = String(t.prefs.size);
  zbTlFit(t);
  requestAnimationFrame(() => zbTlFit(t)); // once the page around it is laid out
  zbTlShow(t, Math.min(t.prefs.index, Math.max(0, frames.length - 1)));
  if (t.prefs.playing) zbTlPlay(t);
  else zbTlPause(t);
}

// The enlargement: the chosen one, or the largest whole one that fits the width and the window's height under the
// frame's place on the page (so the whole player is on the first screen; when the page above is taller than most
// of the window, the window's height). In device pixels, so a window at 125 % or 150 % still shows every image
// pixel as the same whole number of screen pixels.
function zbTlFit(t) {
  const w = t.data && t.data.width, h = t.data && t.data.height;
  if (!w || !h) return;
  const dpr = window.devicePixelRatio || 1;
  let device;
  if (t.prefs.size === "fit") {
    const width = (t.stage.clientWidth || t.root.clientWidth || w) * dpr;
    const height = Math.max(h, zbTlRoom(t)) * dpr;
    device = Math.max(1, Math.min(ZB_TL_MAX_FIT * dpr, Math.floor(width / w), Math.floor(height / h)));
  } else {
    device = Math.max(1, Math.round(t.prefs.size * dpr));
  }
  t.factor = device / dpr; // in CSS pixels, as the size menu counts
  t.fitOption.textContent = t.prefs.size === "fit" ? `fit (${+t.factor.toFixed(2)}×)` : "fit";
  for (const node of [t.img, t.missing]) {
    node.style.width = `${(w * device) / dpr}px`;
    node.style.height = `${(h * device) / dpr}px`;
  }
  t.img.style.imageRendering = device > 1 ? "pixelated" : "auto";
  t.root.dataset.factor = String(t.factor);
}

// The window's height under the frame's top when the page is scrolled to its start (Streamlit scrolls its main
// block, not the window), less the keys line.
function zbTlRoom(t) {
  const main = document.querySelector('[data-testid="stMain"]');
  const top = t.stage.getBoundingClientRect().top + window.scrollY + (main ? main.scrollTop : 0);
  const room = window.innerHeight - top - ZB_TL_BELOW;
  return room >= window.innerHeight * 0.4 ? room : window.innerHeight - 160;
}

function zbTlShow(t, i) {
  const n = t.frames.length;
  if (!n) return;
  t.index = ((i % n) + n) % n;
  t.prefs.index = t.index;
  const f = t.frames[t.index];
  if (f.src) {
    if (t.img.getAttribute("src") !== f.src) t.img.src = f.src;
    t.img.alt = f.label;
    t.img.style.display = "";
    t.missing.style.display = "none";
  } else {
    t.img.style.display = "none";
    t.missing.style.display = "";
    t.missing.textContent = f.error || "not rendered yet";
  }
  t.label.textContent = f.label;
  t.name.textContent = f.name || "";
  t.count.textContent = `${t.index + 1} / ${n}`;
  t.slider.value = String(t.index);
  t.slider.setAttribute("aria-valuetext", `${f.label} (${t.index + 1} of ${n})`);
}

function zbTlPlay(t) {
  t.prefs.playing = true;
  t.play.textContent = "Pause";
  t.play.setAttribute("aria-label", "Pause");
  t.play.title = "Pause (Space)";
  zbTlSchedule(t);
}

function zbTlPause(t) {
  t.prefs.playing = false;
  clearTimeout(t.timer);
  t.timer = null;
  t.play.textContent = "Play";
  t.play.setAttribute("aria-label", "Play");
  t.play.title = "Play (Space)";
}

function zbTlToggle(t) {
  if (t.prefs.playing) zbTlPause(t);
  else zbTlPlay(t);
}

// The next frame after this one's time (the base and the last held longer); one still loading is waited for, so
// every checkpoint is seen. Stops when the player leaves the page.
function zbTlSchedule(t) {
  clearTimeout(t.timer);
  t.timer = null;
  if (!t.prefs.playing || t.frames.length < 2) return;
  const ms = (t.frames[t.index].hold ? ZB_TL_HOLD_MS : ZB_TL_FRAME_MS) / (t.prefs.speed || 1);
  const advance = () => {
    if (!t.root.isConnected) return;
    const next = (t.index + 1) % t.frames.length;
    const im = t.images[next];
    if (im && !im.complete) {
      t.timer = setTimeout(advance, 40);
      return;
    }
    zbTlShow(t, next);
    zbTlSchedule(t);
  };
  t.timer = setTimeout(advance, ms);
}

export default function (component) {
  const { data, parentElement } = component;
  let holder = parentElement.querySelector(".zb-tl");
  const t = holder ? holder.__zbTl : zbTlSetup(parentElement);
  t.root.__zbTl = t;
  window.__zbenchTimeline = t; // for tests and the curious: the live state of the player
  // Media URLs are absolute paths ("/media/..."); resolve them against the app's own location.
  const base = window.location.href.replace(/[?#].*$/, "").replace(/[^/]*$/, "");
  zbTlUpdate(t, data, (src) => (src.startsWith("/media/") ? base + src.slice(1) : src));
  return () => { // the player left the page: its clock stops (the prefs stay for the next one)
    clearTimeout(t.timer);
    t.timer = null;
    window.removeEventListener("resize", t.onResize);
  };
}
