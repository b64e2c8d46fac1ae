"""From nothing to a marked release on a real-size run, in the browser: how many interactions, how long.

`python benchmarks/release_walk.py [--epochs 30] [--votes-only]`

Serves the page (as `streamlit run app.py` does) on the demo's base with ``--epochs`` kohya-named checkpoints
blended from the demo's run, with the demo's ``[signals]`` (8 prompts x 2 seeds, the scene judge, the training
images), and drives it in Debian's chromium at 1280x800 as a trainer would:

1. open the page (the first grid renders by itself: no interaction);
2. open the Pick a release tab; press "Measure on the signal set";
3. rate the shortlist in Rate and note, as the page asks first: it opens on the shortlist's first unrated
   checkpoint and moves on after each save (to one that joined the shortlist, too); the person looks at that
   checkpoint's image in the grid and gives 1-5 stars on their taste (below), scaled over the whole run's grid;
   one slider and one Save per checkpoint, one interaction (``--votes-only`` skips this step);
4. vote with the arrow keys until the page proposes a release (at most ``--max-votes``). The simulated person
   prefers the image that shows the prompt's scene (the demo's judge), then the one with more glow: the
   dreamy style the run teaches;
5. press Mark as release.

It prints every interaction, the count, the recommendation the page gave and the wall time (rendering
included: the grid's 31 images and the signal set's 496 on 2 CPU cores).
"""

from __future__ import annotations

import argparse
import base64
import io
import re
import sys
import tempfile
import time
from pathlib import Path

from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from zbench import DecisionStore, scan_run, short_label
from zbench.demo.bigrun import blend_run
from zbench.demo.metrics import scene_score
from zbench.demo.serve import demo_config, demo_model, serve_page
from zbench.demo.shapes import glow_share
from zbench.engine.config import REPO_ROOT, load_config

CHROMIUM = "/usr/bin/chromium"


def taste(image: Image.Image, prompt: str) -> float:
    """The simulated person: the prompt's scene right first, then more of the style's glow."""
    return (scene_score(image, prompt) or 0.0) + glow_share(image)


def _fetch(img) -> Image.Image:
    data = img.evaluate(
        """async (img) => { const b = new Uint8Array(await (await fetch(img.src)).arrayBuffer());
          let s = ""; for (const x of b) s += String.fromCharCode(x); return btoa(s); }"""
    )
    return Image.open(io.BytesIO(base64.b64decode(data))).convert("RGB")


def _rate(page, run: Path, prompt: str, done: list[str]) -> None:
    """Rate what Rate and note shows until it shows a checkpoint already rated (the shortlist is all rated)."""
    run_checkpoints = [c for c in scan_run(run) if c.error is None]
    labels = {c.name: short_label(c) for c in run_checkpoints}
    # The person has seen the whole grid: stars place each image on the run's range of their taste. A grid
    # cell's image is named "<its column's label> · <its row>".
    tastes = {}
    for c in run_checkpoints:
        heads = dict.fromkeys([f"epoch {c.epoch}" if c.epoch is not None else c.label, c.label, labels[c.name]])
        cell = next(page.locator(f'img[alt^="{h} · "]') for h in heads if page.locator(f'img[alt^="{h} · "]').count())
        tastes[c.name] = taste(_fetch(cell.first), prompt)
    low, high = min(tastes.values()), max(tastes.values())
    store = DecisionStore(run)
    for _ in range(len(labels)):
        # Rate and note's selectbox (not "Checkpoints" or "Checkpoint to release"): its input holds the name shown.
        name = page.get_by_role("combobox", name="Checkpoint", exact=True).input_value()
        if name not in labels or name in store.load().ratings:
            return
        stars = max(1, min(5, round(1 + 4 * (tastes[name] - low) / max(high - low, 1e-9))))
        slider = page.get_by_role("slider").first
        slider.focus()
        page.keyboard.press("Home")  # "–", then one step per star
        for _ in range(stars):
            page.keyboard.press("ArrowRight")
        page.get_by_role("button", name="Save rating and note").click()
        done.append(f"rate {labels[name]}: {stars} stars")
        deadline = time.monotonic() + 60
        while store.load().ratings.get(name) != stars:
            if time.monotonic() > deadline:
                raise TimeoutError(f"the rating of {name} was not saved")
            time.sleep(0.2)
        page.wait_for_timeout(1500)  # the tab reruns: the shortlist may grow, the checkpoint shown moves on


def walk(epochs: int, max_votes: int, scratch: Path, rate: bool = True) -> dict:
    from playwright.sync_api import sync_playwright

    model, source = demo_model(scratch)
    run = scratch / "run"
    blend_run(source, run, epochs)
    demo = load_config()
    config = demo_config(scratch / "walk.toml", model, run)
    config.write_text(
        config.read_text()
        + "[signals]\n"
        + f'seeds = "{demo.signal_seeds}"\n'
        + f'prompts_file = "{demo.signal_prompts_file}"\n'
        + 'scorers = ["zbench.demo.metrics:scene_score"]\n'
        + f'dataset = "{REPO_ROOT / "loras" / "dreamy" / "dataset"}"\n'
    )
    done: list[str] = []
    started = time.perf_counter()
    with serve_page(config, scratch / "cache", scratch / "streamlit.log") as served, sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu"])
        page = browser.new_page(viewport={"width": 1280, "height": 800})
        page.goto(served.url)
        page.get_by_text(f"{epochs + 1} cells ·").wait_for(timeout=600_000)
        page.get_by_role("tab", name="Pick a release").click()
        done.append("open the Pick a release tab")
        page.get_by_text("Keys live").wait_for(timeout=60_000)
        page.get_by_role("button", name="Measure on the signal set").click()
        done.append("measure on the signal set")
        page.get_by_text("Signals: from the signal set").wait_for(timeout=900_000)
        if rate:
            _rate(page, run, demo.prompt, done)
        for n in range(max_votes):
            if page.get_by_text("Release epoch").count():
                break
            # The blind pair: the page's lossless pixel component, names hidden (alt "left image" / "right image").
            shown = page.get_by_role("img", name=re.compile(r"^(left|right) image$"))
            shown.first.wait_for(timeout=60_000)
            deadline = time.monotonic() + 60
            while shown.count() != 2:  # while the tab reruns, the old pair may still be on screen beside the new
                if time.monotonic() > deadline:
                    raise TimeoutError("the blind pair did not settle")
                page.wait_for_timeout(200)
            left, right = (
                _fetch(page.get_by_role("img", name="left image")),
                _fetch(page.get_by_role("img", name="right image")),
            )
            key = "ArrowLeft" if taste(left, demo.prompt) >= taste(right, demo.prompt) else "ArrowRight"
            page.keyboard.press(key)
            done.append(f"vote ({key})")
            page.wait_for_function(f"document.body.innerText.includes('{n + 1} vote')", timeout=60_000)
            page.wait_for_timeout(300)
        text = page.inner_text("body")
        said = next((line for line in text.splitlines() if line.startswith(("Release epoch", "Not yet"))), "")
        page.get_by_role("button", name="Mark as release").click()
        done.append("mark as release")
        page.get_by_text("Release: ").first.wait_for(timeout=60_000)
        browser.close()
    record = DecisionStore(run).release()
    seconds = time.perf_counter() - started
    shortlist = record["evidence"]["shortlist"]
    moved = {**record["evidence"].get("grown", {}), **record["evidence"].get("left", {})}
    return {"interactions": done, "said": said, "released": record["checkpoint"], "seconds": seconds,
            "shortlist": shortlist, "moved": moved}  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--epochs", type=int, default=30, help="checkpoints in the run (default 30)")
    parser.add_argument("--max-votes", type=int, default=60, help="give up proposing after this many votes")
    parser.add_argument("--votes-only", action="store_true", help="no rating pass: blind votes only")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="zbench-walk-") as scratch:
        out = walk(args.epochs, args.max_votes, Path(scratch), rate=not args.votes_only)
    votes = sum(i.startswith("vote") for i in out["interactions"])
    rated = sum(i.startswith("rate") for i in out["interactions"])
    print(f"{args.epochs} checkpoints: {len(out['interactions'])} interactions ({rated} ratings, {votes} votes), "
          f"{out['seconds']:.0f} s wall with rendering; released {out['released']}")  # fmt: skip
    print(f"the page said: {out['said']}")
    print(f"shortlist at the release: {', '.join(out['shortlist'])}")
    for name, why in out["moved"].items():
        print(f"  {name} {why}")
    for i, step in enumerate(out["interactions"], 1):
        print(f"  {i:>2}. {step}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
