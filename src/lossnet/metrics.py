"""lossnet's scores as ``torchmetrics.Metric`` s: accumulate over batches, sync across DDP ranks.

=====================================  =====================================================
LPIPS-style distance, any zoo network  :class:`PerceptualDistanceMetric` (wraps
                                       :class:`lossnet.losses.PerceptualDistance`; lower is
                                       more similar)
deep perceptual similarity (PS loss)   :class:`DeepPerceptualSimilarity` (the loss of
                                       :func:`lossnet.losses.perceptual_loss` with a
                                       :class:`~lossnet.zoo.LossNetwork`)
benchmark 2's PSNR / SSIM convention   :class:`SuperResolutionScores` (both, a dict),
                                       :class:`SRPSNR`, :class:`SRSSIM` (one each;
                                       :func:`lossnet.eval.sr.psnr_ssim`: luma Y, border
                                       crop, 8-bit output)
delineation scores                     :class:`DelineationScores` (completeness,
                                       correctness, quality;
                                       :mod:`lossnet.eval.delineation`)
=====================================  =====================================================

Every metric keeps only sums as state (``add_state(..., dist_reduce_fx="sum")``): ``update``
adds a batch, ``compute`` gives the value over everything seen since the last ``reset``, and
under ``torch.distributed`` the sums are all-reduced first, so ``compute`` on any rank equals the
single-process value over the union of all ranks' batches. Image metrics average *per image*
(each image weighs the same, whatever the batch sizes); the delineation metric sums pixel counts
(corpus-level scores, as :func:`lossnet.eval.delineation.delineation_scores`).

The frozen loss network of the two perceptual metrics is not a registered submodule: it is not in
the metric's ``state_dict`` (a checkpoint of a model holding the metric stays small), it takes no
gradients, stays in eval mode, follows ``.to(device)`` / ``.double()`` of the metric and moves
to the inputs' device on ``update`` if needed. Images are float (N, 3, H, W) in [0, 1].
"""

from __future__ import annotations

from typing import Any, Callable

import torch
from torch import Tensor, nn
from torchmetrics import Metric

__all__ = ["PerceptualDistanceMetric", "DeepPerceptualSimilarity", "SuperResolutionScores", "SRPSNR", "SRSSIM",
           "DelineationScores"]


class _FrozenNetMetric(Metric):
    """A Metric holding a frozen network outside its module tree (not in ``state_dict``)."""

    is_differentiable = False
    full_state_update = False

    def _set_net(self, net: nn.Module) -> None:
        net.requires_grad_(False).eval()
        object.__setattr__(self, "_frozen", net)  # bypass nn.Module registration

    @property
    def net(self) -> nn.Module:
        """The frozen network (not part of the state dict)."""
        return self._frozen

    def _apply(self, fn: Callable, exclude_state=""):
        this = super()._apply(fn, exclude_state)
        self._frozen._apply(fn)
        return this

    def train(self, mode: bool = True):
        super().train(mode)
        self._frozen.eval()
        return self

    def _follow(self, x: Tensor) -> None:
        p = next(iter(self._frozen.parameters()), None)
        if p is None:
            p = next(iter(self._frozen.buffers()), None)
        if p is not None and p.device != x.device:
            self._frozen.to(x.device)

    def _add_mean_states(self) -> None:
        self.add_state("total", torch.tensor(0.0, dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("count", torch.tensor(0, dtype=torch.int64), dist_reduce_fx="sum")

    def _accumulate(self, per_image: Tensor) -> None:
        self.total += per_image.detach().double().sum().to(self.total.device)
        self.count += per_image.numel()

    def compute(self) -> Tensor:
        """Mean over all images seen (NaN before any update)."""
        return self.total / self.count if self.count > 0 else torch.tensor(float("nan"), dtype=torch.float64)


class PerceptualDistanceMetric(_FrozenNetMetric):
    """Mean LPIPS-style distance (systematic analysis Eq. 1) between pairs of images.

    Args are those of :class:`lossnet.losses.PerceptualDistance`: ``arch`` (registered name or a
    :class:`~lossnet.zoo.LossNetwork`), ``layers`` (default LPIPS' five ReLUs for alexnet/vgg16,
    else ``["L"]``), ``lpips_weights`` (LPIPS v0.1 linear layers: with ``arch="alexnet"`` this is
    LPIPS(alex) v0.1 itself), ``weights``, ``normalize``; ``**kwargs`` go to ``Metric``.

    ``update(x0, x1)``: float (N, 3, H, W) in [0, 1] each. ``compute()``: the mean per-image
    distance (>= 0, 0 for identical images), a float64 scalar.
    """

    higher_is_better = False

    def __init__(self, arch: Any = "alexnet", layers=None, lpips_weights: bool = False, weights: Any = "imagenet",
                 normalize: str | None = None, **kwargs) -> None:
        super().__init__(**kwargs)
        from .losses import PerceptualDistance

        self._set_net(PerceptualDistance(arch, layers=layers, lpips_weights=lpips_weights, weights=weights,
                                         normalize=normalize))
        self._add_mean_states()

    def update(self, x0: Tensor, x1: Tensor) -> None:
        self._follow(x0)
        with torch.no_grad():
            self._accumulate(self._frozen(x0, x1))


class DeepPerceptualSimilarity(_FrozenNetMetric):
    """Mean deep perceptual similarity loss (paper A Eq. 2, systematic analysis Eq. 6).

    Args:
        loss_net: a :class:`~lossnet.zoo.LossNetwork` (any layers, with or without sigmoid), or
            an architecture name, then ``**net_kwargs`` (``layers``, ``weights``, ``sigmoid``, ...)
            build one (``layers`` default ``["M"]``).
        metric_kwargs: passed to ``torchmetrics.Metric``.

    ``update(x, target)``: float (N, 3, H, W) in [0, 1]. Per image ``sum_l mean_(c,h,w)
    (p_l(target) - p_l(x))^2`` (summed over the network's layers); ``compute()`` is the mean over
    images -- on equally sized images exactly ``perceptual_loss(loss_net, X, T)`` (reduction
    "mean") of all images at once.
    """

    higher_is_better = False

    def __init__(self, loss_net: Any = "alexnet", *, metric_kwargs: dict | None = None, **net_kwargs) -> None:
        super().__init__(**(metric_kwargs or {}))
        from .zoo.network import LossNetwork

        if not isinstance(loss_net, LossNetwork):
            if not isinstance(loss_net, str):
                raise ValueError(f"loss_net must be a LossNetwork or an architecture name, got {type(loss_net).__name__}")
            net_kwargs.setdefault("layers", ["M"])
            loss_net = LossNetwork(loss_net, **net_kwargs)
        elif net_kwargs:
            raise ValueError(f"got a LossNetwork and network arguments {sorted(net_kwargs)}; give one or the other")
        self._set_net(loss_net)
        self._add_mean_states()

    def update(self, x: Tensor, target: Tensor) -> None:
        from .losses import _check_images, check_pair

        _check_images(x, "x")
        _check_images(target, "target")
        check_pair(x, target, ("x", "target"))
        self._follow(x)
        with torch.no_grad():
            fx, ft = self._frozen(x), self._frozen(target)
            per = sum((a - b).pow(2).flatten(1).mean(1) for a, b in zip(fx, ft))
        self._accumulate(per)


class SuperResolutionScores(Metric):
    """Benchmark 2's PSNR (dB) and SSIM, averaged over images (:func:`lossnet.eval.sr.psnr_ssim`).

    Args:
        border: pixels cropped on every side before scoring (benchmark 2 uses the scale factor).
        colour: ``"y"`` (BT.601 luma, default) or ``"rgb"``.
        quantize: round the output to 8 bits first (as a saved image).

    ``update(sr, hr)``: float (N, 3, H, W) in [0, 1]. ``compute()``: ``{"psnr": dB, "ssim": [-1, 1]}``
    (float64 scalars), each the mean of the per-image values.
    """

    is_differentiable = False
    higher_is_better = True
    full_state_update = False

    def __init__(self, border: int = 0, colour: str = "y", quantize: bool = True, **kwargs) -> None:
        super().__init__(**kwargs)
        if colour not in ("y", "rgb"):
            raise ValueError(f"colour must be 'y' or 'rgb', got {colour!r}")
        if not isinstance(border, int) or border < 0:
            raise ValueError(f"border must be an int >= 0 (pixels), got {border!r}")
        self.border, self.colour, self.quantize = border, colour, bool(quantize)
        self.add_state("psnr_sum", torch.tensor(0.0, dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("ssim_sum", torch.tensor(0.0, dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("count", torch.tensor(0, dtype=torch.int64), dist_reduce_fx="sum")

    def update(self, sr: Tensor, hr: Tensor) -> None:
        from .eval.sr import psnr_ssim

        with torch.no_grad():
            rows = psnr_ssim(sr.detach(), hr.detach(), border=self.border, colour=self.colour, quantize=self.quantize)
        self.psnr_sum += sum(r["psnr"] for r in rows)
        self.ssim_sum += sum(r["ssim"] for r in rows)
        self.count += len(rows)

    def compute(self) -> dict[str, Tensor]:
        nan = torch.tensor(float("nan"), dtype=torch.float64)
        if self.count == 0:
            return {"psnr": nan, "ssim": nan}
        return {"psnr": self.psnr_sum / self.count, "ssim": self.ssim_sum / self.count}


class SRPSNR(SuperResolutionScores):
    """:class:`SuperResolutionScores`' PSNR alone (dB, a float64 scalar), e.g. for a ``MetricCollection``."""

    def compute(self) -> Tensor:
        return super().compute()["psnr"]


class SRSSIM(SuperResolutionScores):
    """:class:`SuperResolutionScores`' SSIM alone (a float64 scalar in [-1, 1])."""

    def compute(self) -> Tensor:
        return super().compute()["ssim"]


class DelineationScores(Metric):
    """Completeness, correctness and quality of delineations (Wiedemann et al.), accumulated.

    Args as :func:`lossnet.eval.delineation.delineation_counts`: ``tolerance`` (buffer, pixels),
    ``threshold`` (``pred > threshold``), ``target_threshold``, ``thin`` (skeletonize first).

    ``update(pred, target)``: probability maps / masks (N, H, W), (N, 1, H, W) or (H, W), torch
    or numpy. State: the four pixel counts summed over images (and per-image ratio sums for the
    means). ``compute()`` returns what :func:`~lossnet.eval.delineation.delineation_scores` returns
    for all images at once, as float64 tensors: corpus-level ``completeness``, ``correctness``,
    ``quality`` (fractions in [0, 1]; NaN when 0/0), ``mean_*`` over the images where each ratio is
    defined, ``n_defined_*``, the summed counts and ``n_images``.
    """

    is_differentiable = False
    higher_is_better = True
    full_state_update = False

    def __init__(self, tolerance: float = 3, threshold: float = 0.5, *, target_threshold: float = 0.5,
                 thin: bool = True, **kwargs) -> None:
        super().__init__(**kwargs)
        from .eval.delineation import COUNT_KEYS, SCORE_KEYS

        self.tolerance, self.threshold, self.target_threshold, self.thin = tolerance, threshold, target_threshold, thin
        self._counts, self._scores = COUNT_KEYS, SCORE_KEYS
        for k in (*COUNT_KEYS, "n_images", *(f"n_defined_{s}" for s in SCORE_KEYS)):
            self.add_state(k, torch.tensor(0, dtype=torch.int64), dist_reduce_fx="sum")
        for s in SCORE_KEYS:
            self.add_state(f"sum_{s}", torch.tensor(0.0, dtype=torch.float64), dist_reduce_fx="sum")

    def update(self, pred, target) -> None:
        import math

        from .eval.delineation import delineation_counts, scores_from_counts

        per_image = delineation_counts(pred, target, self.tolerance, self.threshold,
                                       target_threshold=self.target_threshold, thin=self.thin)
        for c in per_image:
            for k in self._counts:
                setattr(self, k, getattr(self, k) + c[k])
            for s, v in scores_from_counts(c).items():
                if not math.isnan(v):
                    setattr(self, f"sum_{s}", getattr(self, f"sum_{s}") + v)
                    setattr(self, f"n_defined_{s}", getattr(self, f"n_defined_{s}") + 1)
        self.n_images += len(per_image)

    def compute(self) -> dict[str, Tensor]:
        from .eval.delineation import scores_from_counts

        totals = {k: int(getattr(self, k)) for k in self._counts}
        f64 = lambda v: torch.tensor(v, dtype=torch.float64)  # noqa: E731
        out = {k: f64(v) for k, v in scores_from_counts(totals).items()}
        for s in self._scores:
            n = int(getattr(self, f"n_defined_{s}"))
            out[f"mean_{s}"] = getattr(self, f"sum_{s}") / n if n else f64(float("nan"))
            out[f"n_defined_{s}"] = f64(n)
        out.update({k: f64(v) for k, v in totals.items()})
        out["n_images"] = f64(int(self.n_images))
        return out
