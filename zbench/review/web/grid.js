// zbench grid: the same grid in the bench page (a Streamlit component) and in the exported viewer (index.html).
// Sticky checkpoint headers and row labels, a cell size that fits every column in the width (the default, refit
// when the window or panel changes) or a fixed one, transpose, synced zoom and pan over every cell (Ctrl/⌘+wheel
// or pinch to zoom, drag to pan when zoomed, double-click to reset; a plain wheel scrolls), a large view with
// arrow keys to flip through epochs, and zoom panels: the same region of every checkpoint under the grid, aligned
// with its columns. On the page (``emit`` given) it also draws boxes that become panels, removes panels, rates
// checkpoints in the large view (keys 1-5 or the stars) and reports its view (cell size, transpose, zoom) so the
// page can give it back after a reload. An update that changes only stars, the release mark or the panels
// touches only those; a new cell size only sets two CSS variables: the images are never drawn again. Plain DOM
// code, no libraries, nothing fetched but the images.
"use strict";

const ZB_FIT_MIN = 36; // "fit" never makes a cell narrower (31 columns fit 1280 px at 40)
const ZB_MIN = 40; // the smallest size the control offers
const ZB_MAX = 512;
const ZB_NARROW = 100; // below this cell width a column header is compact ("e12" over "s2400")
const ZB_GAP = 1; // px between cells (the table's border-spacing, also in grid.css)
const ZB_VIEW_DELAY = 700; // ms of quiet before a changed view is reported to the page

function zbEl(tag, cls, text) {
  const node = document.createElement(tag);
  if (cls) node.className = cls;
  if (text !== undefined && text !== null) node.textContent = text;
  return node;
}

// Mount or update the grid in ``root`` with ``data``; state (zoom, cell size, open view) survives updates.
// ``data.view`` ({cell: "fit" | px, transpose, zoom, cx, cy}, as reported) is used on the first mount only.
// ``options.bleed`` (the page's): () => [left, right] px the grid's box may extend past the root's sides.
function zbenchGrid(root, data, emit, options) {
  let z = root.__zb;
  if (!z) {
    z = root.__zb = zbSetup(root, (options && options.bleed) || null);
    zbInitialView(z, data);
  }
  window.__zbenchGrid = z; // for tests and the curious: the live state of the grid drawn last
  z.data = data;
  z.emitRaw = emit || null;
  z.emit = emit ? (event) => zbSend(z, event) : null;
  const applied = new Set(data.applied || []);
  z.pending = z.pending.filter((e) => !applied.has(e.id));
  zbRefresh(z);
  return z;
}

function zbSetup(root, bleed) {
  const z = {
    root,
    bleed,
    view: { s: 1, x: 0, y: 0 }, // zoom and offset in fractions of the image: the same for every cell
    cell: "fit", // "fit" or a width in px (the user's choice)
    size: 0, // the cell width in px now shown (the fit's result, or ``cell``)
    fitWidth: 0, // the box width the fitted size was computed for
    shrankAt: -1e9, // when that width last shrank (performance.now())
    transpose: false,
    boxMode: false,
    open: null, // {r, c} of the large view
    images: [], // the grid's <img> elements (not the panels')
    labels: [], // per checkpoint: the element that shows its label, stars and release mark
    strips: [], // the panel rows under the grid (their label lines are in stripBands)
    stripBands: [],
    builds: 0, // how many times the grid's cells were drawn (tests check an update did not redraw)
    // Events not yet confirmed by the page. Each send carries all of them: two quick events (4, then 2 on
    // the next epoch) may reach the server as one message, and neither may be lost.
    pending: [],
    token: Math.random().toString(36).slice(2),
    sent: 0,
    gridKey: null,
    panelKey: null,
    viewTimer: null,
    viewSent: null,
  };
  z.state = () => zbViewState(z); // the view as the grid reports it (tests read it)
  root.classList.add("zb");
  z.head = zbEl("div", "zb-head");
  z.controls = zbEl("div", "zb-controls");
  z.fitButton = zbEl("button", "zb-fit", "fit");
  z.fitButton.title = "fit every column in the width (follows the window)";
  z.sizeInput = zbEl("input");
  Object.assign(z.sizeInput, { type: "range", min: ZB_MIN, max: ZB_MAX, step: 8 });
  z.sizeInput.setAttribute("aria-label", "cell size");
  z.sizeText = zbEl("span", "zb-size");
  const sizeLabel = zbEl("span", "zb-sizectl", "cell size ");
  sizeLabel.append(z.fitButton, z.sizeInput, z.sizeText);
  z.flip = zbEl("input");
  z.flip.type = "checkbox";
  const flipLabel = zbEl("label");
  flipLabel.append(z.flip, document.createTextNode(" checkpoints as rows"));
  const reset = zbEl("button", null, "reset zoom");
  z.boxButton = zbEl("button", "zb-box", "draw a box");
  z.controls.append(sizeLabel, flipLabel, reset, z.boxButton);
  z.hint = zbEl("div", "zb-hint");
  z.legend = zbEl("div", "zb-hint zb-siglegend");
  z.fitNote = zbEl("div", "zb-hint zb-fitnote"); // when "fit" cannot show every column: what would
  z.scroll = zbEl("div", "zb-scroll");
  // A modal <dialog>: the browser's top layer, above the page whatever its layout (Streamlit's included).
  z.box = zbEl("dialog", "zb-lightbox");
  z.big = zbEl("img");
  z.caption = zbEl("div", "zb-caption");
  z.stars = zbEl("div", "zb-rate");
  z.message = zbEl("div", "zb-message");
  z.box.append(z.big, z.caption, z.stars, z.message);
  root.append(z.head, z.controls, z.hint, z.legend, z.fitNote, z.scroll, z.box);

  z.sizeInput.addEventListener("input", () => {
    z.cell = Number(z.sizeInput.value);
    zbSize(z, z.cell);
    zbViewChanged(z);
  });
  z.fitButton.addEventListener("click", () => { z.cell = "fit"; zbFit(z, true); zbViewChanged(z); });
  z.flip.addEventListener("change", () => { z.transpose = z.flip.checked; zbRefresh(z); zbViewChanged(z); });
  reset.addEventListener("click", () => { z.view = { s: 1, x: 0, y: 0 }; zbApply(z); zbViewChanged(z); });
  z.boxButton.addEventListener("click", () => { z.boxMode = !z.boxMode; zbMode(z); });
  z.box.addEventListener("click", () => zbClose(z));
  z.box.addEventListener("close", () => { z.open = null; }); // Escape closes a dialog by itself
  z.stars.addEventListener("click", (e) => e.stopPropagation());
  document.addEventListener("keydown", (e) => zbKey(z, e), true);
  // Refit when the space changes (the window, a sidebar opened or closed, the box's own scrollbar), not only at
  // the first paint.
  if (window.ResizeObserver) {
    const observer = new ResizeObserver(() => zbFit(z));
    observer.observe(root);
    observer.observe(z.scroll); // its content box: narrower when its vertical scrollbar appears
  } else {
    window.addEventListener("resize", () => zbFit(z));
  }
  return z;
}

// The view the page kept (or the data's cellSize, as the exported viewer gives), checked as the page checks it.
function zbInitialView(z, data) {
  const v = data.view && typeof data.view === "object" ? data.view : {};
  const num = (x) => typeof x === "number" && Number.isFinite(x);
  if (v.cell === "fit") z.cell = "fit";
  else if (num(v.cell)) z.cell = Math.round(Math.min(ZB_MAX, Math.max(ZB_MIN, v.cell)));
  else if (num(data.cellSize)) z.cell = Math.round(Math.min(ZB_MAX, Math.max(ZB_MIN, data.cellSize)));
  if (typeof v.transpose === "boolean") z.transpose = v.transpose;
  if (num(v.zoom)) {
    const s = Math.min(16, Math.max(1, v.zoom));
    const centre = (c) => Math.min(Math.max((num(c) ? c : 0.5) - 0.5 / s, 0), 1 - 1 / s);
    z.view = { s, x: centre(v.cx), y: centre(v.cy) };
  }
  z.viewSent = JSON.stringify(zbViewState(z));
}

function zbViewState(z) {
  const round = (v) => Math.round(v * 10000) / 10000;
  const s = z.view.s;
  return {
    cell: z.cell, transpose: z.transpose, zoom: round(s), cx: round(z.view.x + 0.5 / s), cy: round(z.view.y + 0.5 / s),
  };
}

function zbSend(z, event) {
  z.sent += 1;
  z.pending.push({ ...event, id: `${z.token}:${z.sent}` });
  zbEmit(z);
}

// Every message carries the unconfirmed events and the current view (the last view is the one that counts).
function zbEmit(z) {
  const view = zbViewState(z);
  z.viewSent = JSON.stringify(view);
  z.emitRaw({ events: z.pending.slice(), view });
}

// A changed view reaches the page once it has been quiet for a moment (not every wheel step).
function zbViewChanged(z) {
  if (!z.emitRaw) return;
  clearTimeout(z.viewTimer);
  z.viewTimer = setTimeout(() => {
    if (z.emitRaw && z.root.isConnected && JSON.stringify(zbViewState(z)) !== z.viewSent) zbEmit(z);
  }, ZB_VIEW_DELAY);
}

// Draw what changed: the cells only when the images, labels or layout changed; else the panels and the
// checkpoint labels (stars, release) in place. The cell size is CSS variables: changing it redraws nothing.
function zbRefresh(z) {
  const data = z.data;
  z.flip.checked = z.transpose;
  z.head.replaceChildren();
  if (data.title) z.head.append(zbEl("h1", null, data.title));
  if (data.header) z.head.append(zbEl("div", "zb-header", data.header.join("\n")));
  zbMode(z);
  zbSignalLegend(z);
  const panels = JSON.stringify(data.panels || []);
  const gridKey = JSON.stringify([
    data.columns.map((c) => [c.label, c.name, c.hash]), data.rows, data.cells, data.aspect, z.transpose,
    z.transpose ? panels : null, // transposed, the panels are columns of the same table
  ]);
  if (gridKey !== z.gridKey) {
    z.gridKey = gridKey;
    z.panelKey = null;
    zbBuild(z);
  }
  if (!z.transpose && panels !== z.panelKey) {
    z.panelKey = panels;
    zbStrips(z);
  }
  z.labels.forEach((el, c) => zbLabel(el, data.columns[c], data.signals));
  zbFit(z, true); // the box's bleed, and the fitted size
  if (z.cell !== "fit") zbSize(z, z.cell);
  zbApply(z);
  if (z.open) zbOpen(z, z.open.r, z.open.c);
  zbFocus(z);
}

// A checkpoint the user named (a typed file path): its column scrolled to the middle of the grid, once per name.
function zbFocus(z) {
  const c = z.data.focus;
  const key = c === null || c === undefined ? null : JSON.stringify([c, z.data.columns[c] && z.data.columns[c].name]);
  if (key === null || key === z.focused || !z.labels[c]) return;
  z.focused = key;
  requestAnimationFrame(() => {
    const el = z.labels[c].getBoundingClientRect();
    const box = z.scroll.getBoundingClientRect();
    z.scroll.scrollLeft += el.left + el.width / 2 - (box.left + box.width / 2);
    z.scroll.scrollTop += el.top + el.height / 2 - (box.top + box.height / 2);
  });
}

function zbMode(z) {
  z.boxButton.style.display = z.emit ? "" : "none";
  z.boxButton.classList.toggle("zb-on", z.boxMode);
  z.root.classList.toggle("zb-drawing", z.boxMode);
  z.hint.textContent = z.boxMode
    ? "drag over any image: the region becomes a zoom panel"
    : "scroll: wheel · zoom all: Ctrl/⌘+wheel or pinch · pan all: drag when zoomed · double-click: reset zoom · " +
      "click: large view, ← → flip" + (z.emit ? ", 1-5 rate, K/X shortlist" : "") + ", Esc close";
}

// What the bars under each checkpoint's label are, top to bottom (their values on hover).
function zbSignalLegend(z) {
  const signals = z.data.signals || [];
  const text = signals.length
    ? "signals under each checkpoint, top to bottom: " +
      signals.map((s) => `${s.label} ${s.good === "high" ? "↑" : "↓"}`).join(" · ") +
      " (green = best of the run, red = worst; hover for the value)"
    : "";
  if (z.legend.textContent !== text) z.legend.textContent = text;
  z.legend.style.display = text ? "" : "none";
}

// --- cell size -------------------------------------------------------------------------------------------------

// Show cells ``size`` px wide: two CSS variables and a class; nothing is drawn again.
function zbSize(z, size) {
  z.size = size;
  const h = Math.round(size * z.data.aspect);
  z.root.style.setProperty("--zb-w", size + "px");
  z.root.style.setProperty("--zb-h", h + "px");
  z.root.classList.toggle("zb-narrow", size < ZB_NARROW);
  z.sizeInput.value = size;
  z.sizeText.textContent = `${size} px`;
  z.fitButton.classList.toggle("zb-on", z.cell === "fit");
  z.fitButton.setAttribute("aria-pressed", String(z.cell === "fit"));
  zbApply(z);
}

// The largest cell that shows every column in the box's width (between ZB_FIT_MIN and ZB_MAX, and no taller
// than the box shows at once). ``force``: recompute even when the width changed only a little.
function zbFit(z, force) {
  if (!z.data) return;
  if (z.bleed) {
    // On the page the box may use the main column's side padding: every pixel counts with 31 columns.
    const [left, right] = z.bleed();
    z.scroll.style.marginLeft = -left + "px";
    z.scroll.style.marginRight = -right + "px";
  }
  if (z.cell !== "fit") {
    z.fitNote.textContent = "";
    return;
  }
  const width = z.scroll.clientWidth || z.root.clientWidth || window.innerWidth;
  // A page scrollbar that comes and goes with the grid's height would refit back and forth: just after a
  // shrink, a growth by no more than a scrollbar's width is ignored.
  const now = performance.now();
  if (!force && z.size && width > z.fitWidth && width < z.fitWidth + 20 && now - z.shrankAt < 1000) return;
  if (width < z.fitWidth) z.shrankAt = now;
  z.fitWidth = width;
  const data = z.data;
  const a = data.aspect || 1;
  let units; // the table's width is units × size + fixed px
  let fixed;
  if (!z.transpose) {
    units = data.columns.length;
    fixed = (units + 1) * ZB_GAP;
  } else {
    const panels = data.panels || [];
    const rows = data.rows.length;
    units = rows * (1 + panels.reduce((sum, p) => sum + p.w / p.h, 0));
    const label = z.labels.length ? z.labels[0].offsetWidth : 0;
    fixed = (label || 150) + (1 + rows * (1 + panels.length) + 1) * ZB_GAP;
  }
  const tall = Math.floor((window.innerHeight * 0.78 - 150) / a); // one row of cells visible at once
  const fit = Math.floor((width - fixed) / Math.max(units, 1));
  // Below the smallest cell that still shows a picture, say how many columns are in view and what shows all.
  const shown = Math.floor((width - fixed) / ZB_FIT_MIN);
  z.fitNote.textContent = !z.transpose && fit < ZB_FIT_MIN && shown < units
    ? `${shown} of ${units} columns in view at the smallest cells (${ZB_FIT_MIN} px): scroll sideways, close the ` +
      "sidebar («) for a wider grid, or show checkpoints as rows"
    : "";
  zbSize(z, Math.max(ZB_FIT_MIN, Math.min(ZB_MAX, fit, Math.max(tall, ZB_FIT_MIN))));
}

// --- the table ------------------------------------------------------------------------------------------------

function zbBuild(z) {
  const data = z.data;
  z.builds += 1;
  z.images = [];
  z.labels = [];
  z.strips = [];
  z.stripBands = [];
  z.table = zbEl("table");
  const head = zbEl("tr");
  z.table.append(head);
  if (!z.transpose) {
    // Row labels are lines above their rows (sticky at the left): the width is for the images.
    data.columns.forEach((_, c) => head.append(zbColumnHead(z, c)));
    data.rows.forEach((label, r) => {
      z.table.append(zbBand(data.columns.length, label));
      const tr = zbEl("tr");
      data.columns.forEach((_, c) => tr.append(zbCell(z, r, c)));
      z.table.append(tr);
    });
  } else {
    head.append(zbEl("th", "zb-corner"));
    const panels = data.panels || [];
    data.rows.forEach((label) => head.append(zbRowHead(label)));
    panels.forEach((panel, p) => data.rows.forEach((label, r) => {
      const th = zbRowHead(`${panel.name} · ${label}`);
      th.classList.add("zb-panel");
      if (r === 0) zbRemoveButton(z, th, panel, p);
      head.append(th);
    }));
    data.columns.forEach((_, c) => {
      const tr = zbEl("tr");
      const label = zbEl("td", "zb-rowlabel zb-ck");
      z.labels[c] = label;
      tr.append(label);
      data.rows.forEach((_, r) => tr.append(zbCell(z, r, c)));
      panels.forEach((panel) => data.rows.forEach((_, r) => tr.append(zbCrop(z, r, c, panel, true))));
      z.table.append(tr);
    });
  }
  z.scroll.replaceChildren(z.table);
}

function zbBand(span, text) {
  const tr = zbEl("tr", "zb-band");
  const td = zbEl("td");
  td.colSpan = span;
  const label = zbEl("span", "zb-rowlabel", text);
  label.title = text;
  td.append(label);
  tr.append(td);
  return tr;
}

function zbRowHead(text) {
  const th = zbEl("th", "zb-rowhead");
  th.append(zbEl("span", "zb-rowtext", text));
  th.title = text;
  return th;
}

// The panels under the grid: for each panel, one strip per grid row, aligned with the columns.
function zbStrips(z) {
  for (const tr of [...z.strips, ...z.stripBands]) tr.remove();
  z.strips = [];
  z.stripBands = [];
  (z.data.panels || []).forEach((panel, p) => {
    z.data.rows.forEach((label, r) => {
      const band = zbBand(z.data.columns.length, `${panel.name} · ${label}`);
      band.classList.add("zb-panel");
      if (r === 0) zbRemoveButton(z, band.firstChild.firstChild, panel, p);
      const tr = zbEl("tr", "zb-strip");
      z.data.columns.forEach((_, c) => tr.append(zbCrop(z, r, c, panel, false)));
      z.table.append(band, tr);
      z.stripBands.push(band);
      z.strips.push(tr);
    });
  });
}

function zbRemoveButton(z, parent, panel, p) {
  if (!z.emit) return;
  const remove = zbEl("button", "zb-remove", "×");
  remove.title = `remove the panel ${panel.name}`;
  remove.setAttribute("aria-label", `remove the panel ${panel.name}`);
  remove.addEventListener("click", () => z.emit({ type: "remove_panel", index: p, name: panel.name }));
  parent.append(remove);
}

function zbColumnHead(z, c) {
  const th = zbEl("th", "zb-ck");
  z.labels[c] = th;
  return th;
}

// Epoch and step in a few characters ("e12", "s2400"): from the column's fields, else read off its label.
function zbShort(col) {
  const field = (key, pattern) => {
    if (col[key] !== undefined && col[key] !== null) return String(col[key]);
    const m = `${col.label || ""} ${col.name || ""}`.match(pattern);
    return m ? m[1] : null;
  };
  const epoch = field("epoch", /\bepoch (\d+)/);
  const step = field("step", /\bstep (\d+)/);
  if (epoch === null && step === null) return [col.label || col.name || "", ""];
  return [epoch === null ? `s${step}` : `e${epoch}`, epoch !== null && step !== null ? `s${step}` : ""];
}

// A checkpoint's label: compact lines (narrow columns) and the full label, file name and hash (wide columns or a
// row label; on hover always), its stars, release and shortlist marks, and the signal strip (a bar per signal:
// its value on a colour scale, green = best of the run, red = worst; the value on hover or in a wide bar).
function zbLabel(el, col, signals) {
  const key = JSON.stringify([col.label, col.name, col.adapter, col.hash, col.epoch, col.step, col.stars, col.release,
    col.short, col.signals, (signals || []).map((s) => s.label)]);
  if (el.__zbKey === key) return;
  el.__zbKey = key;
  const [first, second] = zbShort(col);
  const compact = zbEl("div", "zb-compact");
  for (const [cls, text] of [["zb-e", first], ["zb-s", second]]) {
    if (!text) continue;
    const line = zbEl("span", cls, text);
    line.style.setProperty("--zb-chars", String(text.length)); // grid.css shrinks a long line to fit
    compact.append(line);
  }
  const full = zbEl("div", "zb-full");
  full.append(zbEl("span", "zb-label", col.label));
  el.replaceChildren(compact, full);
  if (col.stars) {
    const stars = zbEl("span", "zb-stars");
    stars.append(zbEl("span", "zb-full", "★".repeat(col.stars) + "☆".repeat(5 - col.stars)));
    stars.append(zbEl("span", "zb-compact", `${col.stars}★`));
    el.append(stars);
  }
  const mark = (cls, long, short) => {
    const span = zbEl("span", cls);
    span.append(zbEl("span", "zb-full", long), zbEl("span", "zb-compact", short));
    el.append(span);
  };
  if (col.release) mark("zb-release", "release", "rel");
  if (col.short) mark("zb-short-mark", "shortlist", "SL");
  full.append(zbEl("span", "zb-name", col.name));
  if (col.hash) full.append(zbEl("span", "zb-hash", col.hash));
  el.title = [col.label, col.name, col.adapter, col.hash, col.stars ? `rated ${col.stars} of 5` : "", col.release ? "release" : "",
    col.short ? "on the shortlist" : ""].filter(Boolean).join("\n");
  if (signals && signals.length && col.signals) {
    const strip = zbEl("div", "zb-sig");
    signals.forEach((s, i) => {
      const [value, tone] = col.signals[i] || [null, null];
      const none = value === null || value === undefined;
      const chip = zbEl("span", "zb-chip", none ? "–" : zbNumber(value));
      if (tone !== null && tone !== undefined) chip.style.background = `hsl(${Math.round(tone * 120)}, 65%, 72%)`;
      chip.title = `${s.label}: ${none ? "no value" : value}\n${s.means}\n` +
        `(${s.good === "high" ? "higher" : "lower"} is better)`;
      strip.append(chip);
    });
    el.append(strip);
  }
}

function zbNumber(v) {
  const a = Math.abs(v);
  return a >= 100 ? v.toFixed(0) : a >= 10 ? v.toFixed(1) : a >= 1 ? v.toFixed(2) : v.toFixed(3);
}

function zbCell(z, r, c) {
  const cell = z.data.cells[r][c];
  const td = zbEl("td");
  const div = zbEl("div", "zb-cell");
  if (cell.src) {
    const img = zbEl("img");
    img.src = cell.src;
    img.alt = `${z.data.columns[c].label} · ${z.data.rows[r]}`;
    img.draggable = false;
    div.append(img);
    z.images.push(img);
  } else {
    div.classList.add(cell.status === "error" ? "zb-error" : "zb-pending");
    div.title = cell.error || cell.status;
    div.append(zbEl("span", "zb-badge", cell.status === "pending" ? "not rendered yet" : cell.status));
    if (cell.error) div.append(zbEl("span", "zb-short", cell.error.length > 70 ? cell.error.slice(0, 69) + "…" : cell.error));
  }
  zbPointer(z, div, r, c);
  td.append(div);
  return td;
}

function zbCrop(z, r, c, panel, transposed) {
  // The panel's region of this cell's image (a CSS crop of the same image: no new file), sized from the cell
  // width (--zb-w). Under the grid a strip is as wide as its column; transposed, as tall as the checkpoint's row.
  const cell = z.data.cells[r][c];
  const td = zbEl("td");
  const a = z.data.aspect;
  const w = (f) => `calc(var(--zb-w) * ${f})`;
  const div = zbEl("div", "zb-cropcell");
  let k; // px per image width, as a multiple of the cell width
  if (!transposed) {
    div.style.width = "var(--zb-w)";
    div.style.height = `max(8px, ${w((a * panel.h) / panel.w)})`;
    k = 1 / panel.w;
  } else {
    div.style.width = `max(8px, ${w(panel.w / panel.h)})`;
    div.style.height = "var(--zb-h)";
    k = 1 / panel.h;
  }
  div.dataset.panel = panel.name;
  if (cell.src) {
    const img = zbEl("img");
    img.src = cell.src;
    img.draggable = false;
    img.alt = `${panel.name} · ${z.data.columns[c].label} · ${z.data.rows[r]}`;
    Object.assign(img.style, { width: w(k), height: w(k * a), left: w(-panel.x * k), top: w(-panel.y * k * a) });
    div.append(img);
  } else {
    div.classList.add("zb-pending");
  }
  td.append(div);
  return td;
}

// --- synced zoom and pan ----------------------------------------------------------------------------------------

function zbApply(z) {
  const { s, x, y } = z.view;
  // Percentages of the image (the cell's size): the same transform holds at any cell size.
  const transform = `translate(${-x * s * 100}%, ${-y * s * 100}%) scale(${s})`;
  for (const img of z.images) img.style.transform = transform;
  // Enlarged, each image pixel stays a sharp square (no blur over the detail being judged); shrunk, the
  // browser's smooth filter (nearest-neighbour shrinking would alias).
  z.root.classList.toggle("zb-shrunk", z.size * s < (z.data.imageWidth || 0));
  z.root.classList.toggle("zb-zoomed", s > 1);
}

function zbClamp(z, v) { return Math.min(Math.max(v, 0), 1 - 1 / z.view.s); }

function zbFraction(z, div, x, y) {
  // The image point (fractions 0..1) under the client point (x, y), through the current zoom.
  const rect = div.getBoundingClientRect();
  const fx = z.view.x + (x - rect.left) / rect.width / z.view.s;
  const fy = z.view.y + (y - rect.top) / rect.height / z.view.s;
  return [Math.min(Math.max(fx, 0), 1), Math.min(Math.max(fy, 0), 1)];
}

// Zoom every cell to ``scale`` keeping the image point under (x, y) of ``div`` where it is.
function zbZoomAt(z, div, x, y, scale) {
  const rect = div.getBoundingClientRect();
  const [fx, fy] = zbFraction(z, div, x, y);
  z.view.s = Math.min(16, Math.max(1, scale));
  z.view.x = zbClamp(z, fx - (x - rect.left) / rect.width / z.view.s);
  z.view.y = zbClamp(z, fy - (y - rect.top) / rect.height / z.view.s);
  zbApply(z);
  zbViewChanged(z);
}

function zbPointer(z, div, r, c) {
  let drag = null;
  let pinch = null;
  const points = new Map(); // pointerId -> {x, y}: two of them on a cell pinch-zoom
  const spread = () => {
    const [a, b] = [...points.values()];
    return { d: Math.hypot(a.x - b.x, a.y - b.y) || 1, x: (a.x + b.x) / 2, y: (a.y + b.y) / 2 };
  };
  div.addEventListener("pointerdown", (e) => {
    if (e.button !== undefined && e.button > 0) return; // the middle button scrolls, the right one is a menu
    points.set(e.pointerId, { x: e.clientX, y: e.clientY });
    div.setPointerCapture(e.pointerId);
    if (points.size === 2 && !z.boxMode) {
      if (drag && drag.rect) drag.rect.remove();
      drag = null;
      pinch = { start: spread(), s: z.view.s };
      return;
    }
    // A drag pans only when zoomed in (else a click opens the large view, and a touch drag scrolls).
    drag = { x: e.clientX, y: e.clientY, vx: z.view.x, vy: z.view.y, moved: false, pan: z.view.s > 1 };
    drag.start = zbFraction(z, div, e.clientX, e.clientY);
    if (z.boxMode) {
      drag.rect = zbEl("div", "zb-drawn");
      div.append(drag.rect);
    }
  });
  div.addEventListener("pointermove", (e) => {
    if (points.has(e.pointerId)) points.set(e.pointerId, { x: e.clientX, y: e.clientY });
    if (pinch && points.size === 2) {
      const now = spread();
      zbZoomAt(z, div, now.x, now.y, (pinch.s * now.d) / pinch.start.d);
      return;
    }
    if (!drag) return;
    if (Math.abs(e.clientX - drag.x) + Math.abs(e.clientY - drag.y) > 3) drag.moved = true;
    if (drag.rect) {
      const rect = div.getBoundingClientRect();
      const x0 = Math.min(drag.x, e.clientX) - rect.left;
      const y0 = Math.min(drag.y, e.clientY) - rect.top;
      Object.assign(drag.rect.style, {
        left: x0 + "px", top: y0 + "px",
        width: Math.abs(e.clientX - drag.x) + "px", height: Math.abs(e.clientY - drag.y) + "px",
      });
      return;
    }
    if (!drag.pan) return;
    z.view.x = zbClamp(z, drag.vx - (e.clientX - drag.x) / div.clientWidth / z.view.s);
    z.view.y = zbClamp(z, drag.vy - (e.clientY - drag.y) / div.clientHeight / z.view.s);
    zbApply(z);
  });
  const end = (e) => {
    points.delete(e.pointerId);
    if (pinch) {
      if (points.size < 2) pinch = null;
      return;
    }
    if (!drag) return;
    const done = drag;
    drag = null;
    if (e.type === "pointercancel") {
      if (done.rect) done.rect.remove();
      return;
    }
    if (done.rect) {
      done.rect.remove();
      const [x1, y1] = zbFraction(z, div, e.clientX, e.clientY);
      const [x0, y0] = done.start;
      const box = { x: Math.min(x0, x1), y: Math.min(y0, y1), w: Math.abs(x1 - x0), h: Math.abs(y1 - y0) };
      z.boxMode = false;
      zbMode(z);
      if (box.w > 0.005 && box.h > 0.005 && z.emit) z.emit({ type: "box", row: r, col: c, ...box });
    } else if (!done.moved) {
      zbOpen(z, r, c);
    } else if (done.pan) {
      zbViewChanged(z);
    }
  };
  div.addEventListener("pointerup", end);
  div.addEventListener("pointercancel", end);
  // A plain wheel scrolls the grid and the page, as everywhere; Ctrl/⌘ + wheel zooms every cell, and so does a
  // trackpad pinch (browsers send it as a wheel with ctrlKey).
  div.addEventListener("wheel", (e) => {
    if (!e.ctrlKey && !e.metaKey) return;
    e.preventDefault(); // not the browser's page zoom
    const dy = e.deltaMode === 1 ? e.deltaY * 16 : e.deltaY;
    const rate = Math.abs(dy) < 40 ? 100 : 300; // a pinch sends many small deltas, a wheel notch ~100
    zbZoomAt(z, div, e.clientX, e.clientY, z.view.s * Math.exp(-dy / rate));
  }, { passive: false });
  div.addEventListener("dblclick", () => { z.view = { s: 1, x: 0, y: 0 }; zbApply(z); zbViewChanged(z); });
}

// --- the large view --------------------------------------------------------------------------------------------

function zbOpen(z, r, c) {
  z.open = { r, c };
  const cell = z.data.cells[r][c];
  const col = z.data.columns[c];
  z.big.style.display = cell.src ? "" : "none";
  if (cell.src && z.big.getAttribute("src") !== cell.src) z.big.src = cell.src;
  const side = Math.min(window.innerHeight * 0.8, window.innerWidth * 0.92);
  z.big.style.imageRendering = side < (z.data.imageWidth || 0) ? "auto" : "pixelated";
  const stars = col.stars ? " · " + "★".repeat(col.stars) : "";
  const release = col.release ? " · release" : "";
  const short = col.short ? " · on the shortlist" : "";
  z.caption.textContent =
    `${col.label} · ${col.name} · ${z.data.rows[r]}${stars}${release}${short} (${c + 1}/${z.data.columns.length})`;
  z.message.textContent = cell.src ? "" : `${cell.status}: ${cell.error || ""}`;
  z.stars.replaceChildren();
  if (z.emit && col.rateable) {
    for (let n = 1; n <= 5; n += 1) {
      const star = zbEl("button", "zb-star" + (col.stars >= n ? " zb-lit" : ""), "★");
      star.title = `rate ${col.label} ${n} of 5 (key ${n})`;
      star.addEventListener("click", () => zbRate(z, c, col.stars === n ? 0 : n));
      z.stars.append(star);
    }
    z.stars.append(zbEl("span", "zb-hint", "1-5 to rate, 0 to clear · K keep on the shortlist, X drop"));
  }
  if (!z.box.open) z.box.showModal();
}

function zbRate(z, c, stars) {
  const col = z.data.columns[c];
  // The event names the checkpoint shown, so a rating can only land on the image being looked at.
  z.emit({ type: "rate", col: c, checkpoint: col.checkpoint, stars });
}

function zbClose(z) {
  z.open = null;
  if (z.box.open) z.box.close();
}

// Typing in a field (anywhere, also inside a shadow root) is never a grid key.
function zbTyping(e) {
  const target = (e.composedPath && e.composedPath()[0]) || e.target;
  const tag = (target && target.tagName) || "";
  return ["INPUT", "TEXTAREA", "SELECT"].includes(tag) || Boolean(target && target.isContentEditable);
}

// The large view's keys. A key the grid handles goes no further (no tab list, no other widget sees it).
function zbKey(z, e) {
  if (!z.open || !z.root.isConnected || zbTyping(e) || e.ctrlKey || e.metaKey || e.altKey) return;
  const col = z.data.columns[z.open.c];
  const step = e.key === "ArrowRight" ? 1 : e.key === "ArrowLeft" ? -1 : 0;
  if (e.key === "Escape") {
    zbClose(z);
  } else if (step) {
    const n = z.data.columns.length;
    zbOpen(z, z.open.r, (z.open.c + step + n) % n);
  } else if (z.emit && /^[0-5]$/.test(e.key) && col.rateable) {
    zbRate(z, z.open.c, Number(e.key));
  } else if (z.emit && /^[kxKX]$/.test(e.key) && col.rateable) {
    // A quick pass over the run: keep or drop each checkpoint on the shortlist while flipping with ← →.
    z.emit({ type: "shortlist", col: z.open.c, checkpoint: col.checkpoint, keep: e.key.toLowerCase() === "k" });
  } else {
    return;
  }
  e.preventDefault();
  e.stopImmediatePropagation();
}
