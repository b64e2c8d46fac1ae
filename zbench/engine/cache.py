"""Content-addressed image cache: a grid already rendered is shown again without rendering.

The key of an image is a hash of everything that decides its pixels: the base model's
fingerprint (its files, device and dtype), the checkpoint's content hash (not its name, so a
file replaced under the same name renders anew), prompt, negative prompt, seed, LoRA scale,
steps, guidance and size, and the software that draws them: the versions of torch, diffusers,
transformers and peft and zbench's own ``CACHE_VERSION`` (diffusers 0.42.1 changed what "8 steps" means;
an upgrade re-renders rather than showing images the current code would not draw, and the old entries are
simply never asked for again). Images live in memory (a bounded LRU) and on disk as PNGs that carry their
key and parameters in text chunks, so a restarted server finds them again.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.metadata
import json
import logging
import os
import threading
from collections import OrderedDict
from pathlib import Path

from PIL import Image
from PIL.PngImagePlugin import PngInfo

__all__ = ["ImageCache", "cell_key", "default_cache_dir", "get_image_cache", "software_versions"]

logger = logging.getLogger(__name__)

# Bump when zbench's rendering changes in a way that changes pixels for the same parameters.
CACHE_VERSION = 1
# The libraries whose versions can change pixels for the same parameters.
PIXEL_LIBRARIES = ("torch", "diffusers", "transformers", "peft")


@functools.cache
def software_versions() -> dict[str, str]:
    """The installed version of each of PIXEL_LIBRARIES ("missing" when one is not installed), read once."""
    out = {}
    for name in PIXEL_LIBRARIES:
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            out[name] = "missing"
    return out


def default_cache_dir() -> Path:
    """``$ZBENCH_CACHE_DIR``, else ``~/.cache/zbench/images``."""
    env = os.environ.get("ZBENCH_CACHE_DIR")
    return Path(env) if env else Path.home() / ".cache" / "zbench" / "images"


def cell_key(
    base_fingerprint: str,
    checkpoint_hash: str | None,
    *,
    prompt: str,
    negative: str,
    seed: int,
    scale: float,
    steps: int,
    guidance: float,
    width: int,
    height: int,
) -> str:
    """The cache key of one image (64 hex digits).

    Args:
        checkpoint_hash: the LoRA file's content hash, or None for the base (LoRA off; the
            scale is then irrelevant and left out).
    """
    fields = {
        "v": CACHE_VERSION,
        "software": software_versions(),
        "base": base_fingerprint,
        "lora": checkpoint_hash,
        "scale": None if checkpoint_hash is None else float(scale),
        "prompt": prompt,
        "negative": negative,
        "seed": int(seed),
        "steps": int(steps),
        "guidance": float(guidance),
        "size": [int(width), int(height)],
    }
    return hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()


class ImageCache:
    """Images by key, in memory (LRU, ``memory_mb``) and, when ``root`` is set, on disk.

    Thread-safe: every browser session of the page shares one cache. ``renders`` and ``hits``
    count what the cache saw, which tests and the page use to show that a re-shown grid
    rendered nothing.
    """

    def __init__(self, root: str | Path | None = None, *, memory_mb: int = 256):
        self.root = None if root is None else Path(root)
        self.memory_bytes = memory_mb * 1024 * 1024
        self._memory: OrderedDict[str, Image.Image] = OrderedDict()
        self._used = 0
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0
        self.stores = 0

    def _path(self, key: str) -> Path | None:
        return None if self.root is None else self.root / key[:2] / f"{key}.png"

    def get(self, key: str, *, size: tuple[int, int] | None = None) -> Image.Image | None:
        """The image stored under ``key``, or None.

        Args:
            size: the (width, height) the image must have; a disk entry of another size, or one
                that cannot be decoded (corrupt, truncated, a decompression bomb), is a miss and
                is never decoded past its header.
        """
        with self._lock:
            image = self._memory.get(key)
            if image is not None:
                self._memory.move_to_end(key)
                self.hits += 1
                return image
        path = self._path(key)
        if path is not None and path.is_file():
            try:
                with Image.open(path) as im:
                    if size is not None and im.size != tuple(size):
                        raise ValueError(f"it is {im.size[0]}x{im.size[1]}, not {size[0]}x{size[1]}")
                    image = im.convert("RGB")
            except Exception as err:  # any undecodable file: Pillow raises many types, bombs included
                logger.warning("ignoring unreadable cache entry %s: %s", path, err)
                image = None
            if image is not None:
                with self._lock:
                    self.hits += 1
                    self._keep(key, image)
                return image
        with self._lock:
            self.misses += 1
        return None

    def has(self, key: str) -> bool:
        """Whether an image is stored under ``key`` (in memory or on disk), without decoding it."""
        with self._lock:
            if key in self._memory:
                return True
        path = self._path(key)
        return path is not None and path.is_file()

    def put(self, key: str, image: Image.Image, *, parameters: str | None = None) -> None:
        """Store an image (memory, and disk when the cache has a folder; written atomically)."""
        with self._lock:
            self.stores += 1
            self._keep(key, image)
        path = self._path(key)
        if path is None:
            return
        info = PngInfo()
        info.add_text("zbench-cache-key", key)
        if parameters:
            info.add_text("parameters", parameters)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
            image.save(tmp, format="PNG", pnginfo=info)
            os.replace(tmp, path)
        except OSError as err:  # a full or read-only disk must not break rendering
            logger.warning("could not write cache entry %s: %s", path, err)

    def _keep(self, key: str, image: Image.Image) -> None:
        size = image.width * image.height * len(image.getbands())
        if key in self._memory:
            self._memory.move_to_end(key)
            return
        self._memory[key] = image
        self._used += size
        while self._used > self.memory_bytes and len(self._memory) > 1:
            _, old = self._memory.popitem(last=False)
            self._used -= old.width * old.height * len(old.getbands())

    def clear_memory(self) -> None:
        """Forget the in-memory copies (the disk copies stay)."""
        with self._lock:
            self._memory.clear()
            self._used = 0


_CACHES: dict[str, ImageCache] = {}
_CACHES_LOCK = threading.Lock()


def get_image_cache(root: str | Path | None = None) -> ImageCache:
    """The process-wide cache for a folder (default :func:`default_cache_dir`)."""
    path = Path(root) if root is not None else default_cache_dir()
    with _CACHES_LOCK:
        key = str(path.resolve())
        if key not in _CACHES:
            _CACHES[key] = ImageCache(path)
        return _CACHES[key]
