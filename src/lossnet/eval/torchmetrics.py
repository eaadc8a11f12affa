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

The frozen loss network of the two perceptual metrics is not a registered submodule (the
losses' :class:`~lossnet.losses.FrozenNetHolder`): it is not in the metric's ``state_dict`` (a
checkpoint of a model holding the metric stays small), it takes no gradients, stays in eval
mode, follows ``.to(device)`` of the metric and moves to the inputs' device on ``update`` if
needed. Dtypes as torchmetrics documents: ``.double()`` / ``.float()`` / ``.half()`` change
nothing (the metric returns itself); ``set_dtype(torch.float64)`` casts the states and the
network. Inputs of any float dtype are cast to the network's. Images are float (N, 3, H, W) in
[0, 1] (``input_range="[-1,1]"``, or torchmetrics' ``normalize=False``, for [-1, 1]).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn
from torchmetrics import Metric

from ..checks import check_input_range
from ..errors import ConfigError
from ..losses import FrozenNetHolder, PerceptualDistance, _check_images, as_loss_network, check_pair
from ..utils import module_device

__all__ = ["PerceptualDistanceMetric", "DeepPerceptualSimilarity", "SuperResolutionScores", "SRPSNR", "SRSSIM",
           "DelineationScores"]


class _FrozenNetMetric(FrozenNetHolder, Metric):
    """A Metric holding a frozen network outside its module tree (not in ``state_dict``;
    :class:`lossnet.losses.FrozenNetHolder`, as the losses hold theirs)."""

    is_differentiable = False
    full_state_update = False

    def _set_net(self, net: nn.Module) -> None:
        self._hold(net)

    @property
    def net(self) -> nn.Module:
        """The frozen network (not part of the state dict)."""
        return self._frozen

    def _follow(self, x: Tensor) -> None:
        if module_device(self._frozen) != x.device:  # sees through a distance's held network
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


def _input_range(normalize: Any, input_range: str | None, owner: str) -> tuple[Any, str]:
    """torchmetrics' boolean ``normalize`` (True: [0, 1] input, False: [-1, 1]) as lossnet's
    ``input_range``; a string ``normalize`` stays the network's input normalisation."""
    if not isinstance(normalize, bool):
        check_input_range(input_range or "[0,1]")
        return normalize, input_range or "[0,1]"
    implied = "[0,1]" if normalize else "[-1,1]"
    if input_range is not None and input_range.replace(" ", "") != implied:
        raise ConfigError(f"{owner}: normalize={normalize} (torchmetrics' flag) means input_range={implied!r}, "
                          f"which contradicts input_range={input_range!r}; give only input_range")
    return None, implied


class PerceptualDistanceMetric(_FrozenNetMetric):
    """Mean LPIPS (or LPIPS-style distance, systematic analysis Eq. 1) between pairs of images.

    Args are those of :class:`lossnet.losses.PerceptualDistance`: ``arch`` (registered name, lpips
    name ``"alex"`` / ``"vgg"`` / ``"squeeze"``, or a :class:`~lossnet.zoo.LossNetwork`),
    ``layers``, ``lpips_weights``, ``weights``, ``weighting`` (default ``"lpips"`` for alexnet,
    vgg16 and squeezenet1_1: then this is LPIPS v0.1 itself, as torchmetrics'
    ``LearnedPerceptualImagePatchSimilarity``; ``"uniform"`` for the plain channel sum) and
    ``input_range`` (``"[0,1]"`` default, or ``"[-1,1]"``). As in torchmetrics, ``net_type`` names
    the network and ``normalize=True`` / ``False`` means [0, 1] / [-1, 1] input (a string
    ``normalize`` is the network's input normalisation, as on the losses). ``reduction``:
    ``"mean"`` (default) or ``"sum"`` over all images. ``**kwargs`` go to ``Metric``.

    ``update(x0, x1)``: float (N, 3, H, W), N >= 1, each. ``compute()``: the mean (or sum) of the
    per-image distances (>= 0, 0 for identical images), a float64 scalar.
    """

    higher_is_better = False

    def __init__(self, arch: Any = "alexnet", layers=None, lpips_weights: bool | None = None,
                 weights: Any = "imagenet", normalize: Any = None, *, weighting: str | None = None,
                 input_range: str | None = None, net_type: str | None = None, reduction: str = "mean",
                 **kwargs) -> None:
        super().__init__(**kwargs)
        if net_type is not None:
            if arch != "alexnet" and arch != net_type:
                raise ConfigError(f"net_type={net_type!r} (torchmetrics' name) and arch={arch!r} disagree; give one")
            arch = net_type
        if reduction not in ("mean", "sum"):
            raise ConfigError(f"reduction must be 'mean' or 'sum', got {reduction!r}")
        normalize, input_range = _input_range(normalize, input_range, "PerceptualDistanceMetric")
        self.reduction = reduction
        self._set_net(PerceptualDistance(arch, layers=layers, lpips_weights=lpips_weights, weights=weights,
                                         normalize=normalize, weighting=weighting, input_range=input_range))
        self._add_mean_states()

    def update(self, x0: Tensor, x1: Tensor) -> None:
        self._follow(x0)
        with torch.no_grad():
            self._accumulate(self._frozen(x0, x1))

    def compute(self) -> Tensor:
        """The mean (``reduction="mean"``; NaN before any update) or sum of the per-image distances."""
        return self.total.clone() if self.reduction == "sum" else super().compute()

    def extra_repr(self) -> str:
        return f"{self.net.extra_repr()}, metric reduction={self.reduction}"


class DeepPerceptualSimilarity(_FrozenNetMetric):
    """Mean deep perceptual similarity loss (paper A Eq. 2, systematic analysis Eq. 6).

    Args:
        loss_net: a :class:`~lossnet.zoo.LossNetwork` (any layers, with or without sigmoid; your
            own network: :meth:`LossNetwork.from_module`), or an architecture name, then
            ``**net_kwargs`` (``layers``, ``weights``, ``sigmoid``, ...) build one (``layers``
            default ``["M"]``).
        input_range: ``"[0,1]"`` (default) or ``"[-1,1]"``; torchmetrics' ``normalize=True`` /
            ``False`` means the same.
        metric_kwargs: passed to ``torchmetrics.Metric``.

    ``update(x, target)``: float (N, 3, H, W), N >= 1. Per image ``sum_l mean_(c,h,w)
    (p_l(target) - p_l(x))^2`` (summed over the network's layers); ``compute()`` is the mean over
    images -- on equally sized images exactly ``perceptual_loss(loss_net, X, T)`` (reduction
    "mean") of all images at once.
    """

    higher_is_better = False

    def __init__(self, loss_net: Any = "alexnet", *, input_range: str | None = None, normalize: Any = None,
                 metric_kwargs: dict | None = None, **net_kwargs) -> None:
        super().__init__(**(metric_kwargs or {}))
        if normalize is not None:
            if not isinstance(normalize, bool):  # a network normalisation: one of the network's arguments
                net_kwargs["normalize"] = normalize
            else:
                input_range = _input_range(normalize, input_range, "DeepPerceptualSimilarity")[1]
        self.input_range = input_range or "[0,1]"
        check_input_range(self.input_range)
        if isinstance(loss_net, str):
            net_kwargs.setdefault("layers", ["M"])
        self._set_net(as_loss_network(loss_net, "DeepPerceptualSimilarity", **net_kwargs))
        self._add_mean_states()

    def update(self, x: Tensor, target: Tensor) -> None:
        from ..checks import to_unit_range

        _check_images(x, "x", self.input_range)
        _check_images(target, "target", self.input_range)
        check_pair(x, target, ("x", "target"))
        x, target = to_unit_range(x, self.input_range), to_unit_range(target, self.input_range)
        self._follow(x)
        with torch.no_grad():
            fx, ft = self._frozen.extract(x), self._frozen.extract(target)
            per = sum((a - b).pow(2).flatten(1).mean(1) for a, b in zip(fx, ft))
        self._accumulate(per)

    def extra_repr(self) -> str:
        return (f"net={self.net.describe_short()}, weighting=mean squared error (channel mean), "
                f"input_range={self.input_range}")


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
        from .sr import psnr_ssim

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
        from .delineation import COUNT_KEYS, SCORE_KEYS

        self.tolerance, self.threshold, self.target_threshold, self.thin = tolerance, threshold, target_threshold, thin
        self._counts, self._scores = COUNT_KEYS, SCORE_KEYS
        for k in (*COUNT_KEYS, "n_images", *(f"n_defined_{s}" for s in SCORE_KEYS)):
            self.add_state(k, torch.tensor(0, dtype=torch.int64), dist_reduce_fx="sum")
        for s in SCORE_KEYS:
            self.add_state(f"sum_{s}", torch.tensor(0.0, dtype=torch.float64), dist_reduce_fx="sum")

    def update(self, pred, target) -> None:
        import math

        from .delineation import delineation_counts, scores_from_counts

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
        from .delineation import scores_from_counts

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
