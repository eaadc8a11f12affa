"""Losses built on loss networks; each has a functional form and an ``nn.Module`` form.

Conventions: images are float tensors (N, 3, H, W) with values in [0, 1] (``input_range="[-1,1]"``
for decoders with a tanh output); feature maps are (N, C, H, W); feature vectors (N, D). Inputs are
validated once at the public entry point (:mod:`lossnet.checks`: one fused reduction per input,
skipped under ``torch.compile``; ``validate=False`` keeps only the free shape/dtype checks) and
every check raises one ``ValueError`` that says what was wrong.

Reductions: every loss takes ``reduction="mean" | "sum" | "none"``: ``"none"`` returns one value
per image, shape (N,) (the mean over that image's elements; :func:`perceptual_distance` is
per-image already); ``"mean"`` is the mean over all elements (= the mean of the ``"none"`` values);
``"sum"`` is the sum over all elements. Channel convention: squared feature differences are
*averaged* over channels (``F.mse_loss``), as the papers' "averaged" losses; piq's
``ContentLoss`` sums over channels instead, so its value is C times ours per layer.

=====================================  =====================================================
pixel loss (PW)                        :func:`pixel_loss` / :class:`PixelLoss` (mse, l1, bce)
deep perceptual similarity loss (PS)   :func:`perceptual_loss` / :class:`PerceptualLoss`
                                       (paper A Eq. 2, systematic analysis Eq. 6)
feature prediction loss (FP)           :func:`feature_prediction_loss` /
                                       :class:`FeaturePredictionLoss` (paper B Eq. 3)
feature reconstruction loss            :func:`feature_reconstruction_loss` /
                                       :class:`FeatureReconstructionLoss`
                                       (systematic analysis Eqs. 3 and 5, 1/(C H W) per layer)
LPIPS-style distance                   :func:`perceptual_distance` /
                                       :class:`PerceptualDistance` (systematic analysis Eq. 1)
VAE KL divergence                      :func:`kl_divergence` / :class:`KLDivergence`
=====================================  =====================================================
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .checks import check_images, check_input_range, check_pair, check_tensor, to_unit_range
from .zoo.network import LossNetwork

__all__ = ["REDUCTIONS", "FeaturePredictionLoss", "FeatureReconstructionLoss", "KLDivergence", "PerceptualDistance",
           "PerceptualLoss", "PixelLoss", "check_pair", "check_tensor", "feature_prediction_loss",
           "feature_reconstruction_loss", "kl_divergence", "perceptual_distance", "perceptual_loss", "pixel_loss",
           "unit_normalize"]

REDUCTIONS = ("mean", "sum", "none")


# --------------------------------------------------------------------------------------------
# Validation and reductions
# --------------------------------------------------------------------------------------------


def _check_images(x: torch.Tensor, name: str, input_range: str = "[0,1]", validate: bool = True) -> None:
    check_images(x, name, input_range=input_range, validate=validate)


def _check_reduction(reduction: str) -> None:
    if reduction not in REDUCTIONS:
        raise ValueError(f"reduction must be one of {REDUCTIONS}, got {reduction!r}")


def _reduce_elements(err: torch.Tensor, reduction: str) -> torch.Tensor:
    """Element-wise errors (N, ...) -> scalar mean / sum, or (N,) per-item means."""
    _check_reduction(reduction)
    if reduction == "mean":
        return err.mean()
    if reduction == "sum":
        return err.sum()
    return err.mean(tuple(range(1, err.ndim)))  # per item; no copy for channels-last maps


def _reduce(per_item: torch.Tensor, reduction: str) -> torch.Tensor:
    """Per-item values (N,) -> their mean / sum, or themselves for ``"none"``."""
    _check_reduction(reduction)
    if reduction == "mean":
        return per_item.mean()
    if reduction == "sum":
        return per_item.sum()
    return per_item


def _features(net, x: torch.Tensor) -> list[torch.Tensor]:
    """The loss network's features of already-checked images (no second input check)."""
    extract = getattr(net, "extract", None)
    return extract(x) if extract is not None else net(x)


def _needs_graph(*xs: torch.Tensor) -> bool:
    return torch.is_grad_enabled() and any(x.requires_grad for x in xs)


def _batched_features(net, x: torch.Tensor, y: torch.Tensor) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """Features of two checked, equally shaped batches from ONE trunk call on their concatenation
    (bigger matrix products, one pass of per-call overhead); returns views of the halves."""
    n = x.shape[0]
    feats = _features(net, torch.cat([x, y]))
    return [f[:n] for f in feats], [f[n:] for f in feats]


# --------------------------------------------------------------------------------------------
# Pixel loss (PW)
# --------------------------------------------------------------------------------------------

_PIXEL = {"mse": F.mse_loss, "l1": F.l1_loss, "bce": F.binary_cross_entropy}


def _pixel_kind(kind: str):
    if kind not in _PIXEL:
        raise ValueError(f"pixel loss kind must be 'mse', 'l1' or 'bce', got {kind!r}")
    return _PIXEL[kind]


def pixel_loss(x: torch.Tensor, target: torch.Tensor, kind: str = "mse", reduction: str = "mean", *,
               input_range: str = "[0,1]", validate: bool = True) -> torch.Tensor:
    """Pixel-wise loss (paper A Eq. 1) between images ``x`` and ``target`` (N, 3, H, W) in [0, 1].

    ``kind``: ``"mse"``, ``"l1"`` or ``"bce"`` (BCE needs [0, 1]). ``reduction`` as in the module
    docstring: a scalar (``"mean"``, ``"sum"``) or (N,) per-image means (``"none"``).
    """
    fn = _pixel_kind(kind)
    _check_reduction(reduction)
    _check_images(x, "x", input_range, validate)
    _check_images(target, "target", input_range, validate)
    check_pair(x, target, ("x", "target"))
    return _reduce_elements(fn(x, target, reduction="none"), reduction)


class PixelLoss(nn.Module):
    """Module form of :func:`pixel_loss`."""

    def __init__(self, kind: str = "mse", reduction: str = "mean", *, input_range: str = "[0,1]",
                 validate: bool = True) -> None:
        super().__init__()
        _pixel_kind(kind)  # validate options now
        _check_reduction(reduction)
        check_input_range(input_range)
        self.kind, self.reduction, self.input_range, self.validate = kind, reduction, input_range, validate

    def forward(self, x: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return pixel_loss(x, target, self.kind, self.reduction, input_range=self.input_range, validate=self.validate)


# --------------------------------------------------------------------------------------------
# Deep perceptual similarity loss (PS) and feature prediction loss (FP)
# --------------------------------------------------------------------------------------------


def _feature_mse(a: Sequence[torch.Tensor], b: Sequence[torch.Tensor], reduction: str) -> torch.Tensor:
    if reduction != "none":  # F.mse_loss: one fused pass forward and backward
        return sum(F.mse_loss(fa, fb, reduction=reduction) for fa, fb in zip(a, b))
    return sum(_reduce_elements((fa - fb).square(), reduction) for fa, fb in zip(a, b))


def perceptual_loss(loss_net: LossNetwork, x: torch.Tensor, target: torch.Tensor | None = None, *,
                    target_features: Sequence[torch.Tensor] | torch.Tensor | None = None,
                    reduction: str = "mean", input_range: str = "[0,1]", validate: bool = True) -> torch.Tensor:
    """Deep perceptual similarity loss: squared error between loss-network features.

    ``sum_k (p(target)_k - p(x)_k)^2`` over all extracted features (paper A Eq. 2 with f = squared
    error; systematic analysis Eq. 6), averaged instead of summed when ``reduction="mean"``, and
    summed over layers when the loss network has several (``"none"``: (N,) per-image values).

    Args:
        loss_net: a :class:`~lossnet.zoo.LossNetwork`.
        x: reconstructions (N, 3, H, W) in [0, 1] (or ``input_range``); gradients flow into it.
        target: the original images, same layout, or None when ``target_features`` is given.
        target_features: the loss network's features of the targets, e.g. from the teacher-feature
            cache (a tensor for a single layer or a list, one per layer).
    """
    _check_reduction(reduction)
    _check_images(x, "x", input_range, validate)
    if target_features is None:
        if target is None:
            raise ValueError("give either target images or target_features")
        _check_images(target, "target", input_range, validate)
        check_pair(x, target, ("x", "target"))
        x, target = to_unit_range(x, input_range), to_unit_range(target, input_range)
        if not _needs_graph(x, target):  # e.g. evaluation: one batched trunk call
            feats, target_features = _batched_features(loss_net, x, target)
        else:
            with torch.no_grad():
                target_features = _features(loss_net, target)
            feats = _features(loss_net, x)
    else:
        if isinstance(target_features, torch.Tensor):
            target_features = [target_features]
        feats = _features(loss_net, to_unit_range(x, input_range))
    if len(feats) != len(target_features):
        raise ValueError(f"loss network returns {len(feats)} layers but {len(target_features)} target feature maps were given")
    targets = []
    for f, t in zip(feats, target_features):
        t = t.to(f.dtype)
        if t.shape != f.shape and t.numel() == f.numel():  # flattened cache entries
            t = t.view_as(f)
        check_pair(f, t, ("features of x", "target_features"))
        targets.append(t)
    return _feature_mse(feats, targets, reduction)


class PerceptualLoss(nn.Module):
    """Module form of :func:`perceptual_loss`; ``forward(x, target=None, target_features=None)``.

    Build it from a :class:`LossNetwork` or from the arguments of one, e.g.
    ``PerceptualLoss("paper")`` (AlexNet up to the 2nd ReLU with a sigmoid).
    """

    def __init__(self, loss_net: LossNetwork | str = "paper", layers=None, reduction: str = "mean", *,
                 input_range: str = "[0,1]", validate: bool = True, **kwargs) -> None:
        super().__init__()
        if isinstance(loss_net, str):
            loss_net = LossNetwork(loss_net, **({"layers": layers} if layers is not None else {}), **kwargs)
        _check_reduction(reduction)
        check_input_range(input_range)
        self.loss_net, self.reduction, self.input_range, self.validate = loss_net, reduction, input_range, validate

    def forward(self, x, target=None, target_features=None):
        return perceptual_loss(self.loss_net, x, target, target_features=target_features, reduction=self.reduction,
                               input_range=self.input_range, validate=self.validate)


def feature_prediction_loss(pred: torch.Tensor, target_features: torch.Tensor, reduction: str = "mean", *,
                            validate: bool = True) -> torch.Tensor:
    """Feature prediction loss (paper B Eq. 3): squared error between a predicted feature vector
    and the loss network's features of the input image.

    Args:
        pred: (N, D) predicted features, e.g. from a feature decoder.
        target_features: (N, D) or (N, C, H, W) with C*H*W = D, the loss network's features of the
            input (typically read from the teacher-feature cache); flattened in C, H, W order.
        reduction: ``"mean"`` over all N*D elements, ``"sum"``, or ``"none"`` ((N,) per-item means).
    """
    _check_reduction(reduction)
    check_tensor(pred, "pred", ndim=2, validate=validate)
    check_tensor(target_features, "target_features", ndim=(2, 4), validate=validate)
    target = target_features.reshape(target_features.shape[0], -1)
    check_pair(pred, target, ("pred", "target_features (flattened)"))
    return _reduce_elements((pred - target.to(pred.dtype)).pow(2), reduction)


class FeaturePredictionLoss(nn.Module):
    """Module form of :func:`feature_prediction_loss`."""

    def __init__(self, reduction: str = "mean", *, validate: bool = True) -> None:
        super().__init__()
        _check_reduction(reduction)
        self.reduction, self.validate = reduction, validate

    def forward(self, pred: torch.Tensor, target_features: torch.Tensor) -> torch.Tensor:
        return feature_prediction_loss(pred, target_features, self.reduction, validate=self.validate)


# --------------------------------------------------------------------------------------------
# Multi-layer feature reconstruction loss (systematic analysis Eqs. 3 and 5)
# --------------------------------------------------------------------------------------------


def feature_reconstruction_loss(feats_x: Sequence[torch.Tensor], feats_target: Sequence[torch.Tensor],
                                weights: Sequence[float] | None = None, reduction: str = "mean", *,
                                validate: bool = True) -> torch.Tensor:
    """``sum_n w_n ||phi_n(x) - phi_n(target)||_2^2 / (C_n H_n W_n)``, averaged over the batch.

    Systematic analysis Eq. 3 (one layer, Johnson et al.) and Eq. 5 (several layers, topology
    loss). Each item of ``feats_*`` is (N, C_n, H_n, W_n); ``weights`` default to 1 per layer.
    ``reduction``: ``"mean"`` over the batch (the paper's), ``"sum"`` over it, ``"none"``: (N,).
    """
    _check_reduction(reduction)
    if len(feats_x) != len(feats_target) or not feats_x:
        raise ValueError(f"need the same non-zero number of layers, got {len(feats_x)} and {len(feats_target)}")
    if weights is None:
        weights = [1.0] * len(feats_x)
    if len(weights) != len(feats_x):
        raise ValueError(f"{len(weights)} weights for {len(feats_x)} layers")
    total = 0.0
    for i, (a, b) in enumerate(zip(feats_x, feats_target)):
        check_tensor(a, f"feats_x[{i}]", ndim=4, validate=validate)
        check_tensor(b, f"feats_target[{i}]", ndim=4, validate=validate)
        check_pair(a, b, (f"feats_x[{i}]", f"feats_target[{i}]"))
        total = total + weights[i] * (a - b).pow(2).flatten(1).mean(1)
    return _reduce(total, reduction)


class FeatureReconstructionLoss(nn.Module):
    """Eqs. 3/5 with a loss network: ``forward(x, target)`` on [0, 1] images (N, C, H, W).

    Single-channel inputs (segmentation maps) are repeated to 3 channels, as in the topology loss.
    """

    def __init__(self, loss_net: LossNetwork, weights: Sequence[float] | None = None, reduction: str = "mean", *,
                 validate: bool = True) -> None:
        super().__init__()
        _check_reduction(reduction)
        self.loss_net, self.weights, self.reduction, self.validate = loss_net, weights, reduction, validate

    def forward(self, x: torch.Tensor, target: torch.Tensor,
                target_features: Sequence[torch.Tensor] | None = None) -> torch.Tensor:
        """``target_features``: the loss network's features of ``target`` when already computed
        (e.g. cached once for fixed training targets); then ``target`` is only checked."""
        if x.ndim == 4 and x.shape[1] == 1:
            x, target = x.expand(-1, 3, -1, -1), target.expand(-1, 3, -1, -1)
        _check_images(x, "x", validate=self.validate)
        _check_images(target, "target", validate=self.validate)
        check_pair(x, target, ("x", "target"))
        if target_features is None and not _needs_graph(x, target):
            feats, target_features = _batched_features(self.loss_net, x, target)
        else:
            if target_features is None:
                with torch.no_grad():
                    target_features = _features(self.loss_net, target)
            feats = _features(self.loss_net, x)
        return feature_reconstruction_loss(feats, list(target_features), self.weights, self.reduction,
                                           validate=self.validate)


# --------------------------------------------------------------------------------------------
# LPIPS-style perceptual distance (systematic analysis Eq. 1)
# --------------------------------------------------------------------------------------------


_EPS = 1e-10


def unit_normalize(f: torch.Tensor, eps: float = _EPS) -> torch.Tensor:
    """Channel-wise unit normalisation of (N, C, H, W) features, as the lpips package does."""
    return f / (torch.linalg.vector_norm(f, dim=1, keepdim=True) + eps)


def _lpips_head(a: torch.Tensor, b: torch.Tensor, w: torch.Tensor, keep_diff: bool):
    """Per-pixel ``sum_c w_c (a_c / (|a| + eps) - b_c / (|b| + eps))^2`` of (N, C, H, W) features
    a, b and (C,) weights w -> (N, H, W), and (diff or None, |a| + eps, |b| + eps).

    Four passes over a feature map: the two norms, ``a / |a|`` with the second division and the
    subtraction fused into it (``addcdiv_``), the square (in place unless ``keep_diff``); the
    weighted channel sum is a matrix-vector product over the contiguous channel axis of
    channels-last maps (a 1x1 convolution otherwise).
    """
    na = torch.linalg.vector_norm(a, dim=1, keepdim=True).add_(_EPS)
    nb = torch.linalg.vector_norm(b, dim=1, keepdim=True).add_(_EPS)
    diff = torch.div(a, na).addcdiv_(b, nb, value=-1)
    sq = diff.square() if keep_diff else diff.square_()
    if sq.is_contiguous(memory_format=torch.channels_last):
        per_pixel = torch.matmul(sq.permute(0, 2, 3, 1), w)
    else:
        per_pixel = F.conv2d(sq, w.reshape(1, -1, 1, 1))[:, 0]
    return per_pixel, (diff if keep_diff else None), na, nb


class _LPIPSLayer(torch.autograd.Function):
    """:func:`_lpips_head` ``(a, b, w)`` with a hand-written backward (for the graph-building case).

    The backward needs five passes over a (N, C, H, W) map per input instead of autograd's ~15
    through the divisions, the norms, the square and the weighted sum. Gradient
    (z = a / (|a| + eps), g = dL/dz = 2 w (z - z_b) * upstream):
    ``dL/da = (g - a (g . a) / (|a| (|a| + eps))) / (|a| + eps)``, the second term 0 where
    |a| = 0 (as autograd's norm gradient there); dL/db likewise with -g.
    """

    @staticmethod
    def forward(a: torch.Tensor, b: torch.Tensor, w: torch.Tensor):
        return _lpips_head(a, b, w, keep_diff=True)

    @staticmethod
    def setup_context(ctx, inputs, output):
        a, b, w = inputs
        _, diff, na, nb = output
        ctx.save_for_backward(a if ctx.needs_input_grad[0] else None, b if ctx.needs_input_grad[1] else None,
                              w, diff, na, nb)
        ctx.mark_non_differentiable(diff, na, nb)

    @staticmethod
    def backward(ctx, go, *_):
        a, b, w, diff, na, nb = ctx.saved_tensors
        g = diff * (2 * go[:, None]) * w.reshape(1, -1, 1, 1)  # dL/dz_a; dL/dz_b = -g
        out = []
        for x, n, sign in ((a, na, 1.0), (b, nb, -1.0)):
            if x is None:
                out.append(None)
                continue
            n0 = n - _EPS  # |x|
            coef = torch.where(n0 > 0, torch.linalg.vecdot(g, x, dim=1).unsqueeze(1) / (n0 * n), 0.0)
            out.append(torch.addcmul(g, x, coef, value=-1).div_(n * sign))
        gw = (diff.square() * go[:, None]).sum((0, 2, 3)) if ctx.needs_input_grad[2] else None
        return out[0], out[1], gw


def perceptual_distance(feats0: Sequence[torch.Tensor], feats1: Sequence[torch.Tensor],
                        channel_weights: Sequence[torch.Tensor] | None = None, *,
                        spatial_size: tuple[int, int] | None = None) -> torch.Tensor:
    """Per-image distance ``d = sum_n mean_hw( w_n . (z_n - z0_n)^2 )`` (systematic analysis Eq. 1).

    ``z`` are channel-wise unit-normalised features (N, C_n, H_n, W_n). ``channel_weights[n]`` has
    C_n non-negative entries (LPIPS' linear layers); uniform weights (all ones: a plain channel
    sum) when None. Returns a tensor of shape (N,); with ``spatial_size=(H, W)`` instead the map
    (N, 1, H, W): each layer's per-pixel distance upsampled bilinearly to (H, W) and summed, as the
    ``lpips`` package's ``spatial=True``.
    """
    if len(feats0) != len(feats1) or not feats0:
        raise ValueError(f"need the same non-zero number of layers, got {len(feats0)} and {len(feats1)}")
    if channel_weights is not None and len(channel_weights) != len(feats0):
        raise ValueError(f"{len(channel_weights)} channel-weight vectors for {len(feats0)} layers")
    d = 0.0
    for i, (a, b) in enumerate(zip(feats0, feats1)):
        check_pair(a, b, (f"feats0[{i}]", f"feats1[{i}]"))
        if channel_weights is None:
            w = a.new_ones(a.shape[1])
        else:
            w = channel_weights[i].to(a).flatten()
            if w.numel() != a.shape[1]:
                raise ValueError(f"layer {i}: {w.numel()} channel weights for {a.shape[1]} channels")
        if _needs_graph(a, b, w):
            per_pixel = _LPIPSLayer.apply(a, b, w)[0]
        else:
            per_pixel = _lpips_head(a, b, w, keep_diff=False)[0]
        if spatial_size is None:
            d = d + per_pixel.mean((1, 2))
        else:
            d = d + F.interpolate(per_pixel[:, None], size=tuple(spatial_size), mode="bilinear", align_corners=False)
    return d


# The five ReLU layers LPIPS uses (torchvision child indices of ``features``).
LPIPS_LAYERS = {"alexnet": (1, 4, 7, 9, 11), "vgg16": (3, 8, 15, 22, 29)}


class PerceptualDistance(nn.Module):
    """LPIPS-style distance with any loss network.

    Args:
        arch: registered architecture, or a :class:`LossNetwork` (then ``layers`` is ignored).
        layers: extraction layers; default: LPIPS' five ReLUs for alexnet/vgg16, else ``["L"]``.
        lpips_weights: load LPIPS v0.1's linear channel weights (alexnet, vgg16 only); otherwise
            uniform weights.
        weights: loss-network weights, as for :class:`LossNetwork`.
        normalize: input normalisation; ``"lpips"`` (default with lpips_weights) reproduces the
            lpips package exactly, ``"imagenet"`` otherwise.
        reduction: ``"none"`` (default: (N,) distances), ``"mean"`` or ``"sum"`` over the batch.
        spatial: return the distance map (N, 1, H, W) at the input size instead (``reduction``
            must then be ``"none"``), as ``lpips.LPIPS(spatial=True)``.
        input_range: ``"[0,1]"`` (default) or ``"[-1,1]"`` (the lpips package's convention).
        validate: value checks of the inputs (see :mod:`lossnet.checks`).

    ``forward(x0, x1)`` takes two batches of images (N, 3, H, W). When only one of them needs a
    gradient, the other's features are computed under ``torch.no_grad`` (no graph is kept for
    them); otherwise both go through the trunk in one batched call.
    """

    def __init__(self, arch: str | LossNetwork = "alexnet", layers=None, lpips_weights: bool = False,
                 weights="imagenet", normalize: str | None = None, *, reduction: str = "none", spatial: bool = False,
                 input_range: str = "[0,1]", validate: bool = True) -> None:
        super().__init__()
        _check_reduction(reduction)
        check_input_range(input_range)
        if spatial and reduction != "none":
            raise ValueError("spatial=True returns one map per image: use reduction='none'")
        self.reduction, self.spatial, self.input_range, self.validate = reduction, spatial, input_range, validate
        if isinstance(arch, LossNetwork):
            self.net = arch
            name = arch.arch
        else:
            name = arch
            if layers is None:
                layers = list(LPIPS_LAYERS.get(arch, ("L",)))
            if normalize is None:
                normalize = "lpips" if lpips_weights else "imagenet"
            self.net = LossNetwork(arch, layers=layers, weights=weights, normalize=normalize)
        self.channel_weights = None
        if lpips_weights:
            from .zoo.weights import load_lpips_linear

            lin = load_lpips_linear(name)
            ws = [lin[f"lin.{k}.weight"].flatten() for k in range(len(lin))]
            if len(ws) != len(self.net.nodes):
                raise ValueError(f"LPIPS weights have {len(ws)} layers, the loss network returns {len(self.net.nodes)}")
            for k, w in enumerate(ws):
                self.register_buffer(f"lin{k}", w, persistent=False)
            self.channel_weights = len(ws)

    def _feats(self, x: torch.Tensor) -> list[torch.Tensor]:
        if _needs_graph(x):
            return _features(self.net, x)
        with torch.no_grad():
            return _features(self.net, x)

    def forward(self, x0: torch.Tensor, x1: torch.Tensor) -> torch.Tensor:
        _check_images(x0, "x0", self.input_range, self.validate)
        _check_images(x1, "x1", self.input_range, self.validate)
        check_pair(x0, x1, ("x0", "x1"))
        a, b = to_unit_range(x0, self.input_range), to_unit_range(x1, self.input_range)
        if _needs_graph(a) != _needs_graph(b):  # a graph for one input only (training): two trunk calls
            f0, f1 = self._feats(a), self._feats(b)
        else:
            f0, f1 = _batched_features(self.net, a, b)
        cw = None if self.channel_weights is None else [getattr(self, f"lin{k}") for k in range(self.channel_weights)]
        d = perceptual_distance(f0, f1, cw, spatial_size=tuple(x0.shape[2:]) if self.spatial else None)
        return d if self.spatial else _reduce(d, self.reduction)


# --------------------------------------------------------------------------------------------
# KL divergence
# --------------------------------------------------------------------------------------------


def kl_divergence(mu: torch.Tensor, logvar: torch.Tensor, reduction: str = "mean", *,
                  validate: bool = True) -> torch.Tensor:
    """KL(N(mu, exp(logvar)) || N(0, I)) per latent dimension, ``-0.5 (1 + logvar - mu^2 - exp(logvar))``.

    ``reduction="mean"`` averages over batch and latent dimensions (the papers' "averaged over
    dimensions", to be weighted by gamma); ``"sum"`` sums over dimensions and averages over the batch;
    ``"none"``: (N,) per-item means over dimensions.
    Inputs: (N, Z) each.
    """
    _check_reduction(reduction)
    check_tensor(mu, "mu", ndim=2, validate=validate)
    check_tensor(logvar, "logvar", ndim=2, validate=validate)
    check_pair(mu, logvar, ("mu", "logvar"))
    kl = -0.5 * (1 + logvar - mu.pow(2) - logvar.exp())
    if reduction == "mean":
        return kl.mean()
    if reduction == "sum":
        return kl.sum(1).mean()
    return kl.mean(1)


class KLDivergence(nn.Module):
    """Module form of :func:`kl_divergence`."""

    def __init__(self, reduction: str = "mean") -> None:
        super().__init__()
        _check_reduction(reduction)
        self.reduction = reduction

    def forward(self, mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
        return kl_divergence(mu, logvar, self.reduction)
