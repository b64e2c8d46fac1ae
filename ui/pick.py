"""Pick a release: the per-checkpoint table and chart, ratings and notes, blind votes, and the release record."""

from __future__ import annotations

import random
import time
from pathlib import Path

import streamlit as st

import zbench

from .grid import target_rank
from .request import GridPlan
from .resources import image_cache
from .run import OpenRun
from .text import literal


def pick_release(
    opened: OpenRun, plan: GridPlan, results: list[zbench.CellResult], zooms: list[zbench.ZoomSpec]
) -> None:
    """The Pick a release tab. Everything it records lives in ``<run>/.zbench/`` (see zbench.DecisionStore)."""
    usable_run = [c for c in opened.run if c.error is None]
    if not usable_run:
        st.info("No usable checkpoint in this run.")
        st.stop()
    store = zbench.DecisionStore(usable_run[0].run_dir)
    try:
        review = store.load()
        record = store.release()
    except zbench.DecisionError as err:
        st.error(literal(err))
        st.stop()
    _table_and_chart(opened.run, store, review, record, results)
    rate, blind = st.columns(2)
    with rate:
        _rate_and_note(opened, store, review, usable_run)
    with blind:
        _blind_vote(opened, plan, store, review)
    _mark_release(opened, plan, store, results, zooms, usable_run)
    if record:
        with st.expander("Decision record", expanded=False):
            st.json(record)


def _table_and_chart(run, store, review, record, results) -> None:
    ranking = store.ranking([c.name for c in run if c.error is None])
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
            f"Release: **{literal(record['checkpoint'])}** (sha256 {literal(record['hash'])}), marked by "
            f"{literal(record['who'])} at {literal(record['when'])}"
            + (f", from sheet {literal(record['sheet'])}" if record.get("sheet") else "")
        )
    st.dataframe(table, hide_index=True, width="stretch")
    chart = table.dropna(subset=["epoch"]) if table["epoch"].notna().any() else table
    x = "epoch" if table["epoch"].notna().any() else ("step" if table["step"].notna().any() else None)
    metric = st.selectbox("Chart", ["delta norm", "weight change", "from base", "image change", "rating"])
    if x is not None and chart[metric].notna().any():
        st.line_chart(chart, x=x, y=metric, height=220)


def _rate_and_note(opened: OpenRun, store, review, usable_run) -> None:
    st.markdown("**Rate and note**")
    target = st.selectbox("Checkpoint", [c.name for c in usable_run], key="rate_target")
    stars = st.select_slider("Rating", options=["–", 1, 2, 3, 4, 5], value=review.ratings.get(target, "–"))
    note = st.text_area("Note", review.notes.get(target, ""), key=f"note:{target}")
    if st.button("Save rating and note"):
        checkpoint = opened.by_name[target]
        try:
            store.set_rating(target, None if stars == "–" else int(stars), hash=checkpoint.hash)
            store.set_note(target, note, hash=checkpoint.hash)
            st.rerun()
        except zbench.DecisionError as err:
            st.error(literal(err))


def _blind_vote(opened: OpenRun, plan: GridPlan, store, review) -> None:
    st.markdown("**Blind comparison** (first row's prompt and seed; names hidden)")
    by_name = opened.by_name
    candidates = [n for n in plan.chosen if by_name[n].error is None]
    pair = st.session_state.get("blind_pair")
    if pair is None or not set(pair) <= set(candidates):
        pair = zbench.next_blind_pair(candidates, review.votes, random.Random())
        st.session_state["blind_pair"] = pair
    if pair is None:
        st.info("Choose at least two checkpoints for blind votes.")
        return
    row0 = plan.rows[0]
    _, pair_cells = zbench.plan_grid(
        [by_name[n] for n in pair], prompts=[row0.prompt], seeds=[row0.seed], include_base=False
    )
    shown = zbench.render_cells(
        opened.base,
        pair_cells,
        plan.request.settings,
        target_rank=target_rank(opened.run),
        cache=image_cache(),
    )
    a, b = st.columns(2)
    for side, result in zip((a, b), shown, strict=True):
        if result.image is not None:
            side.image(result.image, width="stretch")
        else:
            side.error(literal(result.error))
    va, vb, skip = st.columns(3)
    vote = None
    if va.button("Left is better"):
        vote = (pair[0], pair[1])
    if vb.button("Right is better"):
        vote = (pair[1], pair[0])
    if vote is not None:
        try:
            store.add_vote(vote[0], vote[1], prompt=row0.prompt, seed=row0.seed)
        except zbench.DecisionError as err:
            st.error(literal(err))  # the vote is not recorded; the pair stays for another try
            return
    if vote is not None or skip.button("Skip"):
        st.session_state.pop("blind_pair", None)
        st.rerun()
    st.caption(f"{len(review.votes)} votes so far")


def _mark_release(opened: OpenRun, plan: GridPlan, store, results, zooms, usable_run) -> None:
    st.markdown("**Mark as release**")
    m1, m2, m3 = st.columns([2, 2, 3])
    pick = m1.selectbox("Checkpoint to release", [c.name for c in usable_run], key="release_pick")
    who = m2.text_input("Who", zbench.default_user())
    reason = m3.text_input("Why", "")
    if st.button("Mark as release", type="primary"):
        try:
            if "export" not in st.session_state:  # the record names the sheet the choice was made from
                out = Path(opened.lora_dir) / "zbench-sheets" / time.strftime("%Y%m%d-%H%M%S")
                st.session_state["export"] = (
                    str(out),
                    zbench.export_sheet(
                        out, results, plan.rows, plan.info, zooms=zooms, stats=st.session_state.get("grid_stats")
                    ),
                )
            sheet_dir, manifest = st.session_state["export"]
            store.mark_release(
                opened.by_name[pick],
                who=who,
                reason=reason,
                sheet=str(Path(sheet_dir) / manifest.get("pdf", manifest["sheet"])),
                settings={
                    "prompts": list(plan.request.prompts),
                    "seeds": list(plan.request.seeds),
                    "steps": plan.request.settings.steps,
                },
            )
            st.rerun()
        except (zbench.DecisionError, OSError) as err:
            st.error(literal(err))
