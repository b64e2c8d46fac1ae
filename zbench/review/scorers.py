"""What can be said of a render without a person: distance between two renders, a no-reference quality
score, CLIP prompt adherence, likeness to the training images, and scorers of the user's own.

- **Distance** is 1 − SSIM (Wang et al. 2004: 11×11 Gaussian window, σ 1.5, on each RGB channel, images
  scaled to at most 256 px on their long side): 0 for the same image, about 1 for unrelated ones. SSIM compares
  local structure, contrast and brightness, so a shifted composition or a new texture counts and a uniform
  change of a level or two does not. Learned perceptual metrics (LPIPS, DISTS) need network weights that their
  packages download at run time; SSIM needs none.
- **Quality** is BRISQUE (Mittal et al. 2012) with the SVM model the ``brisque`` package ships: 0 is best,
  about 100 worst; it flags noise, blur and blocking in natural-looking images (flat synthetic pictures, like
  the demo's, score high whatever their state).
- **Adherence** is CLIPScore (Hessel et al. 2021): 100 × the cosine of CLIP's text and image embeddings,
  clipped at 0, from a CLIP model in a local folder or already in the local hub cache (never downloaded).
- **Likeness** is the cosine similarity of a render to its closest training image: CLIP image embeddings when
  a CLIP model is set, else 24×24 RGB thumbnails with their mean removed (layout and colour, not identity).
- **Scorers of your own** are ``module:function`` names taking (image, prompt) and returning a number or None.
"""

from __future__ import annotations

import functools
import hashlib
import importlib
import importlib.util
import logging
import sys
import threading
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from PIL import Image

__all__ = [
    "DatasetIndex",
    "ScorerError",
    "clip_scorer",
    "load_scorer",
    "quality_missing",
    "quality_score",
    "ssim_distance",
    "thumbnail_feature",
]

logger = logging.getLogger(__name__)

SSIM_SIDE = 256  # images are compared at most this large: structure, not sensor-level noise
DATASET_LIMIT = 500  # training images read from a dataset folder (sorted by name)
DATASET_MAX_PIXELS = 64 * 2**20  # a training image larger than this is skipped, never decoded
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".webp", ".bmp"}


class ScorerError(ValueError):
    """A signal cannot be computed as configured; the message says what to change."""


def _small(image: Image.Image, side: int) -> Image.Image:
    image = image.convert("RGB")
    scale = side / max(image.size)
    if scale < 1:
        image = image.resize((max(1, round(image.width * scale)), max(1, round(image.height * scale))), Image.BICUBIC)
    return image


@functools.cache
def _window() -> torch.Tensor:
    x = torch.arange(11, dtype=torch.float64) - 5
    g = torch.exp(-(x**2) / (2 * 1.5**2))
    return (g / g.sum()).float()


def ssim_distance(a: Image.Image, b: Image.Image) -> float:
    """1 − SSIM of two images (``b`` is resized to ``a``'s size): 0 when equal, about 1 when unrelated.

    SSIM per RGB channel with an 11×11 Gaussian window (σ 1.5), constants K1 = 0.01, K2 = 0.03 for 8-bit
    images, averaged over the image (valid windows only), after scaling to at most 256 px.
    """
    x = _small(a, SSIM_SIDE)
    y = _small(b.convert("RGB").resize(a.size) if b.size != a.size else b, SSIM_SIDE)
    if min(x.size) < 11:
        x, y = x.resize((11, 11)), y.resize((11, 11))
    tx = torch.from_numpy(np.asarray(x, dtype=np.float32)).permute(2, 0, 1)
    ty = torch.from_numpy(np.asarray(y, dtype=np.float32)).permute(2, 0, 1)
    # The five local statistics of the three channels in one separable Gaussian pass (15 maps).
    maps = torch.cat([tx, ty, tx * tx, ty * ty, tx * ty])[None]
    g = _window()
    maps = torch.nn.functional.conv2d(maps, g.view(1, 1, 11, 1).expand(15, 1, 11, 1), groups=15)
    maps = torch.nn.functional.conv2d(maps, g.view(1, 1, 1, 11).expand(15, 1, 1, 11), groups=15)
    mx, my, xx, yy, xy = maps[0].double().split(3)
    sxx, syy, sxy = xx - mx * mx, yy - my * my, xy - mx * my
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    ssim = ((2 * mx * my + c1) * (2 * sxy + c2)) / ((mx * mx + my * my + c1) * (sxx + syy + c2))
    return float(max(0.0, 1.0 - ssim.mean().item()))


@functools.cache
def _brisque():
    """The ``brisque`` package's model (its shipped SVM and feature scaling), or the reason it cannot load."""
    try:
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            from brisque import BRISQUE

            return BRISQUE(url=False)
    except Exception as err:  # ImportError, or its model files missing from a broken install
        return f"{type(err).__name__}: {err}"


def quality_missing() -> str | None:
    """Why the quality signal cannot be computed here (the ``brisque`` package or OpenCV missing), or None."""
    model = _brisque()
    if isinstance(model, str):
        return f"the quality signal needs the brisque package ({model}): pip install -r requirements.txt"
    return None


def quality_score(image: Image.Image) -> float:
    """BRISQUE of an image: 0 (best) to about 100 (worst); scored at most 512 px on its long side.

    brisque 0.2.0's ``score()`` fails under numpy 2 (its fitted features come back as 1-element arrays), so
    this runs the package's own feature and SVM steps and flattens the features in between.

    Raises:
        ScorerError: the ``brisque`` package (or OpenCV) is not installed.
    """
    if missing := quality_missing():
        raise ScorerError(missing)
    model = _brisque()
    import warnings

    import cv2

    gray = np.asarray(_small(image, 512).convert("L"), dtype=np.float64) / 255.0

    def features(g: np.ndarray) -> np.ndarray:
        return np.array([float(np.ravel(f)[0]) for f in model.calculate_brisque_features(g, 7, 7 / 6)])

    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore")
        half = cv2.resize(gray, None, fx=0.5, fy=0.5, interpolation=cv2.INTER_CUBIC)
        score = float(model.calculate_image_quality_score(np.concatenate([features(gray), features(half)])))
    return score if np.isfinite(score) else float("nan")


class _Clip:
    """A CLIP model and processor loaded from a local folder or the local hub cache (never downloaded)."""

    def __init__(self, source: str):
        from transformers import CLIPModel, CLIPProcessor

        try:
            self.model = CLIPModel.from_pretrained(source, local_files_only=True).eval()
            self.processor = CLIPProcessor.from_pretrained(source, local_files_only=True)
        except (OSError, ValueError) as err:
            raise ScorerError(
                f"no CLIP model at {source!r} (a local folder, or a hub id already in the local cache; zbench never "
                f"downloads): {str(err).splitlines()[0]}. Point [signals] clip at a folder holding a CLIP model "
                "(e.g. one saved by huggingface-cli download openai/clip-vit-base-patch32 --local-dir DIR), or "
                "remove the key."
            ) from err
        self.lock = threading.Lock()
        self.source = source

    @torch.inference_mode()
    def image_embedding(self, image: Image.Image) -> np.ndarray:
        with self.lock:
            inputs = self.processor(images=image.convert("RGB"), return_tensors="pt")
            out = self.model.get_image_features(pixel_values=inputs["pixel_values"])
            out = getattr(out, "pooler_output", out)
        return torch.nn.functional.normalize(out.float(), dim=-1)[0].numpy()

    @torch.inference_mode()
    def text_embedding(self, text: str) -> np.ndarray:
        with self.lock:
            inputs = self.processor(text=[text], return_tensors="pt", padding=True, truncation=True)
            out = self.model.get_text_features(input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"])
            out = getattr(out, "pooler_output", out)
        return torch.nn.functional.normalize(out.float(), dim=-1)[0].numpy()

    def score(self, image: Image.Image, prompt: str) -> float:
        return max(0.0, 100.0 * float(self.image_embedding(image) @ self.text_embedding(prompt)))


@functools.lru_cache(maxsize=2)
def clip_scorer(source: str) -> _Clip:
    """The CLIP model at ``source``, loaded once per process.

    Raises:
        ScorerError: it is neither a local folder nor in the local hub cache.
    """
    return _Clip(source)


def thumbnail_feature(image: Image.Image) -> np.ndarray:
    """A 24×24 RGB thumbnail with its mean removed, of unit length: cosine = correlation of layout and colour."""
    x = np.asarray(image.convert("RGB").resize((24, 24), Image.BOX), dtype=np.float64).ravel()
    x = x - x.mean()
    norm = np.linalg.norm(x)
    return x / norm if norm > 1e-9 else x


class DatasetIndex:
    """The training images of a run as unit vectors, to find each render's closest one.

    Args:
        folder: the dataset folder (images directly in it or in subfolders, e.g. kohya's ``10_name``).
        embed: image -> unit vector (CLIP's image embedding, or :func:`thumbnail_feature`).

    Raises:
        ScorerError: the folder does not exist or holds no readable image.
    """

    def __init__(self, folder: str | Path, embed: Callable[[Image.Image], np.ndarray], *, kind: str):
        self.folder = Path(folder).expanduser()
        self.kind = kind
        if not self.folder.is_dir():
            raise ScorerError(
                f"[signals] dataset {self.folder} is not a folder; point it at the folder of training images, or "
                "remove the key"
            )
        files = sorted(p for p in self.folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
        vectors, self.skipped = [], []
        for path in files[:DATASET_LIMIT]:
            try:
                with Image.open(path) as im:
                    if im.width * im.height > DATASET_MAX_PIXELS:
                        raise ValueError(f"{im.width}x{im.height} is larger than zbench reads")
                    vectors.append(embed(im.convert("RGB")))
            except Exception as err:  # a bad training image is skipped and said, the rest count
                self.skipped.append(f"{path.name}: {err}")
        if not vectors:
            raise ScorerError(
                f"[signals] dataset {self.folder} holds no readable image ({len(files)} files with an image suffix"
                + (f"; {self.skipped[0]}" if self.skipped else "")
                + "); point it at the training images"
            )
        self.vectors = np.stack(vectors)
        self.count = len(vectors)
        self.embed = embed

    def likeness(self, image: Image.Image) -> float:
        """Cosine similarity of ``image`` to its closest training image (1 = the same picture)."""
        return float((self.vectors @ self.embed(image)).max())


def load_scorer(spec: str, root: str | Path | None = None) -> Callable[[Image.Image, str], float | None]:
    """Import a scorer of the user's own from ``"module:function"`` (or ``"module:Class.method"``).

    The module is an installed or importable one (``mypkg.faces``), one beside the config (``faces`` for
    ``faces.py`` in ``root``, the config's folder), or a file (``scorers/faces.py:identity``, relative to
    ``root``). The function takes (image: PIL.Image, prompt: str) and returns a number or None. Optional
    attributes on it tell the page how to show it: ``zbench_label`` (a short name), ``zbench_good`` ("high"
    or "low") and ``zbench_means`` (one line: what it measures).

    Raises:
        ScorerError: the text is not ``module:function``, the module cannot be imported, or the name is not
            a callable in it.
    """
    module_name, _, attribute = str(spec).rpartition(":")  # the last colon: a Windows path has one of its own
    if not module_name or not attribute:
        raise ScorerError(f"a scorer is named as module:function (e.g. mypkg.faces:identity), got {spec!r}")
    try:
        if module_name.endswith(".py"):
            target: object = _module_file(Path(root or ".").expanduser() / Path(module_name).expanduser())
        else:
            if root is not None and str(Path(root).expanduser()) not in sys.path:
                sys.path.append(str(Path(root).expanduser()))  # after installed packages: it never shadows one
            target = importlib.import_module(module_name)
    except Exception as err:
        raise ScorerError(
            f"scorer {spec!r}: module {module_name!r} cannot be imported ({type(err).__name__}: {err}); install it, "
            "put it beside the config (or name its file: path/to/faces.py:function), or fix [signals] scorers"
        ) from err
    for part in attribute.split("."):
        target = getattr(target, part, None)
        if target is None:
            break
    if not callable(target):
        raise ScorerError(f"scorer {spec!r}: {module_name} has no function {attribute!r}; fix [signals] scorers")
    return target  # type: ignore[return-value]


_FILES: dict[tuple[str, int], object] = {}  # (path, mtime) -> module: a file is run once until it changes
_FILES_LOCK = threading.Lock()


def _module_file(path: Path) -> object:
    """The module in the Python file at ``path``, run once per version of the file."""
    path = path.resolve()
    if not path.is_file():
        raise FileNotFoundError(f"no file {path}")
    key = (str(path), path.stat().st_mtime_ns)
    with _FILES_LOCK:
        if key not in _FILES:
            name = f"zbench_scorer_{path.stem}_{hashlib.blake2b(str(path).encode(), digest_size=4).hexdigest()}"
            spec = importlib.util.spec_from_file_location(name, path)
            if spec is None or spec.loader is None:
                raise ImportError(f"{path} is not a Python file")
            module = importlib.util.module_from_spec(spec)
            sys.modules[name] = module  # dataclasses and pickling look their module up by name
            try:
                spec.loader.exec_module(module)
            except BaseException:
                sys.modules.pop(name, None)
                raise
            _FILES[key] = module
        return _FILES[key]
