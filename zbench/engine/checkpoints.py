"""Checkpoint discovery: find the LoRA files of one training run and order them as a person counts.

Only safetensors headers are read (the JSON at the start of the file); no tensor is loaded to
list a folder. Pickle files (.ckpt/.pt/.bin/.pth) are listed as refused and never unpickled.
"""

from __future__ import annotations

import hashlib
import logging
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from . import jsonio
from .alphas import alpha_problem, configured_alpha
from .header import HeaderError, read_header, read_scalars
from .keys import DOWN_WEIGHT, detect_arch, detect_format, detect_trainer, family_name, module_of
from .lycoris import adapter_kind, header_summary
from .module_names import text_parts
from .names import parse_name, sort_run

__all__ = ["Checkpoint", "describe", "file_hash", "scan_run"]

logger = logging.getLogger(__name__)

PICKLE_SUFFIXES = {".ckpt", ".pt", ".pth", ".bin", ".pkl"}
# Training-state files that trainers keep beside the LoRA: not checkpoints, so not listed.
TRAINING_STATE = re.compile(r"^(optimizer|scheduler|scaler|random_states|sampler|training_state|ema)", re.I)
# File names that hold a LoRA inside a per-step folder (diffusers, PEFT save_pretrained).
FOLDER_WEIGHTS = ("pytorch_lora_weights.safetensors", "adapter_model.safetensors")


@dataclass
class Checkpoint:
    """One LoRA file of a run, described from its name and safetensors header.

    ``error`` is None for a usable file, or a message saying what is wrong and what to do.
    """

    name: str  # display file name; "checkpoint-500/pytorch_lora_weights.safetensors" for folders
    path: Path
    epoch: int | None = None
    step: int | None = None
    rank: int | None = None  # the largest rank of any module in the file
    adapter: str = "lora"  # "lora", "lokr" or "loha": how the file's factors make a weight change
    factor: int | None = None  # LoKr: the larger side of its small Kronecker half (w1), most common over modules
    parts: tuple[str, ...] = ("denoiser",)  # what it adapts: "denoiser", "text_encoder", "text_encoder_2"
    alpha: float | None = None
    format: str = "unknown"  # the key layout: "kohya", "diffusers", "ai-toolkit", "peft", "bare" (+fused-qkv...)
    trainer: str = "unknown"  # who wrote it, from metadata and layout: "kohya sd-scripts", "OneTrainer"...
    arch: str = "unknown"
    size: int = 0
    # First 12 hex digits of the file's sha256, read on first use (a scan reads headers only).
    hash: str = field(default="", repr=False, compare=False)
    metadata: dict[str, str] = field(default_factory=dict)
    modules: frozenset[str] = field(default_factory=frozenset, repr=False)
    pattern: str = ""
    error: str | None = None

    @property
    def hash_read(self) -> str:
        """The hash if it was read already, else "" (never reads the file; see ``hash``)."""
        return self.__dict__.get("_hash", "")

    @property
    def run_dir(self) -> Path:
        """The run folder: the file's folder, or its parent for per-step folders (checkpoint-500/…)."""
        return self.path.parent.parent if "/" in self.name else self.path.parent

    @property
    def adapter_name(self) -> str:
        """The adapter family as people write it: "LoRA", "LoKr" or "LoHa"."""
        return {"lokr": "LoKr", "loha": "LoHa"}.get(self.adapter, "LoRA")

    @property
    def adapter_text(self) -> str:
        """What the file is, in one line: "LoKr · factor 8 · rank 16 · alpha 8 · denoiser"."""
        parts = [self.adapter_name + (" (DoRA)" if "dora" in self.format else "")]
        if self.factor:
            parts.append(f"factor {self.factor}")
        if self.rank and not (self.adapter == "lokr" and self.rank == 1):
            parts.append(f"rank {self.rank}")
        elif self.adapter == "lokr" and self.rank == 1:
            parts.append("whole halves")
        if self.alpha is not None:
            parts.append(f"alpha {self.alpha:g}")
        names = {"denoiser": "denoiser", "text_encoder": "text encoder", "text_encoder_2": "text encoder 2"}
        parts.append(" + ".join(names.get(p, p) for p in self.parts))
        return " · ".join(parts)

    @property
    def label(self) -> str:
        """Short column label: "epoch 10", "step 500", or "final"."""
        if self.epoch is not None and self.step is not None:
            return f"epoch {self.epoch} · step {self.step}"
        if self.epoch is not None:
            return f"epoch {self.epoch}"
        if self.step is not None:
            return f"step {self.step}"
        return "final"

    def to_json(self, *, with_hash: bool = True) -> dict[str, object]:
        """Plain data for ``scan --json`` and manifests; ``with_hash=False`` leaves the file unread."""
        return {
            "name": self.name,
            "path": str(self.path),
            "label": self.label,
            "epoch": self.epoch,
            "step": self.step,
            "adapter": self.adapter,
            "rank": self.rank,
            "factor": self.factor,
            "adapter_text": self.adapter_text,
            "parts": list(self.parts),
            "alpha": self.alpha,
            "format": self.format,
            "trainer": self.trainer,
            "arch": self.arch,
            "size": self.size,
            "hash": self.hash if with_hash else None,
            "modules": len(self.modules),
            "metadata": self.metadata,
            "error": self.error,
        }


def _float(value: str | None) -> float | None:
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None


def _int(value: object) -> int | None:
    try:
        return int(str(value))
    except (TypeError, ValueError):
        return None


def _get_hash(ck: Checkpoint) -> str:
    if not ck._hash and ck.error is None:
        try:
            ck._hash = file_hash(ck.path)
        except OSError:
            return ""  # gone or unreadable: the swap that needs it says so
    return ck._hash


def _set_hash(ck: Checkpoint, value: str) -> None:
    ck._hash = value


# Checkpoint.hash is a dataclass field (so Checkpoint(hash=...) works) read through a property:
# a scan does not read every byte of every file, the first use of a checkpoint's hash does.
Checkpoint.hash = property(_get_hash, _set_hash, doc="First 12 hex digits of the file's sha256, read on first use.")

_HASHES: dict[tuple, str] = {}


def file_hash(path: Path, *, memo: bool = True) -> str:
    """sha256 of the whole file, short form (12 hex digits).

    Args:
        memo: reuse the digest of a file with the same path, size, mtime, inode and ctime (a file
            replaced or rewritten changes its inode or ctime even when size and mtime are kept);
            False hashes the bytes now, for records that must name what they saw.
    """
    st = path.stat()
    key = (str(path), st.st_size, st.st_mtime_ns, st.st_ino, st.st_ctime_ns)
    if not memo or key not in _HASHES:
        with path.open("rb") as f:
            digest = hashlib.file_digest(f, "sha256").hexdigest()[:12]
        if not memo:
            return digest
        _HASHES[key] = digest
    return _HASHES[key]


def describe(path: Path, name: str) -> Checkpoint:
    """Describe one file from its name and header; problems go into ``error``, never raise."""
    # A per-step folder (checkpoint-500/pytorch_lora_weights.safetensors) is named by its folder.
    info = parse_name(path.parent.name if "/" in name else path.stem)
    ck = Checkpoint(name=name, path=path, epoch=info.epoch, step=info.step, pattern=info.pattern)
    if path.suffix.lower() in PICKLE_SUFFIXES:
        ck.format = "pickle"
        ck.error = (
            f"{name} is a pickle checkpoint ({path.suffix}); zbench never unpickles files because loading one can run "
            "arbitrary code. Re-save it as .safetensors with your trainer (or convert it in a trusted environment)."
        )
        return ck
    try:
        ck.size = path.stat().st_size
        header, meta = read_header(path)
    except (OSError, HeaderError) as err:
        ck.error = f"{name} {err}. Re-copy or re-save the file; the other checkpoints are unaffected."
        return ck
    ck.metadata = meta
    keys = list(header)
    ck.format = detect_format(keys)
    ck.trainer = detect_trainer(keys, meta, path)
    ck.modules = frozenset(m for k in keys if (m := module_of(k)) is not None)
    ck.arch = detect_arch(ck.modules)
    kind = adapter_kind(keys)  # "dora": a LoRA with magnitudes, counted like a LoRA here
    ck.parts = text_parts(keys)
    if kind in ("lokr", "loha"):
        ck.adapter = kind
        by_key, ck.factor, whole = header_summary(header)
        ranks = {module_of(k + ".alpha"): r for k, r in by_key.items()}
        ignored = {module_of(k + ".alpha") for k in whole}
    else:
        ranks = {module_of(k): int(v["shape"][0]) for k, v in header.items() if DOWN_WEIGHT.search(k) and v["shape"]}
        ignored = set()
    ck.rank = max(ranks.values()) if ranks else _int(meta.get("ss_network_dim"))
    _apply_metadata(ck, meta)
    try:
        alpha = _read_alpha(path, header, meta, ranks, zero_is_rank=bool(kind), ignored=ignored)
    except (OSError, ValueError) as err:
        ck.error = f"{name}: {err}. The file is corrupt or hand-edited: re-save it from the trainer."
        return ck
    ck.alpha = alpha if alpha is not None else _float(meta.get("ss_network_alpha"))
    if not ranks:
        ck.error = (
            f"{name} holds no LoRA, LoKr or LoHa tensors (no lora_A/lora_down, lokr_ or hada_ keys among "
            f"{len(keys)}): it is not a LoRA or other adapter. Move it out of the run folder."
        )
    return ck


def _describe_safely(path: Path, name: str) -> Checkpoint:
    """:func:`describe`, and for anything it did not foresee an error row instead of a failed scan."""
    try:
        return describe(path, name)
    except Exception as err:  # e.g. a file that changes while it is read
        logger.exception("describing %s failed", path)
        return Checkpoint(
            name=name,
            path=path,
            error=f"{name} could not be read ({type(err).__name__}: {err}). Re-copy or re-save the file; "
            "the other checkpoints are unaffected.",
        )


def _apply_metadata(ck: Checkpoint, meta: dict[str, str]) -> None:
    """Fill epoch/step/alpha from trainer metadata; names win only where metadata is silent."""
    epoch, step = _int(meta.get("ss_epoch")), _int(meta.get("ss_steps"))
    if "training_info" in meta:  # ai-toolkit
        try:
            info = jsonio.parse_json(meta["training_info"], where="training_info")
            step = step if step is not None else _int(info.get("step"))
            epoch = epoch if epoch is not None else _int(info.get("epoch"))
        except (jsonio.JsonError, AttributeError):
            logger.warning("%s: training_info metadata is not JSON; ignored", ck.name)
    # A kohya final file has no number in its name but says its epoch in metadata.
    if epoch is not None and (ck.epoch is None or ck.pattern in ("number", "final")):
        ck.epoch = epoch
    if step is not None and ck.step is None:
        ck.step = step


def _read_alpha(
    path: Path,
    header: dict,
    meta: dict[str, str],
    ranks: dict[str, int],
    *,
    zero_is_rank: bool = False,
    ignored: set[str] = frozenset(),
) -> float | None:
    """The alpha the loader will use: per-module ``.alpha`` tensors (their most common value), else the
    adapter config (diffusers' header field or PEFT's adapter_config.json); None when alpha = rank.

    ``zero_is_rank``: an alpha of 0 means alpha = rank (the LyCORIS library's reading), not a broken file;
    ``ignored``: modules whose alpha the loader ignores (whole LoKr halves), neither checked nor shown.

    Raises:
        ValueError: an alpha that is zero, negative, NaN, infinite or absurd, or an unreadable config.
    """
    keys = [k for k in header if k.endswith(".alpha") and module_of(k) not in ignored]
    if keys:
        values = read_scalars(path, header, keys)
        if zero_is_rank:
            values = {k: (float(ranks.get(module_of(k)) or 1) if v == 0 else v) for k, v in values.items()}
        for key in keys:
            if key not in values:
                raise ValueError(f"{key!r} is not a single number ({header[key]['dtype']} {header[key]['shape']})")
            problem = alpha_problem(values[key], ranks.get(module_of(key)))
            if problem:
                raise ValueError(f"{problem} ({key!r})")
        return Counter(values.values()).most_common(1)[0][0]
    return configured_alpha(path, meta)


def _candidates(root: Path) -> list[tuple[Path, str]]:
    """Files that may be checkpoints: top-level files, and LoRA weights one folder down."""
    found = []
    for p in root.iterdir():
        if p.is_file():
            found.append((p, p.name))
        elif p.is_dir():
            for name in (*FOLDER_WEIGHTS, "pytorch_lora_weights.bin", "adapter_model.bin"):
                if (p / name).is_file():
                    found.append((p / name, f"{p.name}/{name}"))
    keep = []
    for path, name in found:
        suffix = path.suffix.lower()
        if name.endswith(".bak") or name.startswith("."):
            continue
        if suffix == ".safetensors" or (suffix in PICKLE_SUFFIXES and not TRAINING_STATE.match(path.name)):
            keep.append((path, name))
    return keep


def scan_run(folder: str | Path) -> list[Checkpoint]:
    """List the checkpoints of one run in the order a person counts them.

    Ordered by step when every numbered file has one, else by epoch, else naturally by
    name (``9`` before ``10``); a file with no number and no metadata (a trainer's final
    save) comes last. Files whose module set differs from the rest of the run are marked.

    Raises:
        FileNotFoundError: the folder does not exist (the message says what to pass instead).
        PermissionError: the folder cannot be listed.
    """
    root = Path(folder).expanduser()
    if not root.is_dir():
        raise FileNotFoundError(
            f"LoRA folder {root} does not exist. Pass the folder your trainer saved the checkpoints in "
            "(e.g. output/my_lora), or set [loras] dir in the config."
        )
    try:
        candidates = _candidates(root)
    except PermissionError as err:
        raise PermissionError(
            f"LoRA folder {root} cannot be read (permission denied): give yourself read access to it, or copy "
            "the run to a folder you can read"
        ) from err
    cks = sort_run([_describe_safely(path, name) for path, name in candidates])
    _mark_odd_module_sets(cks)
    return cks


def _mark_odd_module_sets(cks: list[Checkpoint]) -> None:
    """A run's checkpoints adapt the same modules; a file that differs is from elsewhere."""
    usable = [c for c in cks if c.error is None]
    if len(usable) < 2:
        return
    common, count = Counter(c.modules for c in usable).most_common(1)[0]
    if count * 2 <= len(usable):
        return  # no majority: nothing to call odd
    arch = next(c.arch for c in usable if c.modules == common)
    family = next(c.adapter_name for c in usable if c.modules == common)
    for c in usable:
        if c.modules == common:
            continue
        missing, extra = common - c.modules, c.modules - common
        text_encoder = sorted(m for m in extra if m.startswith(("lora_te", "te_", "text_encoder")))
        if c.arch != arch and "unknown" not in (c.arch, arch):
            cause = (
                f"targets {family_name(c.arch)} (keys like {sorted(c.modules)[0]!r}) while the rest of this run "
                f"targets {family_name(arch)}: it is a LoRA for another base model"
            )
        elif text_encoder:
            cause = (
                f"also adapts the text encoder ({len(text_encoder)} modules, e.g. {text_encoder[0]!r}), which the "
                "rest of this run does not: it is from another run or trainer setting"
            )
        else:
            cause = (
                (f"is a {c.adapter_name} (the rest of this run is {family}) and " if c.adapter_name != family else "")
                + f"adapts a different set of modules from the rest of this run ({len(missing)} missing, "
                f"{len(extra)} extra, e.g. {sorted(extra or missing)[0]!r}): it is from another run or base model"
            )
        c.error = f"{c.name} {cause}. Move it to its own folder."
