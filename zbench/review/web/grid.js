// zbench grid: the same grid in the bench page (a Streamlit component) and in the exported viewer (index.html).
// Fixed-size cells with sticky checkpoint and row labels, a cell-size control, transpose, synced zoom and pan
// over every cell (wheel or pinch to zoom, drag to pan, double-click to reset), a large view with arrow keys to
// flip through epochs, and zoom panels: the same region of every checkpoint under the grid, aligned with its
// columns. On the page (``emit`` given) it also draws boxes that become panels, removes panels, and rates
// checkpoints in the large view (keys 1-5 or the stars). An update that changes only stars, the release mark or
// the panels touches only those: the images are never drawn again. Plain DOM code, no libraries, nothing
// fetched but the images.
"use strict";

function zbEl(tag, cls, text) {
  const node = document.createElement(tag);
  if (cls) node.className = cls;
  if (text !== undefined && text !== null) node.textContent = text;
  return node;
}

// Mount or update the grid in ``root`` with ``data``; state (zoom, cell size, open view) survives updates.
function zbenchGrid(root, data, emit) {
  let z = root.__zb;
  if (!z) z = root.__zb = zbSetup(root);
  window.__zbenchGrid = z; // for tests and the curious: the live state of the grid drawn last
  z.data = data;
  z.emit = emit ? (event) => zbSend(z, event, emit) : null;
  const applied = new Set(data.applied || []);
  z.pending = z.pending.filter((e) => !applied.has(e.id));
  zbRefresh(z);
  return z;
}

function zbSetup(root) {
  const z = {
    root,
    view: { s: 1, x: 0, y: 0 }, // zoom and offset in fractions of the image: the same for every cell
    size: 0, // cell width in px; 0 until the first build picks one that fits ~8 columns
    transpose: false,
    boxMode: false,
    open: null, // {r, c} of the large view
    images: [], // the grid's <img> elements (not the panels')
    labels: [], // per checkpoint: the element that shows its label, stars and release mark
    strips: [], // the panel rows under the grid
    builds: 0, // how many times the grid's cells were drawn (tests check an update did not redraw)
    // Events not yet confirmed by the page. Each send carries all of them: two quick events (4, then 2 on
    // the next epoch) may reach the server as one message, and neither may be lost.
    pending: [],
    token: Math.random().toString(36).slice(2),
    sent: 0,
    gridKey: null,
    panelKey: null,
  };
  root.classList.add("zb");
  z.head = zbEl("div", "zb-head");
  z.controls = zbEl("div", "zb-controls");
  z.sizeInput = zbEl("input");
  Object.assign(z.sizeInput, { type: "range", min: 96, max: 512, step: 8 });
  z.sizeInput.setAttribute("aria-label", "cell size");
  const sizeLabel = zbEl("label", null, "cell size ");
  sizeLabel.append(z.sizeInput);
  z.flip = zbEl("input");
  z.flip.type = "checkbox";
  const flipLabel = zbEl("label");
  flipLabel.append(z.flip, document.createTextNode(" checkpoints as rows"));
  const reset = zbEl("button", null, "reset zoom");
  z.boxButton = zbEl("button", "zb-box", "draw a box");
  z.hint = zbEl("span", "zb-hint");
  z.controls.append(sizeLabel, flipLabel, reset, z.boxButton, z.hint);
  z.scroll = zbEl("div", "zb-scroll");
  // A modal <dialog>: the browser's top layer, above the page whatever its layout (Streamlit's included).
  z.box = zbEl("dialog", "zb-lightbox");
  z.big = zbEl("img");
  z.caption = zbEl("div", "zb-caption");
  z.stars = zbEl("div", "zb-rate");
  z.message = zbEl("div", "zb-message");
  z.box.append(z.big, z.caption, z.stars, z.message);
  root.append(z.head, z.controls, z.scroll, z.box);

  z.sizeInput.addEventListener("input", () => { z.size = Number(z.sizeInput.value); zbRefresh(z); });
  z.flip.addEventListener("change", () => { z.transpose = z.flip.checked; zbRefresh(z); });
  reset.addEventListener("click", () => { z.view = { s: 1, x: 0, y: 0 }; zbApply(z); });
  z.boxButton.addEventListener("click", () => { z.boxMode = !z.boxMode; zbMode(z); });
  z.box.addEventListener("click", () => zbClose(z));
  z.box.addEventListener("close", () => { z.open = null; }); // Escape closes a dialog by itself
  z.stars.addEventListener("click", (e) => e.stopPropagation());
  document.addEventListener("keydown", (e) => zbKey(z, e));
  return z;
}

function zbSend(z, event, emit) {
  z.sent += 1;
  z.pending.push({ ...event, id: `${z.token}:${z.sent}` });
  emit({ events: z.pending.slice() });
}

// Draw what changed: the cells only when the images, labels, size or layout changed; else the panels and
// the checkpoint labels (stars, release) in place.
function zbRefresh(z) {
  const data = z.data;
  if (!z.size) {
    const width = z.root.clientWidth || window.innerWidth;
    const fit = Math.floor((width - 200) / Math.max(1, Math.min(8, data.columns.length))) - 8;
    z.size = Math.max(96, Math.min(512, data.cellSize || fit));
  }
  z.sizeInput.value = z.size;
  z.flip.checked = z.transpose;
  z.head.replaceChildren();
  if (data.title) z.head.append(zbEl("h1", null, data.title));
  if (data.header) z.head.append(zbEl("div", "zb-header", data.header.join("\n")));
  zbMode(z);
  const panels = JSON.stringify(data.panels || []);
  const gridKey = JSON.stringify([
    data.columns.map((c) => [c.label, c.name, c.hash]), data.rows, data.cells, data.aspect, z.size, z.transpose,
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
  zbCorner(z);
  zbApply(z);
  if (z.open) zbOpen(z, z.open.r, z.open.c);
}

function zbMode(z) {
  z.boxButton.style.display = z.emit ? "" : "none";
  z.boxButton.classList.toggle("zb-on", z.boxMode);
  z.root.classList.toggle("zb-drawing", z.boxMode);
  z.hint.textContent = z.boxMode
    ? "drag over any image: the region becomes a zoom panel"
    : "wheel or pinch: zoom all · drag: pan all · click: large view, ← → flip" + (z.emit ? ", 1-5 rate" : "");
}

function zbBuild(z) {
  const data = z.data;
  z.builds += 1;
  z.images = [];
  z.labels = [];
  z.strips = [];
  z.table = zbEl("table");
  const head = zbEl("tr");
  z.corner = zbEl("th", "zb-corner");
  z.cornerKey = null;
  head.append(z.corner);
  z.table.append(head);
  if (!z.transpose) {
    data.columns.forEach((_, c) => head.append(zbColumnHead(z, c)));
    data.rows.forEach((label, r) => {
      const tr = zbEl("tr");
      tr.append(zbEl("td", "zb-rowlabel", label));
      data.columns.forEach((_, c) => tr.append(zbCell(z, r, c)));
      z.table.append(tr);
    });
  } else {
    const panels = data.panels || [];
    data.rows.forEach((label) => head.append(zbEl("th", "zb-rowhead", label)));
    panels.forEach((panel, p) => data.rows.forEach((label, r) => {
      const th = zbEl("th", "zb-rowhead zb-panel", `${panel.name} · ${label}`);
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

// The panels under the grid: for each panel, one strip per grid row, aligned with the columns.
function zbStrips(z) {
  for (const tr of z.strips) tr.remove();
  z.strips = [];
  (z.data.panels || []).forEach((panel, p) => {
    z.data.rows.forEach((label, r) => {
      const tr = zbEl("tr", "zb-strip");
      const cell = zbEl("td", "zb-rowlabel zb-panel", `${panel.name} · ${label}`);
      if (r === 0) zbRemoveButton(z, cell, panel, p);
      tr.append(cell);
      z.data.columns.forEach((_, c) => tr.append(zbCrop(z, r, c, panel, false)));
      z.table.append(tr);
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
  th.style.width = z.size + "px";
  th.style.maxWidth = z.size + "px";
  z.labels[c] = th;
  return th;
}

// A checkpoint's label: the short label, its stars, release and shortlist marks, the file name and hash, and the
// signal strip (one chip per signal: its value on a colour scale, green = best of the run, red = worst).
function zbLabel(el, col, signals) {
  const key = JSON.stringify([col.label, col.name, col.hash, col.stars, col.release, col.short, col.signals]);
  if (el.__zbKey === key) return;
  el.__zbKey = key;
  el.replaceChildren(zbEl("span", "zb-label", col.label));
  if (col.stars) el.append(zbEl("span", "zb-stars", "★".repeat(col.stars) + "☆".repeat(5 - col.stars)));
  if (col.release) el.append(zbEl("span", "zb-release", "release"));
  if (col.short) el.append(zbEl("span", "zb-short-mark", "shortlist"));
  el.append(zbEl("span", "zb-name", col.name));
  if (col.hash) el.append(zbEl("span", "zb-hash", col.hash));
  el.title = [col.label, col.name, col.hash].filter(Boolean).join("\n");
  if (signals && signals.length && col.signals) {
    const strip = zbEl("div", "zb-sig");
    signals.forEach((s, i) => {
      const [value, tone] = col.signals[i] || [null, null];
      const chip = zbEl("span", "zb-chip", value === null || value === undefined ? "–" : zbNumber(value));
      if (tone !== null && tone !== undefined) chip.style.background = `hsl(${Math.round(tone * 120)}, 65%, 82%)`;
      chip.title = `${s.label}: ${value === null || value === undefined ? "no value" : value}\n${s.means}\n` +
        `(${s.good === "high" ? "higher" : "lower"} is better)`;
      strip.append(chip);
    });
    el.append(strip);
  }
}

// The corner above the row labels names the strip's signals, one per chip line.
function zbCorner(z) {
  const signals = z.data.signals || [];
  const key = JSON.stringify(signals.map((s) => s.label));
  if (!z.corner || z.cornerKey === key) return;
  z.cornerKey = key;
  z.corner.replaceChildren();
  if (!signals.length) return;
  const strip = zbEl("div", "zb-sig zb-siglabels");
  for (const s of signals) {
    const chip = zbEl("span", "zb-chip", `${s.label} ${s.good === "high" ? "↑" : "↓"}`);
    chip.title = `${s.means} (${s.good === "high" ? "higher" : "lower"} is better)`;
    strip.append(chip);
  }
  z.corner.append(strip);
}

function zbNumber(v) {
  const a = Math.abs(v);
  return a >= 100 ? v.toFixed(0) : a >= 10 ? v.toFixed(1) : a >= 1 ? v.toFixed(2) : v.toFixed(3);
}

function zbCell(z, r, c) {
  const cell = z.data.cells[r][c];
  const td = zbEl("td");
  const div = zbEl("div", "zb-cell");
  div.style.width = z.size + "px";
  div.style.height = Math.round(z.size * z.data.aspect) + "px";
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
  // The panel's region of this cell's image (a CSS crop of the same image: no new file). Under the grid a
  // strip is as wide as its column; transposed, as tall as the checkpoint's row.
  const cell = z.data.cells[r][c];
  const td = zbEl("td");
  const a = z.data.aspect;
  let w = z.size;
  let h = Math.max(8, Math.round((w * a * panel.h) / panel.w));
  if (transposed) {
    h = Math.round(z.size * a);
    w = Math.max(8, Math.round((h * panel.w) / (panel.h * a)));
  }
  const k = w / panel.w; // px per image width
  const div = zbEl("div", "zb-cropcell");
  div.style.width = w + "px";
  div.style.height = h + "px";
  div.dataset.panel = panel.name;
  if (cell.src) {
    const img = zbEl("img");
    img.src = cell.src;
    img.draggable = false;
    img.alt = `${panel.name} · ${z.data.columns[c].label} · ${z.data.rows[r]}`;
    Object.assign(img.style, {
      width: k + "px", height: k * a + "px", left: -panel.x * k + "px", top: -panel.y * k * a + "px",
    });
    div.append(img);
  } else {
    div.classList.add("zb-pending");
  }
  td.append(div);
  return td;
}

function zbApply(z) {
  const w = z.size;
  const h = Math.round(z.size * z.data.aspect);
  const transform = `translate(${-z.view.x * w * z.view.s}px, ${-z.view.y * h * z.view.s}px) scale(${z.view.s})`;
  for (const img of z.images) img.style.transform = transform;
  // Enlarged, each image pixel stays a sharp square (no blur over the detail being judged); shrunk, the
  // browser's smooth filter (nearest-neighbour shrinking would alias).
  z.root.classList.toggle("zb-shrunk", z.size * z.view.s < (z.data.imageWidth || 0));
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
    points.set(e.pointerId, { x: e.clientX, y: e.clientY });
    div.setPointerCapture(e.pointerId);
    if (points.size === 2 && !z.boxMode) {
      if (drag && drag.rect) drag.rect.remove();
      drag = null;
      pinch = { start: spread(), s: z.view.s };
      return;
    }
    drag = { x: e.clientX, y: e.clientY, vx: z.view.x, vy: z.view.y, moved: false };
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
    }
  };
  div.addEventListener("pointerup", end);
  div.addEventListener("pointercancel", end);
  div.addEventListener("wheel", (e) => {
    if (Math.abs(e.deltaX) > Math.abs(e.deltaY)) return; // a sideways swipe scrolls the grid
    e.preventDefault();
    zbZoomAt(z, div, e.clientX, e.clientY, z.view.s * Math.exp(-e.deltaY / 300));
  }, { passive: false });
  div.addEventListener("dblclick", () => { z.view = { s: 1, x: 0, y: 0 }; zbApply(z); });
}

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

function zbKey(z, e) {
  if (!z.open || !z.root.isConnected) return;
  if (e.key === "Escape") zbClose(z);
  const step = e.key === "ArrowRight" ? 1 : e.key === "ArrowLeft" ? -1 : 0;
  if (step) {
    e.preventDefault();
    e.stopImmediatePropagation();
    const n = z.data.columns.length;
    zbOpen(z, z.open.r, (z.open.c + step + n) % n);
  } else if (z.emit && /^[0-5]$/.test(e.key) && z.data.columns[z.open.c].rateable) {
    zbRate(z, z.open.c, Number(e.key));
  } else if (z.emit && /^[kxKX]$/.test(e.key) && z.data.columns[z.open.c].rateable) {
    // A quick pass over the run: keep or drop each checkpoint on the shortlist while flipping with ← →.
    const col = z.data.columns[z.open.c];
    z.emit({ type: "shortlist", col: z.open.c, checkpoint: col.checkpoint, keep: e.key.toLowerCase() === "k" });
  }
}
