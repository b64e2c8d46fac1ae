// zbench grid viewer: the same grid as the bench page, in any browser, offline.
// Synced zoom and pan over every cell (wheel or pinch to zoom, drag to pan, double-click to reset),
// sticky labels, a cell-size control, transpose, and a large view with arrow keys to flip through epochs.
(function () {
  "use strict";

  function el(tag, cls, text) {
    const node = document.createElement(tag);
    if (cls) node.className = cls;
    if (text !== undefined) node.textContent = text;
    return node;
  }

  function init(root, data) {
    const view = { s: 1, x: 0, y: 0 }; // zoom and offset, in fractions of the image: the same for every cell
    const state = { size: data.cellSize || 192, transpose: false, open: null };
    root.classList.add("zb");
    root.append(el("h1", null, data.title));
    root.append(el("div", "zb-header", data.header.join("\n")));

    const controls = el("div", "zb-controls");
    const size = el("input");
    Object.assign(size, { type: "range", min: 96, max: 512, step: 8, value: state.size });
    const sizeLabel = el("label", null, "cell size ");
    sizeLabel.append(size);
    const flip = el("input");
    flip.type = "checkbox";
    const flipLabel = el("label");
    flipLabel.append(flip, document.createTextNode(" checkpoints as rows"));
    const reset = el("button", null, "reset zoom");
    controls.append(sizeLabel, flipLabel, reset, el("span", null, "wheel: zoom all · drag: pan all · click: large view, ← → flip"));
    root.append(controls);

    const scroll = el("div", "zb-scroll");
    root.append(scroll);
    const box = el("div", "zb-lightbox");
    const big = el("img");
    const caption = el("div", "zb-caption");
    const message = el("div", "zb-message");
    box.append(big, caption, message);
    root.append(box);

    const images = [];
    function apply() {
      for (const img of images) {
        const w = img.parentElement.clientWidth;
        const h = img.parentElement.clientHeight;
        img.style.transform = `translate(${-view.x * w * view.s}px, ${-view.y * h * view.s}px) scale(${view.s})`;
      }
    }

    function cellNode(r, c) {
      const cell = data.cells[r][c];
      const td = el("td");
      const div = el("div", "zb-cell");
      const h = Math.round(state.size * data.aspect);
      div.style.width = state.size + "px";
      div.style.height = h + "px";
      if (cell.src) {
        const img = el("img");
        img.src = cell.src;
        img.alt = `${data.columns[c].label} · ${data.rows[r]}`;
        img.draggable = false;
        div.append(img);
        images.push(img);
      } else {
        div.className = "zb-cell zb-error";
        div.title = cell.error || cell.status;
        const badge = el("span", "zb-badge", cell.status);
        div.append(badge, document.createTextNode((cell.error || "").slice(0, 60)));
      }
      attach(div, r, c);
      td.append(div);
      return td;
    }

    function header(c) {
      const th = el("th");
      const col = data.columns[c];
      th.append(document.createTextNode(col.label), el("span", "zb-name", col.name), el("span", "zb-hash", col.hash));
      th.style.maxWidth = state.size + "px";
      return th;
    }

    function build() {
      images.length = 0;
      const table = el("table");
      const head = el("tr");
      head.append(el("th", "zb-corner"));
      const nr = data.rows.length;
      const nc = data.columns.length;
      if (!state.transpose) {
        for (let c = 0; c < nc; c++) head.append(header(c));
        table.append(head);
        for (let r = 0; r < nr; r++) {
          const tr = el("tr");
          tr.append(el("td", "zb-rowlabel", data.rows[r]));
          for (let c = 0; c < nc; c++) tr.append(cellNode(r, c));
          table.append(tr);
        }
      } else {
        for (let r = 0; r < nr; r++) head.append(el("th", null, data.rows[r]));
        table.append(head);
        for (let c = 0; c < nc; c++) {
          const tr = el("tr");
          const label = el("td", "zb-rowlabel", data.columns[c].label);
          label.append(el("div", "zb-name", data.columns[c].name));
          tr.append(label);
          for (let r = 0; r < nr; r++) tr.append(cellNode(r, c));
          table.append(tr);
        }
      }
      scroll.replaceChildren(table);
      apply();
    }

    function attach(div, r, c) {
      let drag = null;
      div.addEventListener("pointerdown", (e) => {
        drag = { x: e.clientX, y: e.clientY, vx: view.x, vy: view.y, moved: false };
        div.setPointerCapture(e.pointerId);
      });
      div.addEventListener("pointermove", (e) => {
        if (!drag) return;
        const dx = (e.clientX - drag.x) / div.clientWidth / view.s;
        const dy = (e.clientY - drag.y) / div.clientHeight / view.s;
        if (Math.abs(e.clientX - drag.x) + Math.abs(e.clientY - drag.y) > 3) drag.moved = true;
        view.x = clamp(drag.vx - dx);
        view.y = clamp(drag.vy - dy);
        apply();
      });
      div.addEventListener("pointerup", () => {
        if (drag && !drag.moved) open(r, c);
        drag = null;
      });
      div.addEventListener("wheel", (e) => {
        e.preventDefault();
        const rect = div.getBoundingClientRect();
        const fx = view.x + (e.clientX - rect.left) / rect.width / view.s; // the image point under the cursor
        const fy = view.y + (e.clientY - rect.top) / rect.height / view.s;
        view.s = Math.min(16, Math.max(1, view.s * Math.exp(-e.deltaY / 300)));
        view.x = clamp(fx - (e.clientX - rect.left) / rect.width / view.s);
        view.y = clamp(fy - (e.clientY - rect.top) / rect.height / view.s);
        apply();
      }, { passive: false });
      div.addEventListener("dblclick", () => { view.s = 1; view.x = view.y = 0; apply(); });
    }

    function clamp(v) { return Math.min(Math.max(v, 0), 1 - 1 / view.s); }

    function open(r, c) {
      state.open = { r, c };
      const cell = data.cells[r][c];
      const col = data.columns[c];
      big.style.display = cell.src ? "" : "none";
      if (cell.src) big.src = cell.src;
      caption.textContent = `${col.label} · ${col.name} · ${data.rows[r]} (${c + 1}/${data.columns.length})`;
      message.textContent = cell.src ? "" : `${cell.status}: ${cell.error || ""}`;
      box.classList.add("zb-open");
    }

    box.addEventListener("click", () => { box.classList.remove("zb-open"); state.open = null; });
    document.addEventListener("keydown", (e) => {
      if (!state.open) return;
      if (e.key === "Escape") { box.classList.remove("zb-open"); state.open = null; }
      const step = e.key === "ArrowRight" ? 1 : e.key === "ArrowLeft" ? -1 : 0;
      if (step) {
        e.preventDefault();
        const c = (state.open.c + step + data.columns.length) % data.columns.length;
        open(state.open.r, c);
      }
    });
    size.addEventListener("input", () => { state.size = Number(size.value); build(); });
    flip.addEventListener("change", () => { state.transpose = flip.checked; build(); });
    reset.addEventListener("click", () => { view.s = 1; view.x = view.y = 0; apply(); });
    build();
    return { view, state, rebuild: build };
  }

  window.zbenchGrid = { init };
})();
