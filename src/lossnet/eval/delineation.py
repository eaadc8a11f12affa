"""Completeness, correctness and quality of a delineation (Wiedemann et al. 1998).

The standard road-extraction scores with a tolerance buffer, as Benchmark 3 of the systematic
analysis (Sec. IV-C, "as defined in [85]") and Mosinska et al. (CVPR 2018) use them:

1. the prediction (a probability map) is thresholded, ``pred > threshold`` (default 0.5); the
   reference (ground-truth map) likewise, ``target > 0.5`` (so {0, 1} and {0, 255} maps both work
   once scaled to [0, 1]; pass ``target_threshold`` for other encodings);
2. both binary maps are thinned to 1-pixel centrelines (``skimage.morphology.skeletonize``;
   ``thin=False`` skips this for maps that are already centrelines);
3. with a tolerance of ``rho`` pixels (Euclidean distance, inclusive: a pixel exactly ``rho``
   away matches; ``scipy.ndimage.distance_transform_edt`` gives the buffer):

   * ``matched_reference`` = reference centreline pixels within ``rho`` of an extracted pixel,
   * ``matched_extracted`` = extracted centreline pixels within ``rho`` of a reference pixel,
   * completeness = matched_reference / n_reference (recall analogue),
   * correctness = matched_extracted / n_extracted (precision analogue),
   * quality = matched_extracted / (n_extracted + n_reference - matched_reference), i.e.
     TP / (TP + FP + FN) with TP = matched extraction, FP = unmatched extraction, FN = unmatched
     reference (Wiedemann's "length of matched extraction / (length of extraction + length of
     unmatched reference)"; critical-success-index analogue).

Edge cases (0/0 ratios are *undefined*, returned as ``undefined``, default NaN):

* empty prediction, non-empty reference: completeness 0, correctness undefined, quality 0;
* non-empty prediction, empty reference: completeness undefined, correctness 0, quality 0;
* both empty: all three undefined.

Aggregation over a test set (:func:`delineation_scores` on a batch, :class:`DelineationMeter`):
the headline ``completeness``/``correctness``/``quality`` are *corpus-level*: the pixel counts are
summed over all images first and the ratios taken once (every centreline pixel weighs the same;
images without any road do not produce undefined values). The per-image means
(``mean_completeness`` ...) average the images on which the ratio is defined (``nanmean``), with
the number of such images in ``n_defined_*``. All scores are fractions in [0, 1]; reports
format them as percentages (the paper's Table X).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import torch

__all__ = ["COUNT_KEYS", "DelineationMeter", "delineation_counts", "delineation_scores", "scores_from_counts"]

COUNT_KEYS = ("n_reference", "n_extracted", "matched_reference", "matched_extracted")
"""The four pixel counts behind the scores (per image or summed)."""

SCORE_KEYS = ("completeness", "correctness", "quality")


def _as_numpy(x, name: str) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu()
        if x.dtype == torch.bfloat16 or x.dtype == torch.float16:
            x = x.float()
        x = x.numpy()
    elif not isinstance(x, np.ndarray):
        raise ValueError(f"{name} must be a torch.Tensor or numpy array, got {type(x).__name__}")
    return x


def _as_batch(x, name: str) -> np.ndarray:
    """(H, W) -> (1, H, W); (N, H, W) as is; (N, 1, H, W) -> (N, H, W)."""
    x = _as_numpy(x, name)
    if x.ndim == 2:
        x = x[None]
    elif x.ndim == 4:
        if x.shape[1] != 1:
            raise ValueError(f"{name} must be one-channel maps (N, 1, H, W), got shape {x.shape}")
        x = x[:, 0]
    elif x.ndim != 3:
        raise ValueError(f"{name} must be (H, W), (N, H, W) or (N, 1, H, W), got shape {x.shape}")
    if x.dtype != bool and np.issubdtype(x.dtype, np.floating) and not np.isfinite(x).all():
        raise ValueError(f"{name} contains NaN or Inf values")
    return x


def _binary(x: np.ndarray, threshold: float) -> np.ndarray:
    return x if x.dtype == bool else x > threshold


def _centreline(b: np.ndarray, thin: bool) -> np.ndarray:
    if not thin or not b.any():
        return b
    from skimage.morphology import skeletonize

    return skeletonize(b)


def _within(ref: np.ndarray, tolerance: float) -> np.ndarray:
    """Pixels within ``tolerance`` (Euclidean, inclusive) of a True pixel of ``ref`` (not empty)."""
    from scipy.ndimage import distance_transform_edt

    return distance_transform_edt(~ref) <= tolerance


def _image_counts(p: np.ndarray, t: np.ndarray, tolerance: float, thin: bool) -> dict[str, int]:
    ps, ts = _centreline(p, thin), _centreline(t, thin)
    n_ext, n_ref = int(ps.sum()), int(ts.sum())
    m_ref = int((ts & _within(ps, tolerance)).sum()) if n_ext and n_ref else 0
    m_ext = int((ps & _within(ts, tolerance)).sum()) if n_ext and n_ref else 0
    return {"n_reference": n_ref, "n_extracted": n_ext, "matched_reference": m_ref, "matched_extracted": m_ext}


def delineation_counts(pred, target, tolerance: float = 3, threshold: float = 0.5, *, target_threshold: float = 0.5,
                       thin: bool = True) -> list[dict[str, int]]:
    """The four pixel counts (:data:`COUNT_KEYS`) of every image.

    Args:
        pred: probability maps in [0, 1] (or boolean masks), (H, W), (N, H, W) or (N, 1, H, W),
            torch or numpy.
        target: reference maps of the same shape (boolean, {0, 1} or probabilities; thresholded
            at ``target_threshold``).
        tolerance: the buffer width rho in pixels (>= 0).
        threshold: ``pred > threshold`` is the extraction.
        thin: skeletonize both maps first (the standard); False for maps that are centrelines.
    """
    if not (isinstance(tolerance, (int, float)) and tolerance >= 0 and math.isfinite(tolerance)):
        raise ValueError(f"tolerance must be a finite number of pixels >= 0, got {tolerance!r}")
    p, t = _as_batch(pred, "pred"), _as_batch(target, "target")
    if p.shape != t.shape:
        raise ValueError(f"pred and target must have the same shape, got {p.shape} and {t.shape}")
    pb, tb = _binary(p, threshold), _binary(t, target_threshold)
    return [_image_counts(pb[i], tb[i], float(tolerance), thin) for i in range(len(pb))]


def _ratio(num: float, den: float, undefined: float) -> float:
    return num / den if den > 0 else undefined


def scores_from_counts(counts: dict[str, float], undefined: float = float("nan")) -> dict[str, float]:
    """Completeness, correctness and quality from (summed) counts; 0/0 gives ``undefined``."""
    n_ref, n_ext = counts["n_reference"], counts["n_extracted"]
    m_ref, m_ext = counts["matched_reference"], counts["matched_extracted"]
    return {"completeness": _ratio(m_ref, n_ref, undefined), "correctness": _ratio(m_ext, n_ext, undefined),
            "quality": _ratio(m_ext, n_ext + n_ref - m_ref, undefined)}


@dataclass
class DelineationMeter:
    """Accumulates counts over a test set batch by batch; :meth:`compute` gives the scores.

    ``update(pred, target)`` takes what :func:`delineation_counts` takes.
    """

    tolerance: float = 3
    threshold: float = 0.5
    target_threshold: float = 0.5
    thin: bool = True
    undefined: float = float("nan")
    per_image: list[dict[str, int]] = field(default_factory=list)

    def update(self, pred, target) -> list[dict[str, int]]:
        c = delineation_counts(pred, target, self.tolerance, self.threshold, target_threshold=self.target_threshold,
                               thin=self.thin)
        self.per_image.extend(c)
        return c

    def compute(self) -> dict[str, float]:
        """Corpus-level scores (summed counts), per-image means, the summed counts and ``n_images``."""
        return _summarise(self.per_image, self.undefined)


def _summarise(per_image: list[dict[str, int]], undefined: float) -> dict:
    totals = {k: int(sum(c[k] for c in per_image)) for k in COUNT_KEYS}
    out: dict = dict(scores_from_counts(totals, undefined))
    per = [scores_from_counts(c) for c in per_image]
    for k in SCORE_KEYS:
        vals = [s[k] for s in per if not math.isnan(s[k])]
        out[f"mean_{k}"] = float(np.mean(vals)) if vals else undefined
        out[f"n_defined_{k}"] = len(vals)
    out.update(totals)
    out["n_images"] = len(per_image)
    return out


def delineation_scores(pred, target, tolerance: float = 3, threshold: float = 0.5, *, target_threshold: float = 0.5,
                       thin: bool = True, undefined: float = float("nan")) -> dict:
    """Completeness, correctness and quality of one image or a batch (fractions in [0, 1]).

    Arguments as :func:`delineation_counts`. Returns a dict with the corpus-level
    ``completeness``, ``correctness``, ``quality`` (counts summed over the batch; for one image
    these are the image's scores), the per-image means ``mean_completeness`` ... with
    ``n_defined_*`` (images on which each ratio is defined), the summed :data:`COUNT_KEYS` and
    ``n_images``. Undefined ratios (0/0, see the module docstring) are ``undefined`` (NaN).
    """
    counts = delineation_counts(pred, target, tolerance, threshold, target_threshold=target_threshold, thin=thin)
    return _summarise(counts, undefined)
