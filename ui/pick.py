"""Pick a release: the per-checkpoint table and chart, ratings and notes, blind votes, and the release record.

The tab is one fragment: rating, noting, voting and marking rerun the tab (so the table, the chart, the
next pair and the release default all show the new vote or rating), never the grid.
"""

from __future__ import annotations

import random
import time
import zlib
from pathlib import Path

import streamlit as st

import zbench

from .grid import keep_grid, rerun_part, target_rank
from .request import GridPlan, panels
from .resources import image_cache
from .run import OpenRun
from .text import literal

# Blind votes by key: ← prefers the left image, → the right one. Keys typed into a text field are left alone.
_KEYS_JS = """
export default function (component) {
  const { setTriggerValue, parentElement } = component;
  if (parentElement.__zbKeys) return;
  const onKey = (e) => {
    const tag = (e.target && e.target.tagName) || "";
    if (["INPUT", "TEXTAREA", "SELECT"].includes(tag) || e.target.isContentEditable) return;
    // Only while the blind pair is on screen (not from another tab), and not while the grid's large view
    // is open (there the arrows flip through epochs).
    const host = parentElement.host || parentElement; // the shadow root's element, or the element itself
    if (!host.isConnected || !host.getClientRects().length) return;
    if (window.__zbenchGrid && window.__zbenchGrid.open) return;
    if (e.key === "ArrowLeft") setTriggerValue("key", "left");
    if (e.key === "ArrowRight") setTriggerValue("key", "right");
  };
  document.addEventListener("keydown", onKey);
  parentElement.__zbKeys = true;
  return () => { document.removeEventListener("keydown", onKey); parentElement.__zbKeys = false; };
}
"""
KEYS = st.components.v2.component("zbench.keys", js=_KEYS_JS)
CHART_METRICS = ["rating", "delta norm", "weight change", "from base", "image change", "vote score"]


@st.fragment
def pick_release(opened: OpenRun, plan: GridPlan, results: list[zbench.CellResult]) -> None:
    """The Pick a release tab. Everything it records lives in ``<run>/.zbench/`` (see zbench.DecisionStore)."""
    usable_run = [c for c in opened.run if c.error is None]
    if not usable_run:
        st.info("No usable checkpoint in this run.")
        return
    _table_and_chart(opened, results)
    rate, blind = st.columns(2)
    with rate:
        _rate_and_note(opened)
    with blind:
        _blind_vote(opened, plan)
    _mark_release(opened, plan, results)


def _load(opened: OpenRun):
    store = zbench.DecisionStore(opened.run_dir)
    try:
        return store, store.load(), store.release()
    except zbench.DecisionError as err:
        st.error(literal(err))
        return store, None, None


def _table_and_chart(opened: OpenRun, results: list[zbench.CellResult]) -> None:
    store, review, record = _load(opened)
    if review is None:
        return
    run = opened.run
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
    # Missing values show as blank cells, not "None".
    # Four decimals through the column config: a pandas Styler costs ~100 ms per rerun (every vote).
    floats = table.select_dtypes(["float", "Float64"]).columns
    decimals = {c: st.column_config.NumberColumn(format="%.4f") for c in floats}
    st.dataframe(table, hide_index=True, width="stretch", placeholder="", column_config=decimals)
    x = "epoch" if table["epoch"].notna().any() else ("step" if table["step"].notna().any() else None)
    metric = st.selectbox("Chart", CHART_METRICS, key="chart_metric")
    points = table.dropna(subset=[metric] + ([x] if x else []))
    if x is not None and len(points):
        # A line with its points: checkpoints without a value (unrated, not voted) leave gaps, and a lone
        # value between gaps still shows as a point. Vote scores carry their 95% interval as a bar.
        layers: list[dict] = [{"mark": "line"}, {"mark": {"type": "point", "filled": True, "size": 60}}]
        fields = [x, metric, "checkpoint"]
        if metric == "vote score":
            fields += ["vote low", "vote high"]
            layers.append(
                {
                    "mark": "rule",
                    "encoding": {"y": {"field": "vote low", "type": "quantitative"}, "y2": {"field": "vote high"}},
                }
            )
        st.vega_lite_chart(
            points[fields],
            {
                "layer": layers,
                "encoding": {
                    # Whole epochs or steps, over the whole run (a rated pair is seen in place).
                    "x": {
                        "field": x,
                        "type": "quantitative",
                        "axis": {"format": "d", "tickMinStep": 1},
                        "scale": {"domain": [float(table[x].min()), float(table[x].max())]},
                    },
                    "y": {"field": metric, "type": "quantitative"},
                    "tooltip": [{"field": "checkpoint"}, {"field": metric}],
                },
                "height": 220,
            },
            width="stretch",
        )
    else:
        st.caption(f"No {metric} values yet to chart.")


def _rate_and_note(opened: OpenRun) -> None:
    store, review, _ = _load(opened)
    if review is None:
        return
    usable = [c for c in opened.run if c.error is None]
    st.markdown("**Rate and note** (or open a cell of the grid and press 1-5)")
    if saved := st.session_state.pop("pick_saved", None):
        st.toast(f"saved for {literal(saved)}")
    target = st.selectbox("Checkpoint", [c.name for c in usable], key="rate_target")
    checkpoint = opened.by_name[target]
    # One widget per checkpoint: the value shown is always the rating of the checkpoint shown.
    # The stored values are part of the keys: a rating given on the grid shows here, not a stale widget's.
    rating, noted = review.ratings.get(target, "–"), review.notes.get(target, "")
    stars = st.select_slider("Rating", options=["–", 1, 2, 3, 4, 5], value=rating, key=f"rating:{target}:{rating}")
    note = st.text_area("Note", noted, key=f"note:{target}:{zlib.crc32(noted.encode())}")
    if st.button("Save rating and note"):
        try:
            store.set_rating(target, None if stars == "–" else int(stars), hash=checkpoint.hash)
            store.set_note(target, note, hash=checkpoint.hash)
            st.session_state["pick_saved"] = target
            rerun_part()  # the table and the release warnings show the new rating
        except zbench.DecisionError as err:
            st.error(literal(err))


def _blind_vote(opened: OpenRun, plan: GridPlan) -> None:
    store, review, _ = _load(opened)
    if review is None:
        return
    by_name = opened.by_name
    candidates = [n for n in plan.chosen if n in by_name and by_name[n].error is None]
    st.markdown("**Blind comparison** (names hidden; ← or → to vote)")
    pair = st.session_state.get("blind_pair")
    if pair is None or not set(pair[:2]) <= set(candidates) or pair[2] >= len(plan.rows):
        chosen = zbench.informative_pair(candidates, review.votes, random.Random())
        # Any row of the grid: every prompt, seed and scale gets votes, not only the first.
        pair = None if chosen is None else (*chosen, random.randrange(len(plan.rows)))
        st.session_state["blind_pair"] = pair
    if pair is None:
        st.info("Choose at least two checkpoints for blind votes.")
        return
    left_name, right_name, row_index = pair
    row = plan.rows[row_index]
    pair_run = [by_name[left_name], by_name[right_name]]
    if opened.stored is not None:  # browsing: the pair's images are stored ones
        shown = opened.stored.results(pair_run, [row], base_column=False)
    else:
        _, pair_cells = zbench.plan_grid(
            pair_run, prompts=[row.prompt], seeds=[row.seed], scales=[row.scale], include_base=False
        )
        shown = zbench.render_cells(
            opened.base, pair_cells, plan.request.settings, target_rank=target_rank(opened.run), cache=image_cache()
        )
    a, b = st.columns(2)
    for side, result in zip((a, b), shown, strict=True):
        if result.image is not None:
            side.image(result.image, width="stretch")
        else:
            side.error(literal(result.error))
    key = KEYS(key="blind_keys", on_key_change=lambda: None).key
    va, vb, skip = st.columns(3)
    vote = None
    if va.button("Left is better") or key == "left":
        vote = (left_name, right_name)
    if vb.button("Right is better") or key == "right":
        vote = (right_name, left_name)
    if vote is not None:
        try:
            store.add_vote(vote[0], vote[1], prompt=row.prompt, seed=row.seed)
        except zbench.DecisionError as err:
            st.error(literal(err))  # the vote is not recorded; the pair stays for another try
            return
    if vote is not None or skip.button("Skip"):
        st.session_state.pop("blind_pair", None)
        rerun_part()
    summary = zbench.vote_summary(candidates, review.votes)
    if summary["leader"] is None:
        st.caption("No votes yet.")
    elif summary["settled"]:
        st.caption(f"{summary['votes']} votes: {literal(summary['leader'])} leads clearly (95%).")
    else:
        more = f"about {summary['more']} more votes" if summary["more"] else "more votes"
        st.caption(
            f"{summary['votes']} votes: {literal(summary['leader'])} leads, but not yet clearly: {more} to tell."
        )


def _best(opened: OpenRun, store, review) -> str:
    """The best-ranked usable checkpoint: by blind votes, then by rating, else the last one."""
    usable = [c.name for c in opened.run if c.error is None]
    ranked = [r for r in store.ranking(usable) if r["rank"] is not None]
    if ranked:
        return min(ranked, key=lambda r: r["rank"])["name"]
    rated = [n for n in usable if n in review.ratings]
    if rated:
        return max(rated, key=lambda n: (review.ratings[n], usable.index(n)))
    return usable[-1]


def _mark_release(opened: OpenRun, plan: GridPlan, results: list[zbench.CellResult]) -> None:
    store, review, record = _load(opened)
    if review is None:
        return
    usable = [c.name for c in opened.run if c.error is None]
    st.markdown("**Mark as release**")
    m1, m2, m3 = st.columns([2, 2, 3])
    best = _best(opened, store, review)
    pick = m1.selectbox("Checkpoint to release", usable, index=usable.index(best), key=f"release_pick:{best}")
    who = m2.text_input("Who", zbench.default_user())
    reason = m3.text_input("Why", "")
    for warning in _warnings(pick, store, review, usable):
        st.warning(literal(warning))
    if st.button("Mark as release", type="primary"):
        try:
            if "export" not in st.session_state:  # the record names the sheet the choice was made from
                out = opened.run_dir / "zbench-sheets" / time.strftime("%Y%m%d-%H%M%S")
                st.session_state["export"] = (
                    str(out),
                    zbench.export_sheet(
                        out,
                        results,
                        plan.rows,
                        plan.info,
                        zooms=panels(opened),
                        stats=st.session_state.get("grid_stats"),
                    ),
                )
            sheet_dir, manifest = st.session_state["export"]
            sheet = manifest.get("pdf") or manifest.get("share") or manifest.get("sheet") or "manifest.json"
            store.mark_release(
                opened.by_name[pick],
                who=who,
                reason=reason,
                sheet=str(Path(sheet_dir) / sheet),
                settings={
                    "prompts": list(plan.request.prompts),
                    "seeds": list(plan.request.seeds),
                    "steps": plan.request.settings.steps,
                },
            )
            keep_grid()  # the grid shows the release badge; its cells stay
            st.rerun()
        except (zbench.DecisionError, OSError) as err:
            st.error(literal(err))
    if record:
        with st.expander("Decision record", expanded=False):
            st.json(record)


def _warnings(pick: str, store, review, usable: list[str]) -> list[str]:
    """What speaks against the chosen checkpoint: a low blind-vote rank or a low rating."""
    out = []
    ranked = {r["name"]: r for r in store.ranking(usable) if r["rank"] is not None}
    if pick in ranked and len(ranked) >= 3 and ranked[pick]["rank"] > (len(ranked) + 1) / 2:
        out.append(f"{pick} ranks {ranked[pick]['rank']} of {len(ranked)} in the blind votes.")
    rating = review.ratings.get(pick)
    if rating is not None and rating <= 2:
        out.append(f"{pick} is rated {rating} of 5.")
    elif rating is not None and review.ratings and rating < max(review.ratings.values()):
        best = max(review.ratings.values())
        out.append(f"{pick} is rated {rating}; other checkpoints are rated {best}.")
    return out
