"""Pick a release: the per-checkpoint table and chart, ratings and notes, blind votes, and the release record.

The tab is one fragment: rating, noting, voting and marking rerun the tab (so the table, the chart, the
next pair and the release default all show the new vote or rating), never the grid.
"""

from __future__ import annotations

import math
import random
import zlib
from pathlib import Path

import streamlit as st

import zbench

from .grid import keep_grid, rerun_part, target_rank
from .gridview import image_url
from .keys import KEYS, PIXELS
from .release import mark_release
from .request import GridPlan
from .resources import image_cache
from .run import OpenRun
from .signals import decision, signal_set
from .text import literal

CHART_METRICS = ["rating", "P(best)", "delta norm", "weight change", "from base", "image change", "vote score"]


@st.fragment
def pick_release(opened: OpenRun, plan: GridPlan, results: list[zbench.CellResult]) -> None:
    """The Pick a release tab. Everything it records lives in ``<run>/.zbench/`` (see zbench.DecisionStore)."""
    usable_run = [c for c in opened.run if c.error is None]
    if not usable_run:
        st.info("No usable checkpoint in this run.")
        return
    # The run's records, read once per run of the tab; every part below works from them.
    store = zbench.DecisionStore(opened.run_dir)
    try:
        review = store.load()
    except zbench.DecisionError as err:
        st.error(literal(err))
        return
    try:
        record = store.release()
    except zbench.DecisionError as err:  # votes and ratings still work; marking a release waits for the fix
        st.error(literal(err))
        record = None
    dec = decision(opened, results, review)
    _recommendation(dec)
    _signal_source(opened, dec)
    _table_and_chart(opened, results, dec, review, record)
    _shortlist(opened, dec)
    rate, blind = st.columns(2)
    with rate:
        _rate_and_note(opened, store, review, dec.shortlist)
    with blind:
        _blind_vote(opened, plan, dec, store, review)
    mark_release(opened, dec, store, review, record)


def _recommendation(dec: zbench.Decision) -> None:
    """The recommendation first: what to release and why, or what would settle it."""
    rec = dec.recommendation
    text = literal(rec.headline())
    if rec.confidence == "clear":
        st.success(text, icon=":material/verified:")
    elif rec.confidence in ("likely", "even"):
        st.info(text)
    else:
        st.warning(text)
    for conflict in rec.conflicts:
        st.warning(literal(conflict))


def _signal_source(opened: OpenRun, dec: zbench.Decision) -> None:
    """Where the signals come from, what they cannot say, and a button to measure on the signal set."""
    report = dec.report
    source = st.session_state.get("signal_source")
    config = opened.config
    found = signal_set(opened)
    with st.expander(
        f"Signals: from {'the signal set' if source == 'set' else 'this grid'} ({report.images} images, "
        f"{report.seeds} seed{'s' if report.seeds != 1 else ''} per prompt)",
        expanded=source != "set",
    ):
        for signal in report.signals:
            better = "higher" if signal.good == "high" else "lower"
            st.text(f"{signal.label}: {signal.means} ({better} is better)")
        for problem in report.problems:
            st.caption(literal(problem))
        if problem := st.session_state.get("signal_problem"):
            st.caption(f"The signal set cannot be used: {literal(problem)}")
        if found is not None and found[1]:
            cells, name = len(found[0]), literal(Path(str(config.source)).name)
            st.caption(
                f"The signal set ([signals] in {name}: seeds {literal(config.signal_seeds)}, base and every "
                f"checkpoint, {cells} images) has {found[1]} not rendered yet. "
                "`python -m zbench suggest` renders it headless, or:"
            )
            if st.button(f"Measure on the signal set ({found[1]} renders)"):
                bar = st.progress(0.0, text="rendering the signal set")

                def progress(done: int, total: int, result) -> None:
                    bar.progress(done / total, text=f"rendering the signal set: {done} of {total}")

                signal_set(opened, render=True, progress=progress)
                keep_grid()
                st.rerun()


def _table_and_chart(
    opened: OpenRun, results: list[zbench.CellResult], dec: zbench.Decision, review: zbench.Review, record: dict | None
) -> None:
    run = opened.run
    table = zbench.checkpoint_table(
        run,
        ratings=review.ratings,
        notes=review.notes,
        ranking=dec.recommendation.ranking,  # the ranking the recommendation rests on, over its pool
        weights=zbench.weight_metrics(run),
        images=zbench.image_metrics(results),
        release=record["checkpoint"] if record else None,
        signals=dec.report,
        shortlist=dec.shortlist,
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
    decimals["P(best)"] = st.column_config.NumberColumn(format="percent")
    st.dataframe(table, hide_index=True, width="stretch", placeholder="", column_config=decimals)
    broken = {name: why for name, why in zip(table["checkpoint"], table["error"], strict=True) if why}
    if broken:
        with st.expander(f"{len(broken)} of {len(table)} checkpoints cannot be compared: why, and what to do"):
            for name, why in broken.items():
                st.text(f"{name}: {why}")
    st.caption(
        f"Ranked by ratings and blind votes together: one star counts {zbench.RATING_LOGIT:g} on the vote scale "
        f"(a 4-star checkpoint is expected to win {1 / (1 + math.exp(-zbench.RATING_LOGIT)):.0%} of blind votes "
        f"against a 3-star one) and a rating weighs about {zbench.RATING_VOTES} "
        "votes between equals. P(best) is the probability that a checkpoint is the best of those ranked; vote "
        "score is its strength (1 = average) with a 95% interval (vote low, vote high)."
    )
    x = "epoch" if table["epoch"].notna().any() else ("step" if table["step"].notna().any() else None)
    signal_labels = [s.label for s in dec.report.signals]
    metric = st.selectbox("Chart", signal_labels + CHART_METRICS, key="chart_metric")
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
                    "y": {"field": metric, "type": "quantitative", "scale": {"zero": False}},
                    "tooltip": [{"field": "checkpoint"}, {"field": metric}],
                },
                "height": 220,
            },
            width="stretch",
        )
        signal = next((s for s in dec.report.signals if s.label == metric), None)
        if signal is not None:
            st.caption(f"{literal(signal.means)} ({'higher' if signal.good == 'high' else 'lower'} is better)")
    else:
        st.caption(f"No {metric} values yet to chart.")


def _shortlist(opened: OpenRun, dec: zbench.Decision) -> None:
    """The shortlist votes are drawn among: suggested from the signals, edited here or with K / X in the large view."""
    usable = [c.name for c in opened.run if c.error is None]
    labels = dec.labels
    st.markdown("**Shortlist** (blind votes are drawn among these; in the grid's large view K keeps, X drops)")
    chosen = st.multiselect(
        "Shortlist",
        usable,
        default=dec.shortlist,
        format_func=lambda n: labels.get(n, n),
        key=f"shortlist:{opened.run_dir}:{','.join(dec.shortlist)}",
        label_visibility="collapsed",
    )
    if set(chosen) != set(dec.shortlist):
        store = zbench.DecisionStore(opened.run_dir)
        try:
            for name in set(chosen) ^ set(dec.shortlist):
                keep = name in chosen
                # Back to the suggestion when the edit agrees with it; otherwise remember the edit (one that
                # joined following the leader and is taken off is dropped: it would join again; one that left to
                # make room and is added back is kept: it would leave again).
                agrees = keep == (name in dec.suggested.names) and name not in dec.grown and name not in dec.left
                store.set_shortlist(name, None if agrees else keep)
        except zbench.DecisionError as err:
            st.error(literal(err))
            return
        st.session_state.pop("blind_pair", None)
        rerun_part()
    unseen = dec.recommendation.summary.get("unseen") or []
    for name, why in dec.grown.items():
        hint = " Rate it next: below, or open its cell of the grid and press 1-5." if name in unseen else ""
        st.caption(f"{literal(labels.get(name, name))} {literal(why)}.{hint}")
    for name, why in dec.left.items():
        st.caption(f"{literal(labels.get(name, name))} {literal(why)}.")
    if len(chosen) > 8:
        st.caption(f"{len(chosen)} on the shortlist: votes converge far faster among 6 or fewer.")
    with st.expander("Why these: the signals' reasons"):
        for name in dec.suggested.reasons:
            st.text(f"{labels.get(name, name)}: {dec.why(name)}")
        if dec.suggested.plateau:
            st.caption(f"Drift has levelled off since {literal(labels.get(dec.suggested.plateau))}.")


def _unrated(shortlist: list[str], ratings: dict, names: list[str]) -> str | None:
    """The first checkpoint of the shortlist without a rating: the one to rate next."""
    return next((n for n in shortlist if n in names and n not in ratings), None)


def _rate_and_note(opened: OpenRun, store: zbench.DecisionStore, review: zbench.Review, shortlist: list[str]) -> None:
    names = [c.name for c in opened.run if c.error is None]
    st.markdown("**Rate and note** (or open a cell of the grid and press 1-5)")
    if saved := st.session_state.pop("pick_saved", None):
        st.toast(f"saved for {literal(saved)}")
    # The checkpoint shown opens on the shortlist's first unrated one and moves on to the next after each save,
    # so rating the shortlist (and one that joined it) is one slider and one button per checkpoint.
    # After a save the shortlist may have grown (``follow_leader``): the next one is looked for in today's.
    # One the page chose (not the user) that has left the shortlist since (the signal set measured, an edit)
    # gives way to the shortlist's first unrated one as well.
    following = _unrated(shortlist, review.ratings, names) if st.session_state.pop("rate_next", False) else None
    current = st.session_state.get("rate_target")
    if following is None and current not in names:
        following = _unrated(shortlist, review.ratings, names) or names[0]
    elif following is None and current == st.session_state.get("rate_auto") and current not in shortlist:
        following = _unrated(shortlist, review.ratings, names)
    if following is not None:
        st.session_state["rate_target"] = st.session_state["rate_auto"] = following
    target = st.selectbox("Checkpoint", names, key="rate_target")
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
            st.session_state["rate_next"] = stars != "–"  # move on to the next unrated one of the shortlist
            rerun_part()  # the table and the release warnings show the new rating
        except zbench.DecisionError as err:
            st.error(literal(err))


def _blind_vote(
    opened: OpenRun, plan: GridPlan, dec: zbench.Decision, store: zbench.DecisionStore, review: zbench.Review
) -> None:
    by_name = opened.by_name
    candidates = [n for n in dec.shortlist if n in by_name and by_name[n].error is None]
    ratings = {n: r for n, r in review.ratings.items() if n in candidates}
    st.markdown("**Blind comparison** among the shortlist (names hidden)")
    pair = st.session_state.get("blind_pair")
    if pair is None or not set(pair[:2]) <= set(candidates) or pair[2] >= len(plan.rows):
        chosen = zbench.informative_pair(candidates, review.votes, random.Random(), ratings)
        # Any row of the grid: every prompt, seed and scale gets votes, not only the first.
        pair = None if chosen is None else (*chosen, random.randrange(len(plan.rows)))
        st.session_state["blind_pair"] = pair
    if pair is None:
        st.info("Put at least two checkpoints on the shortlist for blind votes.")
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
    for side, name, result in zip((a, b), ("left", "right"), shown, strict=True):
        if result.image is not None:
            (w, h), src = result.image.size, image_url(result.image, f"zbench.blind.{name}")
            with side:  # the names stay hidden: the alt text says only which side
                PIXELS(data={"src": src, "width": w, "height": h, "alt": f"{name} image"})
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
            review = store.add_vote(vote[0], vote[1], prompt=row.prompt, seed=row.seed)
        except zbench.DecisionError as err:
            st.error(literal(err))  # the vote is not recorded; the pair stays for another try
            return
    if vote is not None or skip.button("Skip") or key == "skip":
        st.session_state.pop("blind_pair", None)
        rerun_part()
    st.caption(_vote_words(dec.recommendation.summary, dec.labels))


def _vote_words(summary: dict, labels: dict[str, str]) -> str:
    """Where the votes stand (``vote_summary`` over the recommendation's pool), in words: who leads, how likely
    it is the best, and about how many votes remain."""

    def say(name: str) -> str:
        return literal(labels.get(name, name))

    votes = f"{summary['votes']} vote{'s' if summary['votes'] != 1 else ''}"
    if summary["leader"] is None:
        return f"No votes or ratings yet: about {summary['more'] or 2} votes will show a leader."
    lead = f"{say(summary['leader'])} is the best with {summary['p_best']:.0%} probability"
    if summary["runner_up"] is not None:
        lead += f" (next: {say(summary['runner_up'])}, {summary['runner_p']:.0%})"
    if summary["settled"]:
        return f"{votes}: {lead}. That is clear."
    if summary["even"]:
        return f"{votes}: {say(summary['leader'])} and {say(summary['runner_up'])} are about even: either is fine."
    n = summary["more"]
    more = f"about {n} more vote{'s' if n != 1 else ''}" if n else "a few more votes"
    return f"{votes}: {lead}; {more} to be sure."
