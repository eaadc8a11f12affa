"""Benchmark 1 (systematic analysis, Sec. IV-A): perceptual similarity on BAPPS, and a proxy.

* BAPPS readers: :mod:`lossnet.data.bapps`.
* :func:`score_2afc`, :func:`score_jnd` score distances exactly as the ``lpips`` package's
  ``score_2afc_dataset`` / ``score_jnd_dataset`` do (ties, soft labels, ``voc_ap``).
* :func:`evaluate_bapps` runs a distance over BAPPS categories: one row per category + mean.
* :func:`distortion_proxy` is a *proxy*, not BAPPS: real SR-set patches with synthetic
  distortions of known strength, where "the weaker distortion is closer" is the known answer.
* The sweep's cell (one loss network, Eq. 1 with uniform weights) is
  :func:`lossnet.benchmarks.similarity.similarity_cell`.

Distance functions everywhere take two float batches ``(N, 3, H, W)`` in ``[0, 1]`` and return
``(N,)`` distances (tensor or array); smaller = more similar.
"""

from __future__ import annotations

import io
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional, Sequence, Union

import numpy as np
import torch
from torch import nn

from lossnet.types import PathLike
from lossnet.data.bapps import (
    BAPPS_2AFC_CATEGORIES,
    BAPPS_JND_CATEGORIES,
    _missing,
    _resolve_root,
    load_bapps_2afc,
    load_bapps_jnd,
)
from lossnet.losses import perceptual_distance
from lossnet.utils import to_unit

__all__ = [
    "PROXY_DISTORTIONS", "FeatureDistance", "ProxySet",
    "distortion_proxy", "evaluate_bapps",
    "make_proxy_set", "pixel_l2_distance", "ref_distances", "score_2afc", "score_jnd", "score_proxy_set",
    "ssim_distance", "twoafc_scores",
    "voc_ap",
]

DistanceFn = Callable[[torch.Tensor, torch.Tensor], Union[torch.Tensor, np.ndarray]]

# Category folders of the official release (PerceptualSimilarity test_dataset_model.py / README).

# Extensions the official make_dataset() accepts (case-sensitive endswith, as there).


# --------------------------------------------------------------------------------------------
# Scoring (exactly as the lpips package)
# --------------------------------------------------------------------------------------------


def _vec(a, name: str) -> np.ndarray:
    if isinstance(a, torch.Tensor):
        a = a.detach().cpu().numpy()
    v = np.asarray(a, dtype=np.float64).reshape(-1)
    if v.size == 0:
        raise ValueError(f"{name} is empty")
    return v


def _check_finite(v: np.ndarray, name: str) -> None:
    if not np.all(np.isfinite(v)):
        raise ValueError(f"{name} has {int((~np.isfinite(v)).sum())} non-finite values")


def _check_fraction(v: np.ndarray, name: str) -> None:
    _check_finite(v, name)
    if v.min() < 0 or v.max() > 1:
        raise ValueError(f"{name} must be fractions in [0, 1], got range [{v.min()}, {v.max()}]")


def twoafc_scores(d0, d1, judge) -> np.ndarray:
    """Per-triplet 2AFC scores (N,) in [0, 1] (Eq. 2, with the lpips package's tie rule).

    ``d0``, ``d1``: (N,) distances ref-p0, ref-p1; ``judge``: (N,) fraction of humans preferring
    p1. Score = ``(d0 < d1) * (1 - J) + (d1 < d0) * J + (d1 == d0) * 0.5``: the distance "votes"
    for the closer patch and agrees with that fraction of humans; an exact tie earns 0.5.
    """
    d0, d1, j = _vec(d0, "d0"), _vec(d1, "d1"), _vec(judge, "judge")
    if not d0.size == d1.size == j.size:
        raise ValueError(f"d0, d1, judge lengths differ: {d0.size}, {d1.size}, {j.size}")
    _check_finite(d0, "d0")
    _check_finite(d1, "d1")
    _check_fraction(j, "judge")
    return (d0 < d1) * (1.0 - j) + (d1 < d0) * j + (d1 == d0) * 0.5


def score_2afc(d0, d1, judge) -> float:
    """Mean 2AFC score in [0, 1] over N triplets; see :func:`twoafc_scores` (lpips' convention)."""
    return float(np.mean(twoafc_scores(d0, d1, judge)))


def voc_ap(rec: np.ndarray, prec: np.ndarray) -> float:
    """Area under the precision-recall curve, the "correct" (non-VOC07) ``lpips.voc_ap``."""
    mrec = np.concatenate(([0.0], rec, [1.0]))
    mpre = np.concatenate(([0.0], prec, [0.0]))
    for i in range(mpre.size - 1, 0, -1):  # precision envelope
        mpre[i - 1] = np.maximum(mpre[i - 1], mpre[i])
    i = np.where(mrec[1:] != mrec[:-1])[0]
    return float(np.sum((mrec[i + 1] - mrec[i]) * mpre[i + 1]))


def score_jnd(d, same) -> float:
    """JND mAP in [0, 1], as ``lpips.score_jnd_dataset``.

    ``d``: (N,) pair distances; ``same``: (N,) fraction of humans calling the pair the same
    (a soft label). Pairs are sorted by distance (``np.argsort``, so exact ties keep numpy's
    order, as in lpips); TPs = cumsum(same), FPs = cumsum(1 - same); precision TP/(TP+FP),
    recall TP/sum(same); AP by :func:`voc_ap`. Raises ValueError if ``sum(same) == 0`` (recall
    undefined; lpips would return NaN).
    """
    ds, sames = _vec(d, "d"), _vec(same, "same")
    if ds.size != sames.size:
        raise ValueError(f"d and same lengths differ: {ds.size}, {sames.size}")
    _check_finite(ds, "d")
    _check_fraction(sames, "same")
    if sames.sum() <= 0:
        raise ValueError("score_jnd needs at least one pair with same > 0 (recall is undefined otherwise)")
    order = np.argsort(ds)
    s = sames[order]
    tps = np.cumsum(s)
    fps = np.cumsum(1 - s)
    fns = np.sum(s) - tps
    return voc_ap(tps / (tps + fns), tps / (tps + fps))


# --------------------------------------------------------------------------------------------
# BAPPS readers
# --------------------------------------------------------------------------------------------


# --------------------------------------------------------------------------------------------
# Distances
# --------------------------------------------------------------------------------------------


class FeatureDistance(nn.Module):
    """Eq. 1 distance on a loss network's features, uniform weights unless ``channel_weights``.

    ``forward(x0, x1)``: float (N, 3, H, W) in [0, 1] -> (N,). ``embed``/``compare`` split the two
    steps so evaluation code computes a reference's features once for many comparisons.
    """

    def __init__(self, net: nn.Module, channel_weights: Optional[Sequence[torch.Tensor]] = None) -> None:
        super().__init__()
        self.net = net
        self.channel_weights = channel_weights

    def embed(self, x: torch.Tensor) -> list[torch.Tensor]:
        return self.net(x)

    def compare(self, f0: Sequence[torch.Tensor], f1: Sequence[torch.Tensor]) -> torch.Tensor:
        return perceptual_distance(f0, f1, self.channel_weights)

    def forward(self, x0: torch.Tensor, x1: torch.Tensor) -> torch.Tensor:
        return self.compare(self.embed(x0), self.embed(x1))


def pixel_l2_distance(x0: torch.Tensor, x1: torch.Tensor) -> torch.Tensor:
    """Mean squared pixel difference per image (RGB, [0, 1]): (N,)."""
    return (x0.float() - x1.float()).pow(2).flatten(1).mean(1)


def ssim_distance(x0: torch.Tensor, x1: torch.Tensor) -> torch.Tensor:
    """``1 - SSIM`` per image (torchmetrics, RGB, data_range 1, 11x11 Gaussian window): (N,)."""
    from torchmetrics.functional.image import (
        structural_similarity_index_measure as ssim,
    )

    return 1.0 - ssim(x0.float(), x1.float(), data_range=1.0, reduction="none")


def _as_float(x: torch.Tensor, device) -> torch.Tensor:
    return to_unit(x.to(device))


def _to_numpy(d, n: int) -> np.ndarray:
    if isinstance(d, torch.Tensor):
        d = d.detach().float().cpu().numpy()
    d = np.asarray(d, dtype=np.float64).reshape(-1)
    if d.size != n:
        raise ValueError(f"distance function returned {d.size} values for a batch of {n}")
    return d


@torch.no_grad()
def ref_distances(distance_fn: DistanceFn, ref: torch.Tensor, others: Sequence[torch.Tensor], *,
                  batch_size: int = 64, device=None) -> list[np.ndarray]:
    """Distances ``d(ref[i], other[i])`` for each tensor in ``others``: a list of (N,) float64.

    ``ref`` and ``others`` are (N, 3, H, W), uint8 (scaled to [0, 1]) or float. If
    ``distance_fn`` has ``embed``/``compare`` (:class:`FeatureDistance`), ``ref`` is embedded once.
    """
    device = torch.device(device) if device is not None else _fn_device(distance_fn)
    n = ref.shape[0]
    for o in others:
        if o.shape != ref.shape:
            raise ValueError(f"shape {tuple(o.shape)} differs from the reference's {tuple(ref.shape)}")
    out = [np.empty(n, dtype=np.float64) for _ in others]
    cached = hasattr(distance_fn, "embed") and hasattr(distance_fn, "compare")
    for s in range(0, n, batch_size):
        r = _as_float(ref[s:s + batch_size], device)
        fr = distance_fn.embed(r) if cached else None
        for k, o in enumerate(others):
            x = _as_float(o[s:s + batch_size], device)
            d = distance_fn.compare(fr, distance_fn.embed(x)) if cached else distance_fn(r, x)
            out[k][s:s + r.shape[0]] = _to_numpy(d, r.shape[0])
    return out


def _fn_device(fn) -> torch.device:
    if isinstance(fn, nn.Module):
        for t in list(fn.parameters()) + list(fn.buffers()):
            return t.device
    return torch.device("cpu")


def _mean_row(rows: list[dict], **extra) -> dict:
    return {**extra, "category": "mean", "n": int(sum(r["n"] for r in rows)),
            "score": float(np.mean([r["score"] for r in rows]))}


# --------------------------------------------------------------------------------------------
# BAPPS evaluation
# --------------------------------------------------------------------------------------------


def evaluate_bapps(distance_fn: DistanceFn, root: PathLike, *, tasks: Sequence[str] = ("2afc", "jnd"),
                   split: str = "val", categories_2afc: Optional[Sequence[str]] = None,
                   categories_jnd: Optional[Sequence[str]] = None, batch_size: int = 50, device=None,
                   load_size: Optional[int] = 64) -> list[dict]:
    """Score ``distance_fn`` on BAPPS; one row per (task, category) plus a ``"mean"`` row per task.

    Rows: ``{"data": "bapps", "task": "2afc"|"jnd", "split", "category", "n", "score"}``; 2AFC
    score by :func:`score_2afc`, JND mAP by :func:`score_jnd`, both in [0, 1]. The ``"mean"`` row
    is the unweighted mean over categories (the "average 2AFC score" / mean JND mAP the LPIPS
    and systematic-analysis papers report); its ``n`` is the total count. Categories are read
    one at a time to bound memory.
    """
    rows: list[dict] = []
    bad = set(tasks) - {"2afc", "jnd"}
    if bad:
        raise ValueError(f"unknown tasks {sorted(bad)}; use '2afc' and/or 'jnd'")
    root = _resolve_root(root)
    if "2afc" in tasks:
        cats = categories_2afc if categories_2afc is not None else BAPPS_2AFC_CATEGORIES.get(split)
        if cats is None:
            raise ValueError(f"split must be one of {sorted(BAPPS_2AFC_CATEGORIES)}, got {split!r}")
        for c in cats:  # fail early on a missing folder, before any distance is computed
            if not (root / "2afc" / split / c).is_dir():
                raise _missing(root / "2afc" / split / c, f"2AFC {split}/{c}")
        task_rows = []
        for c in cats:
            ref, p0, p1, judge = load_bapps_2afc(root, split, [c], load_size)[c]
            d0, d1 = ref_distances(distance_fn, ref, [p0, p1], batch_size=batch_size, device=device)
            task_rows.append({"data": "bapps", "task": "2afc", "split": split, "category": c, "n": len(judge),
                              "score": score_2afc(d0, d1, judge.numpy())})
        rows += task_rows + [_mean_row(task_rows, data="bapps", task="2afc", split=split)]
    if "jnd" in tasks:
        cats = categories_jnd if categories_jnd is not None else BAPPS_JND_CATEGORIES
        for c in cats:
            if not (root / "jnd" / "val" / c).is_dir():
                raise _missing(root / "jnd" / "val" / c, f"JND val/{c}")
        task_rows = []
        for c in cats:
            p0, p1, same = load_bapps_jnd(root, [c], load_size)[c]
            (d,) = ref_distances(distance_fn, p0, [p1], batch_size=batch_size, device=device)
            task_rows.append({"data": "bapps", "task": "jnd", "split": "val", "category": c, "n": len(same),
                              "score": score_jnd(d, same.numpy())})
        rows += task_rows + [_mean_row(task_rows, data="bapps", task="jnd", split="val")]
    return rows


# --------------------------------------------------------------------------------------------
# Distortion proxy (real images, synthetic distortions; NOT BAPPS)
# --------------------------------------------------------------------------------------------

# name -> levels, weakest first. Units: blur = Gaussian sigma (px); noise = std (of 255);
# jpeg = PIL quality; color = length of a per-patch random RGB offset (of 255); contrast = factor
# towards the patch's mean grey; shift = translation (px) in a per-patch compass direction.
PROXY_DISTORTIONS: dict[str, tuple[float, ...]] = {
    "blur": (0.4, 0.8, 1.2, 1.8, 2.5),
    "noise": (2.0, 5.0, 10.0, 20.0, 40.0),
    "jpeg": (95, 75, 50, 25, 10),
    "color": (3.0, 8.0, 16.0, 32.0, 56.0),
    "contrast": (0.95, 0.85, 0.7, 0.5, 0.3),
    "shift": (1, 2, 3, 5, 8),
}
_MARGIN = 16  # context around each patch so blur and shift see real pixels, not padding
_COMPASS = ((-1, -1), (-1, 0), (-1, 1), (0, -1), (0, 1), (1, -1), (1, 0), (1, 1))
_PROXY_IMG_EXT = (".png", ".jpg", ".jpeg", ".bmp", ".ppm", ".tif", ".tiff")


def _distort(name: str, ctx: np.ndarray, level: float, rng: np.random.Generator, patch: int) -> np.ndarray:
    """One distortion of the centre ``patch`` of context ``ctx`` (H, W, 3) float in [0, 255]."""
    m = _MARGIN
    c = ctx[m:m + patch, m:m + patch]
    if name == "blur":
        from scipy.ndimage import gaussian_filter

        out = gaussian_filter(ctx, sigma=(level, level, 0), mode="reflect", truncate=4.0)[m:m + patch, m:m + patch]
    elif name == "noise":
        out = c + level * rng.standard_normal(c.shape)
    elif name == "jpeg":
        from PIL import Image

        buf = io.BytesIO()
        Image.fromarray(np.clip(np.rint(c), 0, 255).astype(np.uint8)).save(buf, format="JPEG", quality=int(level))
        buf.seek(0)
        with Image.open(buf) as im:
            out = np.asarray(im.convert("RGB"), dtype=np.float64)
    elif name == "color":
        v = rng.standard_normal(3)
        out = c + level * v / np.linalg.norm(v)
    elif name == "contrast":
        mean = c.mean()
        out = mean + level * (c - mean)
    elif name == "shift":
        dy, dx = _COMPASS[int(rng.integers(len(_COMPASS)))]
        oy, ox = m + int(dy * level), m + int(dx * level)
        out = ctx[oy:oy + patch, ox:ox + patch]
    else:
        raise ValueError(f"unknown distortion {name!r}; known: {list(PROXY_DISTORTIONS)}")
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


@dataclass
class ProxySet:
    """Reference patches and their distortions.

    ``ref``: uint8 (N, 3, P, P); ``distorted[name]``: uint8 (N, L, 3, P, P), levels weakest
    first (``levels[name]``); ``sources``: (image path relative to the root, top, left) of each
    context crop (the patch is its centre).
    """

    ref: torch.Tensor
    distorted: dict[str, torch.Tensor]
    levels: dict[str, tuple[float, ...]]
    sources: list[tuple[str, int, int]] = field(default_factory=list)


def make_proxy_set(sr_root: PathLike, n_patches: int = 64, seed: int = 0,
                   distortions: Optional[Sequence[str]] = None, patch: int = 64) -> ProxySet:
    """Deterministic patches from the images under ``sr_root`` (searched recursively), distorted.

    Images (sorted by relative path) at least ``patch + 32`` px on both sides are visited in a
    seeded random order (cycling if ``n_patches`` exceeds their number), one random crop each.
    Per-patch randomness (noise field, colour direction, shift direction) is shared across the
    levels of a distortion, so only the strength changes. Same ``seed`` -> identical set.
    """
    from lossnet.data.images import image_size, open_image

    names = list(PROXY_DISTORTIONS) if distortions is None else list(distortions)
    for nm in names:
        if nm not in PROXY_DISTORTIONS:
            raise ValueError(f"unknown distortion {nm!r}; known: {list(PROXY_DISTORTIONS)}")
    if n_patches < 1:
        raise ValueError("n_patches must be >= 1")
    root = Path(sr_root)
    if not root.is_dir():
        raise FileNotFoundError(f"image folder {root} does not exist (expected e.g. shared/data/sr)")
    files = sorted((p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in _PROXY_IMG_EXT),
                   key=lambda p: p.relative_to(root).as_posix())
    ctx = patch + 2 * _MARGIN
    sizes = {}
    for p in files:
        sizes[p] = image_size(p)
    eligible = [p for p in files if min(sizes[p]) >= ctx]
    if not eligible:
        raise FileNotFoundError(f"no image of at least {ctx}x{ctx} px under {root}")
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(eligible))
    L = {nm: len(PROXY_DISTORTIONS[nm]) for nm in names}
    ref = torch.empty((n_patches, 3, patch, patch), dtype=torch.uint8)
    dist = {nm: torch.empty((n_patches, L[nm], 3, patch, patch), dtype=torch.uint8) for nm in names}
    sources = []
    cache: dict[Path, np.ndarray] = {}
    for i in range(n_patches):
        p = eligible[order[i % len(eligible)]]
        if p not in cache:
            with open_image(p) as im:
                cache[p] = np.asarray(im.convert("RGB"), dtype=np.float64)
        img = cache[p]
        top = int(rng.integers(0, img.shape[0] - ctx + 1))
        left = int(rng.integers(0, img.shape[1] - ctx + 1))
        c = img[top:top + ctx, left:left + ctx]
        sources.append((p.relative_to(root).as_posix(), top, left))
        ref[i] = torch.from_numpy(c[_MARGIN:_MARGIN + patch, _MARGIN:_MARGIN + patch].astype(np.uint8)
                                  .transpose(2, 0, 1).copy())
        for nm in names:
            key = list(PROXY_DISTORTIONS).index(nm)
            for k, level in enumerate(PROXY_DISTORTIONS[nm]):
                r = np.random.default_rng([seed, i, key])  # same draws at every level
                dist[nm][i, k] = torch.from_numpy(_distort(nm, c, level, r, patch).transpose(2, 0, 1).copy())
    return ProxySet(ref, dist, {nm: PROXY_DISTORTIONS[nm] for nm in names}, sources)


def score_proxy_set(distance_fn: DistanceFn, ps: ProxySet, *, batch_size: int = 64, device=None,
                    seed: Optional[int] = None) -> list[dict]:
    """Score a :class:`ProxySet`; rows as :func:`distortion_proxy`."""
    rows2, rowsj = [], []
    all_d, all_s, weakest, strongest = [], [], {}, {}
    base = {"data": "proxy", "split": None if seed is None else f"seed{seed}"}
    for nm, x in ps.distorted.items():
        L = x.shape[1]
        ds = np.stack(ref_distances(distance_fn, ps.ref, [x[:, k] for k in range(L)],
                                    batch_size=batch_size, device=device), 1)  # (N, L)
        pairs = [(a, b) for a in range(L) for b in range(a + 1, L)]
        d0 = np.concatenate([ds[:, a] for a, _ in pairs])  # p0 = weaker distortion
        d1 = np.concatenate([ds[:, b] for _, b in pairs])  # p1 = stronger; J = 0 (nobody prefers p1)
        rows2.append({**base, "task": "2afc", "category": nm, "n": d0.size,
                      "score": score_2afc(d0, d1, np.zeros_like(d0))})
        weakest[nm], strongest[nm] = ds[:, 0], ds[:, -1]
        d = np.concatenate([ds[:, 0], ds[:, -1]])  # "same": weakest level, "different": strongest
        s = np.concatenate([np.ones(len(ds)), np.zeros(len(ds))])
        all_d.append(d)
        all_s.append(s)
        rowsj.append({**base, "task": "jnd", "category": nm, "n": d.size, "score": score_jnd(d, s)})
    d, s = np.concatenate(all_d), np.concatenate(all_s)
    pooled = {**base, "task": "jnd", "category": "pooled", "n": d.size, "score": score_jnd(d, s)}
    out2 = rows2 + [_mean_row(rows2, **base, task="2afc")]
    cross = [(a, b) for a in ps.distorted for b in ps.distorted if a != b]
    if cross:  # weakest of one distortion vs strongest of another: the weak one is closer
        d0 = np.concatenate([weakest[a] for a, _ in cross])
        d1 = np.concatenate([strongest[b] for _, b in cross])
        out2.append({**base, "task": "2afc", "category": "cross", "n": d0.size,
                     "score": score_2afc(d0, d1, np.zeros_like(d0))})
    return out2 + rowsj + [_mean_row(rowsj, **base, task="jnd"), pooled]


def distortion_proxy(distance_fn: DistanceFn, sr_root: PathLike, n_patches: int = 64, seed: int = 0, *,
                     distortions: Optional[Sequence[str]] = None, batch_size: int = 64, device=None) -> list[dict]:
    """Benchmark-1 *proxy* on real images with known answers (not BAPPS, not human judgements).

    For every patch x and distortion, each pair of strengths a < b gives a triplet
    (x, weaker, stronger) whose known answer is "the weaker one is closer" (J = 0 for p1 = the
    stronger); 2AFC score = fraction ordered correctly (ties 0.5), over N * C(L, 2) triplets.
    JND-style mAP: pairs (x, weakest) are "same" (1), pairs (x, strongest) "different" (0).

    Returns rows ``{"data": "proxy", "task", "split": "seed<seed>", "category", "n", "score"}``:
    one per distortion and task, a ``"mean"`` row per task (unweighted mean over distortions),
    and two harder rows that compare *across* distortion types: 2AFC ``"cross"`` (triplets
    (x, weakest of distortion A, strongest of distortion B), A != B, N * D * (D - 1) of them)
    and JND ``"pooled"`` (all distortions' pairs ranked together). They are not part of the
    means. Scores in [0, 1]; deterministic for a seed.
    """
    ps = make_proxy_set(sr_root, n_patches=n_patches, seed=seed, distortions=distortions)
    return score_proxy_set(distance_fn, ps, batch_size=batch_size, device=device, seed=seed)


# --------------------------------------------------------------------------------------------
# Sweep entry
# --------------------------------------------------------------------------------------------


