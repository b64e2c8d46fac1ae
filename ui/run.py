"""Which base and which run: the config and LoRA folder in the sidebar (or the address), the scan, and checkpoints
saved mid-run.

The page's place is kept in its address: ``?run=<folder, or one checkpoint file>&config=<toml>&tab=pick`` (config
only when it is not the default, tab only when it is not the grid). A reload, a shared link on the same machine,
or a new tab at the bare address (the server remembers the last place) opens the same run, config and tab. A
path from the address is checked as a typed one; a bad one says what is wrong once and the config's run opens.
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass, field
from pathlib import Path

import streamlit as st

import zbench

from .resources import LAST_PLACE, SCAN_TTL, base_for, scan, warm_up
from .text import literal

# The page's tabs: the name in the address, and the label.
TABS = {"grid": "Grid", "timeline": "Timeline", "export": "Export", "pick": "Pick a release"}
TYPE_RUN = "Type the folder that holds your run's .safetensors files (or one of them) in the sidebar"
_PLACE_LOCK = threading.Lock()


@dataclass(frozen=True)
class OpenRun:
    """The base config, its loaded pipeline and the scanned run the page works on.

    Browsing a stored grid (a sweep folder or the grid command's output), ``stored`` holds its cells, the
    run is the one they were rendered from, and no base is loaded: nothing renders.
    """

    config_path: str
    config: zbench.BenchConfig
    lora_dir: str
    run: list[zbench.Checkpoint]
    base: zbench.Base | None
    stored: zbench.StoredGrid | None = None
    focus: str | None = None  # the checkpoint a typed file path named: it joins the chosen checkpoints
    address: str = ""  # what the address's ?run= holds: the path that opens this view again

    @property
    def by_name(self) -> dict[str, zbench.Checkpoint]:
        return {c.name: c for c in self.run}

    @property
    def names(self) -> list[str]:
        return [c.name for c in self.run]

    @property
    def run_dir(self) -> Path:
        """The run's folder, where its decisions and page settings are kept."""
        return Path(self.lora_dir)


@dataclass(frozen=True)
class _Place:
    """What a path opens: a run's folder (its scan), a folder of runs, a stored grid, or a checkpoint's folder."""

    folder: str
    run: list[zbench.Checkpoint] = field(default_factory=list)
    runs: list[Path] = field(default_factory=list)  # a folder of run folders: picked in the sidebar
    stored: zbench.StoredGrid | None = None
    focus: str | None = None


@dataclass(frozen=True)
class _Problem:
    """Why a path opens nothing: what is there, and what to do."""

    what: str
    todo: str = ""

    def __str__(self) -> str:
        return sentences(self.what, self.todo)


def sentences(*parts: str) -> str:
    """Parts joined as sentences, each ending in exactly one period (messages quote paths and zbench's errors,
    which may or may not end in one)."""
    out = []
    for part in parts:
        part = part.strip()
        if part:
            out.append(part if part.endswith((".", "!", "?")) else part + ".")
    return " ".join(out)


def _where(typed: str) -> _Place | _Problem:
    """What ``typed`` opens, or the message that says what is there and what to do (one message per path)."""
    path = Path(typed).expanduser()
    if path.is_file():
        return _checkpoint_file(path)
    try:
        stored = zbench.open_stored(path)
    except ValueError as err:
        return _Problem(str(err), "Fix or remove that file to browse the folder, or type another folder")
    if stored is not None:
        return _Place(str(path), stored=stored)
    try:
        run = scan(str(path))
    except PermissionError as err:  # zbench's message says what to do
        return _Problem(str(err))
    except OSError:
        return _Problem(zbench.describe_folder(path), TYPE_RUN)
    if run:
        return _Place(str(path), run=run)
    runs = zbench.find_runs(path)
    if runs:
        return _Place(str(path), runs=runs)
    holds = zbench.describe_folder(path).removeprefix(f"{path} ")
    return _Problem(f"No LoRA checkpoints (.safetensors) in {path}: it {holds}", TYPE_RUN)


def _checkpoint_file(path: Path) -> _Place | _Problem:
    """A checkpoint file opens its run with it chosen; any other file says so."""
    found = _scanned_with(path.parent, path)
    if found is not None and len(found[1]) == 1:  # a per-step folder (checkpoint-500/…): its run is one level up
        found = _scanned_with(path.parent.parent, path) or found
    if found is None:
        return _Problem(f"{path} is a file, not a LoRA checkpoint of a run", TYPE_RUN)
    folder, run, name = found
    return _Place(str(folder), run=run, focus=name)


def _scanned_with(folder: Path, path: Path) -> tuple[Path, list[zbench.Checkpoint], str] | None:
    """The scan of ``folder`` and the name it gives ``path``, when ``path`` is one of its checkpoints."""
    try:
        run = scan(str(folder))
    except OSError:
        return None
    for ck in run:
        try:
            if ck.path.samefile(path):
                return folder, run, ck.name
        except OSError:
            continue
    return None


def _default_config() -> str:
    return os.environ.get("ZBENCH_CONFIG", str(zbench.default_config_path()))


def _link() -> dict[str, str]:
    """The address's run, config and tab, read on a session's first run only (after that the sidebar and the
    tabs lead and the address follows them). A bare address gets the last place this server showed."""
    if st.session_state.get("place:read"):
        return {}
    st.session_state["place:read"] = True
    link = {k: st.query_params.get(k, "").strip() for k in ("run", "config", "tab")}
    link = {k: v for k, v in link.items() if v}
    if not link:
        with _PLACE_LOCK:
            link = dict(LAST_PLACE.get(_default_config(), {}))
    if not link and os.environ.get("ZBENCH_RUN"):  # `zbench page RUN`: the run it was started on
        link = {"run": os.environ["ZBENCH_RUN"]}
    st.session_state["place:tab"] = link.get("tab")
    return link


def _config_from_link(value: str, configs: list[str]) -> str | None:
    """The link's config as one of the options (added when it is elsewhere), or None after saying why not."""
    path = Path(value).expanduser()
    for option in configs:
        if Path(option).expanduser().resolve() == path.resolve():
            return option
    try:
        zbench.load_config(path)
    except (zbench.ConfigError, OSError) as err:
        shown = literal(sentences(f"The link's config cannot be used: {err}", "The default config is open instead"))
        st.session_state["place:config_problem"] = shown
        return None
    st.session_state.setdefault("place:configs", []).append(str(path))
    return str(path)


def open_run() -> OpenRun:
    """Sidebar: base config and LoRA folder; then scan the run and load the base (once per server).

    On a session's first run the address (or the server's last place) chooses the config, the folder and the
    tab. Stops the page with a message when the config, folder or base model is missing.
    """
    config_dir = zbench.default_config_path().parent
    configs = sorted(str(p) for p in config_dir.glob("*.toml"))
    default_config = _default_config()
    if default_config not in configs:
        configs.insert(0, default_config)
    configs += [c for c in st.session_state.get("place:configs", []) if c not in configs]
    link = _link()
    if "config" in link:
        chosen = _config_from_link(link["config"], configs)
        if chosen is not None:
            configs += [] if chosen in configs else [chosen]
            st.session_state["config"] = chosen
    if st.session_state.get("config") not in configs:
        st.session_state["config"] = default_config

    with st.sidebar:
        st.title("zbench")
        config_path = st.selectbox(
            "Base config",
            configs,
            key="config",
            # configs/ files by name; others by full path, so two files called demo.toml stay apart
            format_func=lambda p: Path(p).name if Path(p).parent == config_dir else p,
        )
        try:
            config = zbench.load_config(config_path)
        except zbench.ConfigError as err:
            st.error(literal(err))
            st.stop()
        key = f"folder:{config_path}"
        st.session_state.setdefault(key, str(config.lora_dir or ""))
        if "run" in link:
            _run_from_link(link["run"], key)
        typed = st.text_input(
            "LoRA folder",
            key=key,
            help="a run's folder, one of its checkpoints, a folder of runs, or a sweep's (or `zbench grid`'s) "
            "output folder to browse",
        )
        lora_dir = str(Path(typed.strip()).expanduser()) if typed.strip() else ""

    if not lora_dir:
        st.info(f"{TYPE_RUN}.")
        st.stop()
    # What the link asked for and could not be opened: said until another config or folder is chosen.
    if "place:config_problem" in st.session_state and config_path == default_config:
        st.warning(st.session_state["place:config_problem"])
    problem = st.session_state.get("place:problem")
    if problem and problem[1] == typed:
        st.warning(problem[0])
    place = _where(lora_dir)
    if isinstance(place, _Problem):
        st.info(literal(place))
        st.stop()
    if place.stored is not None:
        return _browse(config_path, config, place.stored)
    run, lora_dir = place.run, place.folder
    if place.runs:
        lora_dir, run = _pick_run(lora_dir, place.runs)
    try:
        base = base_for(config)
    except zbench.BaseModelError as err:
        st.info(literal(err))
        st.stop()
    address = str(Path(typed.strip()).expanduser()) if place.focus else lora_dir
    opened = OpenRun(config_path, config, lora_dir, run, base, focus=place.focus, address=address)
    if place.focus is not None:
        st.sidebar.caption(f"{literal(opened.by_name[place.focus].label)} · {literal(place.focus)} is chosen below.")
    warm_up(run)
    _watch_run(lora_dir, tuple(opened.names))
    return opened


def _run_from_link(value: str, key: str) -> None:
    """The link's run fills the folder box when it opens; otherwise the box keeps the config's folder and the
    page says, once, what is wrong with the link's path."""
    place = _where(str(Path(value).expanduser()))
    if isinstance(place, _Problem):
        shown = literal(sentences(f"The link's run: {place.what}", "The config's run is open instead", place.todo))
        st.session_state["place:problem"] = (shown, st.session_state[key])
    else:
        st.session_state[key] = value


def restore_tab() -> None:
    """On a session's first run, open the tab the address names (its name or label, any case)."""
    wanted = st.session_state.pop("place:tab", None)
    if not wanted:
        return
    wanted = wanted.strip().lower()
    for name, label in TABS.items():
        if wanted in (name, label.lower()):
            st.session_state["tab"] = label


def keep_place(opened: OpenRun) -> None:
    """Put the open run, config and tab in the address (only what changed), and remember them for a bare one."""
    tab = next((name for name, label in TABS.items() if label == st.session_state.get("tab")), "grid")
    place = {
        "run": opened.address or (str(opened.stored.folder) if opened.stored is not None else opened.lora_dir),
        "config": opened.config_path if opened.config_path != _default_config() else None,
        "tab": tab if tab != "grid" else None,
    }
    for name, value in place.items():
        if value is None:
            if name in st.query_params:
                del st.query_params[name]
        elif st.query_params.get(name) != value:
            st.query_params[name] = value
    with _PLACE_LOCK:
        LAST_PLACE[_default_config()] = {k: v for k, v in place.items() if v is not None}


def _browse(config_path: str, config: zbench.BenchConfig, stored: zbench.StoredGrid) -> OpenRun:
    """A stored grid: its run's checkpoints that have cells, and no base (nothing renders)."""
    what = "a sweep" if stored.kind == "sweep" else "a grid's output"
    try:
        run = scan(str(stored.run_dir))
    except OSError:
        run = []
    kept = [c for c in run if c.name in stored.checkpoints]
    if not kept and stored.checkpoints:
        st.info(
            f"{literal(stored.folder)} holds {what} of {literal(stored.run_dir)}, whose checkpoints are not there "
            "any more: move the run back there to browse it (the labels and decisions come from the run)."
        )
        st.stop()
    with st.sidebar:
        st.caption(
            f"Browsing {what}: {len(stored.records)} stored cells of {literal(stored.run_dir.name)} on "
            f"{literal(stored.base)}. Nothing renders here."
        )
    opened = OpenRun(config_path, config, str(stored.run_dir), kept, None, stored, address=str(stored.folder))
    _watch_run(str(stored.run_dir), tuple(c.name for c in run))
    return opened


def _pick_run(folder: str, runs: list[Path]) -> tuple[str, list[zbench.Checkpoint]]:
    """A folder with no checkpoints of its own: offer the runs in its subfolders."""
    with st.sidebar:
        picked = st.selectbox(
            f"Runs in {Path(folder).name or folder}",
            [str(r) for r in runs],
            format_func=lambda r: str(Path(r).relative_to(folder)),
            key=f"run_in:{folder}",
        )
    return picked, scan(picked)


@st.fragment(run_every=max(SCAN_TTL, 2.0))
def _watch_run(folder: str, shown: tuple[str, ...]) -> None:
    """Rerun the page when the run folder gains or loses checkpoints."""
    try:
        now = tuple(c.name for c in scan(folder))
    except OSError:
        return
    if now != shown:
        st.rerun(scope="app")
