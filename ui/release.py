"""Mark as release: the checkpoint (preselected only on clear evidence), who and why, and what speaks against it.

Marking records the decision with the evidence it rested on and the newest sheet if one was exported; it never
exports anything itself, so it takes well under a second.
"""

from __future__ import annotations

import contextlib
from pathlib import Path

import streamlit as st

import zbench

from .grid import keep_grid
from .run import OpenRun
from .text import literal


def _latest_sheet(opened: OpenRun) -> str | None:
    """The sheet the choice can name: this session's last export, else the newest one in the run's folder."""
    if "export" in st.session_state:
        out, manifest = st.session_state["export"]
        name = manifest.get("pdf") or manifest.get("share") or manifest.get("sheet") or "manifest.json"
        return str(Path(out) / name)
    folder = opened.run_dir / "zbench-sheets"
    with contextlib.suppress(OSError):
        manifests = sorted(folder.glob("*/manifest.json"), key=lambda p: p.stat().st_mtime)
        if manifests:
            return str(manifests[-1])
    return None


def mark_release(
    opened: OpenRun, dec: zbench.Decision, store: zbench.DecisionStore, review: zbench.Review, record: dict | None
) -> None:
    usable = [c.name for c in opened.run if c.error is None]
    labels = dec.labels
    st.markdown("**Mark as release**")
    m1, m2, m3 = st.columns([2, 2, 3])
    proposed = dec.recommendation.checkpoint
    # Preselected only when the evidence is clear; otherwise the choice is the user's, made on purpose.
    pick = m1.selectbox(
        "Checkpoint to release",
        usable,
        index=usable.index(proposed) if proposed in usable else None,
        format_func=lambda n: f"{labels.get(n, n)} · {n}",
        placeholder="choose one (no clear leader yet)",
        key=f"release_pick:{proposed}",
    )
    who = m2.text_input("Who", zbench.default_user())
    reason = m3.text_input("Why", "")
    if pick is None:
        settle = dec.recommendation.settle
        settle = (settle[:1].upper() + settle[1:]).rstrip(".")
        more = f" {literal(settle)}." if settle else ""
        st.caption(f"Nothing is preselected: the evidence is not clear yet.{more}")
    for warning in _warnings(pick, store, review, usable) if pick else []:
        st.warning(literal(warning))
    sheet = _latest_sheet(opened)
    if st.button("Mark as release", type="primary", disabled=pick is None):
        try:
            plan_settings = st.session_state.get("grid")
            request = plan_settings[0] if plan_settings else None
            store.mark_release(
                opened.by_name[pick],
                who=who,
                reason=reason,
                sheet=sheet,  # the record names a sheet when one was exported; nothing is exported here
                settings={}
                if request is None
                else {"prompts": list(request.prompts), "seeds": list(request.seeds), "steps": request.settings.steps},
                evidence=dec.evidence(),
            )
            keep_grid()  # the grid shows the release badge; its cells stay
            st.rerun()
        except (zbench.DecisionError, OSError) as err:
            st.error(literal(err))
    if record:
        with st.expander("Decision record", expanded=False):
            st.json(record)


def _warnings(pick: str, store, review, usable: list[str]) -> list[str]:
    """What speaks against the chosen checkpoint: a low rank among the ranked ones or a low rating."""
    out = []
    ranked = {r["name"]: r for r in store.ranking(usable) if r["rank"] is not None}
    if pick in ranked and len(ranked) >= 3 and ranked[pick]["rank"] > (len(ranked) + 1) / 2:
        out.append(f"{pick} ranks {ranked[pick]['rank']} of {len(ranked)} in the ratings and blind votes.")
    rating = review.ratings.get(pick)
    if rating is not None and rating <= 2:
        out.append(f"{pick} is rated {rating} of 5.")
    elif rating is not None and review.ratings and rating < max(review.ratings.values()):
        best = max(review.ratings.values())
        out.append(f"{pick} is rated {rating}; other checkpoints are rated {best}.")
    return out
