"""zbench page: the same prompt and seed across a LoRA run's checkpoints, side by side.

UI only: widgets, layout and messages. Every computation lives in the zbench package.
Run with ``streamlit run app.py`` (``ZBENCH_CONFIG`` picks another default config).
"""

from __future__ import annotations

import os
import random
import time
from pathlib import Path

import streamlit as st

import zbench

st.set_page_config(page_title="zbench", layout="wide")
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


def column_title(ck: zbench.Checkpoint | None) -> str:
    return "base (LoRA off)" if ck is None else ck.label


def show_cell(slot, result: zbench.CellResult) -> None:
    """Draw one grid cell (image, or its error) into a placeholder."""
    with slot.container():
        if result.image is not None:
            st.image(result.image, width="stretch")
            how = "from cache" if result.swap_path == "cache" else f"render {result.render_ms or 0:.0f} ms"
            if result.swap_ms is not None:
                how = f"swap {result.swap_ms:.1f} ms · {how}"
            st.caption(how)
        elif result.status == "error":
            st.error(result.error)
        else:
            st.info(result.error or result.status)


# -- 1. config and run --------------------------------------------------------------------------
configs = sorted(str(p) for p in zbench.default_config_path().parent.glob("*.toml"))
default_config = os.environ.get("ZBENCH_CONFIG", str(zbench.default_config_path()))
if default_config not in configs:
    configs.insert(0, default_config)

with st.sidebar:
    st.title("zbench")
    config_dir = zbench.default_config_path().parent
    config_path = st.selectbox(
        "Base config",
        configs,
        index=configs.index(default_config),
        # configs/ files by name; others by full path, so two files called demo.toml stay apart
        format_func=lambda p: Path(p).name if Path(p).parent == config_dir else p,
    )
    try:
        config = zbench.load_config(config_path)
    except zbench.ConfigError as err:
        st.error(str(err))
        st.stop()
    lora_dir = st.text_input("LoRA folder", str(config.lora_dir or ""), key=f"folder:{config_path}")

try:
    run = scan(lora_dir)
except (FileNotFoundError, NotADirectoryError) as err:
    st.info(f"{err}. Type the folder that holds your run's .safetensors files in the sidebar.")
    st.stop()
if not run:
    st.info(f"No LoRA checkpoints (.safetensors) in {lora_dir}. Point the sidebar at a run folder.")
    st.stop()
try:
    base = base_for(config_path)
except zbench.BaseModelError as err:
    st.info(str(err))
    st.stop()
by_name = {c.name: c for c in run}
names = [c.name for c in run]

# Checkpoints saved while the page is open (a run still training) join the selection.
known = st.session_state.setdefault(f"known:{lora_dir}", list(names))
fresh = [n for n in names if n not in known]
if fresh:
    st.session_state[f"known:{lora_dir}"] = list(names)
    chosen_key = f"chosen:{lora_dir}"
    if st.session_state.get("follow", True) and chosen_key in st.session_state:
        st.session_state[chosen_key] = [n for n in names if n in st.session_state[chosen_key] or n in fresh]
    st.toast(f"new checkpoint{'s' if len(fresh) > 1 else ''}: {', '.join(fresh)}")


@st.fragment(run_every=max(SCAN_TTL, 2.0))
def watch_run(folder: str, shown: tuple[str, ...]) -> None:
    """Rerun the page when the run folder gains or loses checkpoints."""
    try:
        now = tuple(c.name for c in scan(folder))
    except OSError:
        return
    if now != shown:
        st.rerun(scope="app")


watch_run(lora_dir, tuple(names))

# -- 2. what to render ---------------------------------------------------------------------------
with st.sidebar:
    prompts_text = st.text_area("Prompts (one per line)", config.prompt, height=90)
    negative = st.text_input("Negative prompt", config.negative)
    seeds_text = st.text_input("Seeds", str(config.seed), help="comma-separated: each seed is a row")
    scales_text = st.text_input("LoRA scales", "1.0", help="comma-separated, e.g. 0.5, 1: epoch × strength")
    left, right = st.columns(2)
    steps = left.number_input("Steps", min_value=1, max_value=200, value=config.steps)
    guidance = right.number_input("Guidance", min_value=0.0, max_value=30.0, value=float(config.guidance), step=0.5)
    width = left.number_input("Width", min_value=16, max_value=4096, value=config.width, step=16)
    height = right.number_input("Height", min_value=16, max_value=4096, value=config.height, step=16)
    include_base = st.checkbox("Base column (LoRA off)", value=True)
    st.checkbox("Add new checkpoints as they are saved", value=True, key="follow")

st.subheader(f"{config.name} · {Path(lora_dir).name}")
chosen = st.multiselect(
    "Checkpoints (in training order)",
    names,
    default=names,
    key=f"chosen:{lora_dir}",
    format_func=lambda n: f"{by_name[n].label} · {n}" if n in by_name else n,
)
try:
    request = zbench.GridRequest(
        checkpoints=tuple(chosen),
        prompts=tuple(zbench.parse_prompts(prompts_text)),
        seeds=tuple(zbench.parse_seeds(seeds_text)),
        scales=tuple(zbench.parse_scales(scales_text)),
        settings=zbench.RenderSettings(
            steps=int(steps), guidance=float(guidance), width=int(width), height=int(height), negative=negative
        ),
        include_base=include_base,
    )
except ValueError as err:
    st.error(str(err))
    st.stop()
if not chosen and not include_base:
    st.info("Pick at least one checkpoint, or turn on the base column.")
    st.stop()
rows, cells = request.plan(run)
info = zbench.SheetInfo(
    base=config.name,
    run=str(lora_dir),
    settings=request.settings,
    prompts=request.prompts,
    seeds=request.seeds,
    scales=request.scales,
)

b1, b2, b3 = st.columns([1, 1, 6])
render_clicked = b1.button("Render", type="primary")
stop_clicked = b2.button("Stop")
if stop_clicked:
    st.session_state["stopped"] = request
if render_clicked:
    st.session_state.pop("stopped", None)
cache_only = st.session_state.get("stopped") == request  # stopped: show what is drawn, draw nothing

tab_grid, tab_zoom, tab_export, tab_pick = st.tabs(["Grid", "Zoom", "Export", "Pick a release"])

# -- 3. the grid: placeholders first, filled as cells finish ---------------------------------
columns_of = {c.col: c.checkpoint for c in cells if c.row == 0}
slots = {}
with tab_grid:
    header = st.columns([1] + [3] * len(columns_of))
    for col, ck in columns_of.items():
        header[col + 1].markdown(f"**{column_title(ck)}**  \n`{'base' if ck is None else ck.name}`")
    for r, row in enumerate(rows):
        line = st.columns([1] + [3] * len(columns_of))
        line[0].caption(row.label(prompts=len(request.prompts), seeds=len(request.seeds), scales=len(request.scales)))
        for col in columns_of:
            slots[(r, col)] = line[col + 1].empty()
    progress_slot = b3.empty()

target_rank = max([c.rank or 0 for c in run if c.error is None] or [0])
started = time.perf_counter()


def on_cell(done: int, total: int, result: zbench.CellResult) -> None:
    show_cell(slots[(result.cell.row, result.cell.col)], result)
    if result.swap_path != "cache":
        progress_slot.progress(done / total, text=f"rendered {done} of {total}")


results = zbench.render_cells(
    base,
    cells,
    request.settings,
    target_rank=target_rank,
    progress=on_cell,
    cache=image_cache(),
    cache_only=cache_only,
)
progress_slot.empty()
pending = sum(r.status == "pending" for r in results)
errors = sum(r.status == "error" for r in results)
drawn = sum(r.image is not None and r.swap_path != "cache" for r in results)
with tab_grid:
    if pending:
        st.info(f"Stopped: {pending} cells not rendered. Press Render to finish the grid.")
    summary = f"{len(results)} cells · {drawn} rendered now in {time.perf_counter() - started:.1f} s"
    st.caption(summary + (f" · {errors} with errors" if errors else ""))
st.session_state["grid"] = (request, results)

# -- 4. crop-zoom panels ---------------------------------------------------------------------
zooms: list[zbench.ZoomSpec] = st.session_state.setdefault("zooms", [])
with tab_zoom:
    usable = [r for r in results if r.image is not None]
    if not usable:
        st.info("Nothing rendered yet to zoom into.")
    else:
        pick, view = st.columns([1, 3])
        with pick:
            st.markdown("**Region** (in % of the image)")
            zx = st.slider("left", 0, 95, 35, key="zx")
            zy = st.slider("top", 0, 95, 35, key="zy")
            zw = st.slider("width", 5, 100 - zx, min(30, 100 - zx), key="zw")
            zh = st.slider("height", 5, 100 - zy, min(30, 100 - zy), key="zh")
            factor = st.select_slider("Enlarge", options=[2, 3, 4, 5, 6, 7, 8], value=4, key="zfactor")
            method = st.radio("Upscaling", ["nearest", "smooth"], horizontal=True, key="zmethod")
            zname = st.text_input("Panel name", f"region {len(zooms) + 1}", key="zname")
            box = zbench.ZoomBox(zname.strip() or "region", zx / 100, zy / 100, zw / 100, zh / 100)
            current = zbench.ZoomSpec(box, factor, method)
            if st.button("Keep this panel"):
                zooms.append(current)
                del st.session_state["zname"]  # the next panel gets the next default name
                st.rerun()
            reference = usable[-1].image
            st.image(zbench.draw_boxes(reference, [z.box for z in [*zooms, current]]), caption="where")
        with view:
            for i, spec in enumerate([current, *zooms]):
                title = "current region" if i == 0 else f"panel {spec.box.name}"
                top = st.columns([4, 1])
                top[0].markdown(f"**{title}** · ×{spec.factor} {spec.method}")
                if i > 0 and top[1].button("Remove", key=f"rm{i}"):
                    zooms.pop(i - 1)
                    st.rerun()
                for r in range(len(rows)):
                    strip = zbench.zoom_strip(
                        results, spec.box, row=r, factor=spec.factor, method=spec.method, max_width=2400
                    )
                    st.image(strip, width="content")

# -- 5. comparison sheets --------------------------------------------------------------------
with tab_export:
    default_out = str(Path(lora_dir) / "zbench-sheets")
    out_root = st.text_input("Export folder", default_out)
    use_zooms = st.checkbox("Include the kept zoom panels", value=True)
    if st.button("Export sheet (PNG, PDF, manifest, cells zip)"):
        out = Path(out_root) / time.strftime("%Y%m%d-%H%M%S")
        try:
            manifest = zbench.export_sheet(out, results, rows, info, zooms=zooms if use_zooms else ())
            st.session_state["export"] = (str(out), manifest)
        except OSError as err:
            st.error(f"could not write the sheet to {out}: {err}. Pick a writable export folder.")
    if "export" in st.session_state:
        out, manifest = st.session_state["export"]
        st.success(f"Exported to {out}")
        files = [*manifest.get("pages", [manifest["sheet"]]), manifest.get("pdf"), manifest.get("zip"), "manifest.json"]
        for name in [f for f in files if f]:
            path = Path(out) / name
            if path.is_file():
                st.download_button(f"Download {name}", path.read_bytes(), file_name=path.name, key=f"dl:{out}:{name}")
        first = Path(out) / manifest.get("pages", [manifest["sheet"]])[0]
        if first.is_file():
            st.image(str(first), caption=first.name)

# -- 6. pick a release ------------------------------------------------------------------------
with tab_pick:
    usable_run = [c for c in run if c.error is None]
    if not usable_run:
        st.info("No usable checkpoint in this run.")
        st.stop()
    store = zbench.DecisionStore(usable_run[0].run_dir)
    try:
        review = store.load()
        record = store.release()
    except zbench.DecisionError as err:
        st.error(str(err))
        st.stop()
    ranking = store.ranking([c.name for c in usable_run])
    table = zbench.checkpoint_table(
        run,
        ratings=review.ratings,
        notes=review.notes,
        ranking=ranking,
        weights=zbench.weight_metrics(run),
        images=zbench.image_metrics(results),
        release=record["checkpoint"] if record else None,
    )
    if record:
        st.success(
            f"Release: **{record['checkpoint']}** (sha256 {record['hash']}), marked by {record['who']} "
            f"at {record['when']}" + (f", from sheet {record['sheet']}" if record.get("sheet") else "")
        )
    st.dataframe(table, hide_index=True, width="stretch")
    chart = table.dropna(subset=["epoch"]) if table["epoch"].notna().any() else table
    x = "epoch" if table["epoch"].notna().any() else ("step" if table["step"].notna().any() else None)
    metric = st.selectbox("Chart", ["delta norm", "weight change", "from base", "image change", "rating"])
    if x is not None and chart[metric].notna().any():
        st.line_chart(chart, x=x, y=metric, height=220)

    rate, blind = st.columns(2)
    with rate:
        st.markdown("**Rate and note**")
        target = st.selectbox("Checkpoint", [c.name for c in usable_run], key="rate_target")
        stars = st.select_slider("Rating", options=["–", 1, 2, 3, 4, 5], value=review.ratings.get(target, "–"))
        note = st.text_area("Note", review.notes.get(target, ""), key=f"note:{target}")
        if st.button("Save rating and note"):
            try:
                store.set_rating(target, None if stars == "–" else int(stars), hash=by_name[target].hash)
                store.set_note(target, note, hash=by_name[target].hash)
                st.rerun()
            except zbench.DecisionError as err:
                st.error(str(err))

    with blind:
        st.markdown("**Blind comparison** (first row's prompt and seed; names hidden)")
        candidates = [n for n in chosen if by_name[n].error is None]
        pair = st.session_state.get("blind_pair")
        if pair is None or not set(pair) <= set(candidates):
            pair = zbench.next_blind_pair(candidates, review.votes, random.Random())
            st.session_state["blind_pair"] = pair
        if pair is None:
            st.info("Choose at least two checkpoints for blind votes.")
        else:
            row0 = rows[0]
            _, pair_cells = zbench.plan_grid(
                [by_name[n] for n in pair], prompts=[row0.prompt], seeds=[row0.seed], include_base=False
            )
            shown = zbench.render_cells(
                base, pair_cells, request.settings, target_rank=target_rank, cache=image_cache()
            )
            a, b = st.columns(2)
            for side, result in zip((a, b), shown, strict=True):
                if result.image is not None:
                    side.image(result.image, width="stretch")
                else:
                    side.error(result.error)
            va, vb, skip = st.columns(3)
            vote = None
            if va.button("Left is better"):
                vote = (pair[0], pair[1])
            if vb.button("Right is better"):
                vote = (pair[1], pair[0])
            if vote is not None:
                store.add_vote(vote[0], vote[1], prompt=row0.prompt, seed=row0.seed)
            if vote is not None or skip.button("Skip"):
                st.session_state.pop("blind_pair", None)
                st.rerun()
            st.caption(f"{len(review.votes)} votes so far")

    st.markdown("**Mark as release**")
    m1, m2, m3 = st.columns([2, 2, 3])
    pick = m1.selectbox("Checkpoint to release", [c.name for c in usable_run], key="release_pick")
    who = m2.text_input("Who", zbench.default_user())
    reason = m3.text_input("Why", "")
    if st.button("Mark as release", type="primary"):
        if "export" not in st.session_state:  # the record names the sheet the choice was made from
            out = Path(lora_dir) / "zbench-sheets" / time.strftime("%Y%m%d-%H%M%S")
            st.session_state["export"] = (str(out), zbench.export_sheet(out, results, rows, info, zooms=zooms))
        sheet_dir, manifest = st.session_state["export"]
        try:
            store.mark_release(
                by_name[pick],
                who=who,
                reason=reason,
                sheet=str(Path(sheet_dir) / manifest.get("pdf", manifest["sheet"])),
                settings={
                    "prompts": list(request.prompts),
                    "seeds": list(request.seeds),
                    "steps": request.settings.steps,
                },
            )
            st.rerun()
        except (zbench.DecisionError, OSError) as err:
            st.error(str(err))
    if record:
        with st.expander("Decision record", expanded=False):
            st.json(record)
