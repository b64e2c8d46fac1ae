"""Page benchmark: what the page's interactions cost at the size of a real run, and what an idle page costs.

`python benchmarks/page.py [--epochs 25] [--repeats 10] [--idle 30]`

Serves the page (as `streamlit run app.py` does, with the project's .streamlit/config.toml) on the demo's
base with a run of ``--epochs`` kohya-named checkpoints blended from the demo's, and drives it with
Playwright in Debian's chromium (both as for the browser tests). For each interaction it measures

- *round trip*: from the key press or click until the browser holds the server's answer (the grid's data
  shows the new stars or panel; the vote count is on the page). This bounds the server time from above;
- *server CPU*: CPU time the server process used per action (all its threads, from /proc/<pid>/stat),
  less what it uses idle in the same time.

Each action is reported twice: its *first* time in a browser session (what a person meets first: imports,
per-session caches, and whatever the page load left running) and the median of the *later* ones. The tabs'
first switches are measured in a new session right after its grid shows, as a person clicks.

Then the idle page: the server's CPU share over ``--idle`` seconds with a browser tab open on the grid,
side by side with the same page served with Streamlit's default file watcher (``fileWatcherType auto``,
what a run without the project's config gets). Linux only (reads /proc).
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from zbench.demo.bigrun import blend_run
from zbench.demo.serve import demo_config, demo_model, serve_page

TICK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process (all its threads) so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def background_seconds(pid: int) -> float:
    """CPU time so far of the server's threads at a lowered priority (the page's background work at nice 19:
    warm-ups nobody waits for). Short-lived threads are normal priority, so the rest is total - this."""
    total = 0
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            fields = (task / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:  # the thread ended
            continue
        if int(fields[16]) > 0:  # nice
            total += int(fields[11]) + int(fields[12])
    return total / TICK


class Meter:
    """Round trips and server CPU of repeated actions, less the server's idle CPU rate; the server's background
    work at the lowest priority in the same time is counted apart."""

    def __init__(self, pid: int, idle_rate: float):
        self.pid, self.idle_rate, self.rows, self.started = pid, idle_rate, {}, 0.0

    def measure(self, name: str, act, done, settle: float = 0.2) -> None:
        cpu0, bg0, t0 = cpu_seconds(self.pid), background_seconds(self.pid), time.perf_counter()
        self.started = t0
        act()
        done()
        wall = time.perf_counter() - t0
        wait_quiet(self.pid, share=max(0.05, 2 * self.idle_rate), window=settle)  # the run's last writes
        background = background_seconds(self.pid) - bg0
        spent = cpu_seconds(self.pid) - cpu0 - background - self.idle_rate * (time.perf_counter() - t0)
        walls, cpus, backs = self.rows.setdefault(name, ([], [], []))
        walls.append(wall * 1000)
        cpus.append(max(spent, 0.0) * 1000)
        backs.append(background * 1000)


def wait_quiet(pid: int, share: float = 0.05, window: float = 0.5, timeout: float = 120) -> None:
    """Until the server has finished what the last page load asked (the grid shows before the other tabs
    are done): two windows in a row under ``share`` of a core."""
    quiet, deadline = 0, time.monotonic() + timeout
    while quiet < 2 and time.monotonic() < deadline:
        quiet = quiet + 1 if idle_share(pid, window) < share else 0


def idle_share(pid: int, seconds: float) -> float:
    cpu0, t0 = cpu_seconds(pid), time.perf_counter()
    time.sleep(seconds)
    return (cpu_seconds(pid) - cpu0) / (time.perf_counter() - t0)


def open_grid(page, url: str, cells: int) -> float:
    t0 = time.perf_counter()
    page.goto(url)
    page.get_by_text(f"{cells} cells ·").wait_for(timeout=600_000)
    page.wait_for_function(f"window.__zbenchGrid && window.__zbenchGrid.images.length === {cells}")
    page.wait_for_function("window.__zbenchGrid.images.every((img) => img.complete && img.naturalWidth > 0)")
    return time.perf_counter() - t0


def grid_value(page, expr: str):
    return page.evaluate(f"(() => {{ const z = window.__zbenchGrid; return {expr}; }})()")


TABS = ("Pick a release", "Timeline", "Export", "Grid")


STATE = "document.querySelector('[data-test-script-state]')?.getAttribute('data-test-script-state')"


def run_done(page, since: float) -> None:
    """Until the run an action (at ``since``, perf_counter) started has finished: Streamlit marks the app while
    its script runs. A run not seen within 1.5 s was over before the first look."""
    seen = False
    while True:
        try:
            running = page.evaluate(STATE) == "running"
        except Exception:  # the page is between documents (a navigation): look again
            running = True
        seen = seen or running
        if not running and (seen or time.perf_counter() - since > 1.5):
            return
        if time.perf_counter() - since > 120:
            raise RuntimeError("the page's run did not finish in 120 s")
        time.sleep(0.02)


def click_tab(page, tab: str) -> None:
    page.get_by_role("tab", name=tab).click()


def tab_shown(page, tab: str, since: float) -> None:
    """Until the page's run is over and the tab's own content is on screen (the Timeline: its player's first
    frame)."""
    run_done(page, since)
    if tab == "Pick a release":
        page.get_by_role("combobox", name="Checkpoint to release").wait_for(timeout=60_000)
    elif tab == "Timeline":
        page.locator(".zb-tl-img[src]").first.wait_for(timeout=120_000)
    elif tab == "Export":
        page.get_by_role("button", name="Export", exact=True).wait_for(timeout=60_000)
    else:
        page.locator(".zb-cell").first.wait_for(timeout=60_000)


def tab_switches(page, meter: Meter, rounds: int) -> None:
    """Each tab opened in turn, ``rounds`` times: the first round is the session's first switch to each."""
    for _ in range(rounds):
        for tab in TABS:
            meter.measure(
                f"open the {tab} tab",
                lambda tab=tab: click_tab(page, tab),
                lambda tab=tab: tab_shown(page, tab, meter.started),
            )


def interactions(page, meter: Meter, repeats: int, epochs: int) -> None:

    cells = page.locator(".zb-cell")
    # Rate from the large view: a key, until the grid's data comes back with the stars. → moves on (browser only).
    cells.nth(1).click()
    for i in range(repeats):
        col, stars = 1 + i, 1 + i % 4  # 1-4: a 5 is kept for the tab switch below
        meter.measure(
            "rate a cell (1-5 key in the large view)",
            lambda stars=stars: page.keyboard.press(str(stars)),
            lambda col=col, stars=stars: page.wait_for_function(
                f"window.__zbenchGrid.data.columns[{col}].stars === {stars}", timeout=60_000
            ),
        )
        page.keyboard.press("ArrowRight")
    page.keyboard.press("Escape")

    # Draw a box (a panel under every column), then remove it.
    for i in range(repeats):
        box = cells.nth(2 + i % 3).bounding_box()
        x0, y0 = box["x"] + 0.2 * box["width"], box["y"] + 0.25 * box["height"]

        def draw(box=box, x0=x0, y0=y0):
            page.get_by_role("button", name="draw a box").click()
            page.mouse.move(x0, y0)
            page.mouse.down()
            page.mouse.move(x0 + 0.4 * box["width"], y0 + 0.3 * box["height"], steps=4)
            page.mouse.up()

        meter.measure(
            "draw a box → panel strips",
            draw,
            lambda: page.wait_for_function("window.__zbenchGrid.data.panels.length === 1", timeout=60_000),
        )
        meter.measure(
            "remove a panel",
            lambda: page.locator(".zb-remove").first.click(),
            lambda: page.wait_for_function("window.__zbenchGrid.data.panels.length === 0", timeout=60_000),
        )

    # Wheel zoom and drag pan: every cell at once, in the browser; the server should see nothing.
    box = cells.nth(3).bounding_box()
    cx, cy = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2

    def zoom_and_pan():
        page.mouse.move(cx, cy)
        for _ in range(5):
            page.mouse.wheel(0, -120)
        page.mouse.down()
        page.mouse.move(cx + 30, cy + 20, steps=5)
        page.mouse.up()
        page.get_by_role("button", name="reset zoom").click()

    for _ in range(repeats):
        meter.measure("wheel zoom ×5 + drag pan + reset (browser only)", zoom_and_pan, lambda: None)

    # Open the Pick a release tab after a rating on the grid: the page reruns with the grid's cells kept, and the
    # tab shows the new rating (the release pick preselects only a clear recommendation: not awaited here).
    for i in range(min(repeats, epochs - repeats)):
        col = repeats + 1 + i
        page.get_by_role("tab", name="Grid").click()
        cells.nth(col).click()
        page.keyboard.press("5")
        page.wait_for_function(f"window.__zbenchGrid.data.columns[{col}].stars === 5", timeout=60_000)
        page.keyboard.press("Escape")
        time.sleep(0.3)
        meter.measure(
            "open Pick a release after a rating (page rerun, grid kept)",
            lambda: click_tab(page, "Pick a release"),
            lambda: tab_shown(page, "Pick a release", meter.started),
        )

    # Blind votes by key: until the vote count on the page goes up.
    votes = page.get_by_text(" votes:").or_(page.get_by_text("No votes yet."))
    votes.first.wait_for()
    page.get_by_text("Blind comparison").click()  # focus off the tab list, where arrows switch tabs
    for i in range(repeats):
        meter.measure(
            "blind vote (→ key)",
            lambda: page.keyboard.press("ArrowRight"),
            lambda n=i + 1: page.get_by_text(f"{n} vote{'s' if n != 1 else ''}:").wait_for(timeout=60_000),
        )


def table(meter: Meter) -> list[str]:
    lines = [
        "| action | n | first: round trip ms | first: server CPU ms | first: background ms "
        "| later: round trip median ms | p90 ms | later: server CPU median ms | max ms |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, (walls, cpus, backs) in meter.rows.items():
        first = f"| {name} | {len(walls)} | {walls[0]:.0f} | {cpus[0]:.0f} | {backs[0]:.0f} |"
        if len(walls) == 1:
            lines.append(first + " – | – | – | – |")
            continue
        later_walls, later_cpus = sorted(walls[1:]), cpus[1:]
        p90 = later_walls[min(len(later_walls) - 1, round(0.9 * (len(later_walls) - 1)))]
        lines.append(
            f"{first} {statistics.median(later_walls):.0f} | {p90:.0f} | {statistics.median(later_cpus):.0f} | "
            f"{max(later_cpus):.0f} |"
        )
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--epochs", type=int, default=25, help="checkpoints in the run (default 25)")
    parser.add_argument("--repeats", type=int, default=10, help="times each action is measured (default 10)")
    parser.add_argument("--idle", type=float, default=30, help="seconds of idle page measured (default 30)")
    args = parser.parse_args(argv)
    import playwright.sync_api as playwright

    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        parser.error("needs Debian's chromium (apt-get install chromium), as the browser tests do")
    cells = args.epochs + 1
    with tempfile.TemporaryDirectory(prefix="zbench-page-bench-") as tmp, playwright.sync_playwright() as p:
        tmp = Path(tmp)
        model, source = demo_model(tmp)
        run = tmp / "dreamy"
        blend_run(source, run, args.epochs)
        config = demo_config(tmp / "demo.toml", model, run)
        browser = p.chromium.launch(executable_path=chromium, args=["--no-sandbox", "--disable-gpu"])
        page = browser.new_page(viewport={"width": 1280, "height": 800})
        with serve_page(config, tmp / "cache", tmp / "streamlit.log") as served:
            meter = Meter(served.pid, 0.0)  # its idle rate is measured below (about 2% of a core)
            cold = open_grid(page, served.url, cells)
            # The release walk's first click: a tab, as soon as a new server's first grid shows.
            meter.measure(
                "open the Pick a release tab, right after a new server's first grid",
                lambda: page.get_by_role("tab", name="Pick a release").click(),
                lambda: tab_shown(page, "Pick a release", meter.started),
            )
            page.get_by_role("tab", name="Grid").click()  # (the address and a new tab follow the open tab)
            wait_quiet(served.pid)
            warm = open_grid(page, served.url, cells)  # a new session: every cell from the image cache
            wait_quiet(served.pid)
            idle_ours = idle_share(served.pid, args.idle)
            meter.idle_rate = idle_ours
            # A new session; its first tab switches right after its grid shows, as a person clicks.
            open_grid(page, served.url, cells)
            tab_switches(page, meter, rounds=max(2, min(args.repeats, 5)))
            interactions(page, meter, args.repeats, args.epochs)
        with serve_page(
            config, tmp / "cache", tmp / "streamlit-auto.log", options=["--server.fileWatcherType", "auto"]
        ) as served:
            open_grid(page, served.url, cells)
            wait_quiet(served.pid, share=0.5, timeout=30)  # (a polling watcher may never be under 5%)
            idle_auto = idle_share(served.pid, args.idle)
        browser.close()

    print(f"page at {args.epochs} checkpoints + base, 1 prompt × 1 seed, demo base on cpu, 1280×800 chromium")
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, python {platform.python_version()}\n")
    print("\n".join(table(meter)))
    print()
    print("| page | seconds |\n|---|---:|")
    print(f"| open, cold (renders {cells} cells) | {cold:.1f} |\n| open again, warm (image cache) | {warm:.1f} |")
    print()
    print(f"| idle page, server CPU over {args.idle:.0f} s | % of a core |\n|---|---:|")
    print(f"| project config (fileWatcherType none) | {100 * idle_ours:.2f} |")
    print(f"| Streamlit default (fileWatcherType auto) | {100 * idle_auto:.2f} |")
    print(f"\ncold / warm open: {cold / warm:.1f}x    idle default / ours: {idle_auto / max(idle_ours, 1e-4):.1f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
