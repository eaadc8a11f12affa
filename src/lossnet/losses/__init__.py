"""Losses built on loss networks; each has a functional form and an ``nn.Module`` form.

Conventions: images are float tensors (N, 3, H, W) with values in [0, 1] (``input_range="[-1,1]"``
for decoders with a tanh output); feature maps are (N, C, H, W); feature vectors (N, D). Inputs are
validated once at the public entry point (:mod:`lossnet.checks`: one fused reduction per input,
skipped under ``torch.compile``; ``validate=False`` keeps only the free shape/dtype checks) and
every check raises one ``ValueError`` that says what was wrong. Bad options (``kind``,
``reduction``, ``input_range``, ``weighting`` ...) are a :class:`~lossnet.errors.ConfigError` (a
``ValueError`` too), raised by the module form when it is built and by the functional form on call.

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
LPIPS (default) / LPIPS-style distance :func:`perceptual_distance` /
                                       :class:`PerceptualDistance` (systematic analysis Eq. 1;
                                       :mod:`lossnet.losses.distance`)
VAE KL divergence                      :func:`kl_divergence` / :class:`KLDivergence`
=====================================  =====================================================

Every loss that uses a network takes a :class:`~lossnet.zoo.LossNetwork` or a zoo name (your own
network: :meth:`LossNetwork.from_module`) and holds it outside its state dict
(:class:`FrozenNetHolder`); ``repr`` names the network, its layers and the weighting.
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ..checks import check_input_range, check_pair, check_tensor, to_unit_range
from ..errors import ConfigError
from ..zoo.network import LossNetwork
from ._common import REDUCTIONS, FrozenNetHolder, _batched_features, _check_images, _check_reduction, _features, \
    _needs_graph, _reduce, _reduce_elements, as_loss_network
from .distance import LPIPS_LAYERS, WEIGHTINGS, PerceptualDistance, _lpips_head, _LPIPSLayer, \
    load_lpips_channel_weights, perceptual_distance, unit_normalize

__all__ = ["LPIPS_LAYERS", "REDUCTIONS", "WEIGHTINGS", "FeaturePredictionLoss", "FeatureReconstructionLoss",
           "FrozenNetHolder", "KLDivergence", "PerceptualDistance", "PerceptualLoss", "PixelLoss", "as_loss_network",
           "check_pair", "check_tensor", "feature_prediction_loss", "feature_reconstruction_loss", "kl_divergence",
           "load_lpips_channel_weights", "perceptual_distance", "perceptual_loss", "pixel_loss", "unit_normalize"]


# --------------------------------------------------------------------------------------------
# Pixel loss (PW)
# --------------------------------------------------------------------------------------------

_PIXEL = {"mse": F.mse_loss, "l1": F.l1_loss, "bce": F.binary_cross_entropy}


def _pixel_kind(kind: str):
    if kind not in _PIXEL:
        raise ConfigError(f"pixel loss kind must be one of {tuple(_PIXEL)}, got {kind!r}")
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

    def extra_repr(self) -> str:
        return f"kind={self.kind}, reduction={self.reduction}, input_range={self.input_range}"

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
        loss_net: a :class:`~lossnet.zoo.LossNetwork` (your own network:
            :meth:`LossNetwork.from_module`), or the training engine's ``Frozen`` wrapper of one.
        x: reconstructions (N, 3, H, W) in [0, 1] (or ``input_range``); gradients flow into it.
        target: the original images, same layout, or None when ``target_features`` is given.
        target_features: the loss network's features of the targets, e.g. from the teacher-feature
            cache (a tensor for a single layer or a list, one per layer).
    """
    _check_reduction(reduction)
    _check_loss_net(loss_net, "perceptual_loss")
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


def _check_loss_net(loss_net, owner: str) -> None:
    """A LossNetwork, or a wrapper whose ``.net`` is one (the engine's ``Frozen``); else ConfigError."""
    if not isinstance(loss_net, LossNetwork) and not isinstance(getattr(loss_net, "net", None), LossNetwork):
        as_loss_network(loss_net, owner)  # raises the one error naming LossNetwork.from_module


class PerceptualLoss(FrozenNetHolder, nn.Module):
    """Module form of :func:`perceptual_loss`; ``forward(x, target=None, target_features=None)``.

    Build it from a :class:`LossNetwork` (your own network: :meth:`LossNetwork.from_module`) or
    from the arguments of one, e.g. ``PerceptualLoss("paper")`` (AlexNet up to the 2nd ReLU with a
    sigmoid) or ``PerceptualLoss("vgg16", layers=["relu3_3"])``. The frozen network is held
    outside the module tree (:class:`FrozenNetHolder`): not in ``state_dict`` or ``parameters()``.
    """

    def __init__(self, loss_net: LossNetwork | str = "paper", layers=None, reduction: str = "mean", *,
                 input_range: str = "[0,1]", validate: bool = True, **kwargs) -> None:
        super().__init__()
        _check_reduction(reduction)
        check_input_range(input_range)
        self._hold(as_loss_network(loss_net, "PerceptualLoss", layers=layers, **kwargs), "loss_net")
        self.reduction, self.input_range, self.validate = reduction, input_range, validate

    @property
    def loss_net(self) -> LossNetwork:
        """The frozen loss network (not part of the state dict)."""
        return self._frozen

    def extra_repr(self) -> str:
        return (f"net={self.loss_net.describe_short()}, weighting=mean squared error (channel mean), "
                f"reduction={self.reduction}, input_range={self.input_range}")

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

    def extra_repr(self) -> str:
        return f"squared error (element mean), reduction={self.reduction}"

    def forward(self, pred: torch.Tensor, target_features: torch.Tensor) -> torch.Tensor:
        return feature_prediction_loss(pred, target_features, self.reduction, validate=self.validate)


# --------------------------------------------------------------------------------------------
# Multi-layer feature reconstruction loss (systematic analysis Eqs. 3 and 5)
# --------------------------------------------------------------------------------------------


def feature_reconstruction_loss(feats_x: Sequence[torch.Tensor], feats_target: Sequence[torch.Tensor],
                                layer_weights: Sequence[float] | None = None, reduction: str = "mean", *,
                                validate: bool = True) -> torch.Tensor:
    """``sum_n w_n ||phi_n(x) - phi_n(target)||_2^2 / (C_n H_n W_n)``, averaged over the batch.

    Systematic analysis Eq. 3 (one layer, Johnson et al.) and Eq. 5 (several layers, topology
    loss). Each item of ``feats_*`` is (N, C_n, H_n, W_n); ``layer_weights`` (the w_n) default to 1
    per layer.
    ``reduction``: ``"mean"`` over the batch (the paper's), ``"sum"`` over it, ``"none"``: (N,).
    """
    _check_reduction(reduction)
    if len(feats_x) != len(feats_target) or not feats_x:
        raise ValueError(f"need the same non-zero number of layers, got {len(feats_x)} and {len(feats_target)}")
    if layer_weights is None:
        layer_weights = [1.0] * len(feats_x)
    if len(layer_weights) != len(feats_x):
        raise ValueError(f"{len(layer_weights)} layer_weights for {len(feats_x)} layers")
    total = 0.0
    for i, (a, b) in enumerate(zip(feats_x, feats_target)):
        check_tensor(a, f"feats_x[{i}]", ndim=4, validate=validate)
        check_tensor(b, f"feats_target[{i}]", ndim=4, validate=validate)
        check_pair(a, b, (f"feats_x[{i}]", f"feats_target[{i}]"))
        total = total + layer_weights[i] * (a - b).pow(2).flatten(1).mean(1)
    return _reduce(total, reduction)


class FeatureReconstructionLoss(FrozenNetHolder, nn.Module):
    """Eqs. 3/5 with a loss network: ``forward(x, target)`` on [0, 1] images (N, C, H, W).

    ``loss_net``: a :class:`LossNetwork` (or a name, then ``**net_kwargs`` build it; or the
    engine's ``Frozen`` wrapper of one), held outside the state dict like :class:`PerceptualLoss`'s.
    Single-channel inputs (segmentation maps) are repeated to 3 channels, as in the topology loss.
    ``layer_weights``: one w_n per layer of the loss network (default 1 each); ``weights=`` in
    ``net_kwargs`` are the loss network's own (``"imagenet"``, ``"random"``, a state dict).
    """

    def __init__(self, loss_net: LossNetwork | str, layer_weights: Sequence[float] | None = None,
                 reduction: str = "mean", *, validate: bool = True, **net_kwargs) -> None:
        super().__init__()
        _check_reduction(reduction)
        if isinstance(getattr(loss_net, "net", None), LossNetwork) and not isinstance(loss_net, LossNetwork):
            loss_net = loss_net.net  # the engine's Frozen wrapper: the holder moves and freezes it itself
        self._hold(as_loss_network(loss_net, "FeatureReconstructionLoss", **net_kwargs), "loss_net")
        self.layer_weights, self.reduction, self.validate = layer_weights, reduction, validate
        if layer_weights is not None and len(layer_weights) != len(self.loss_net.nodes):
            raise ConfigError(f"{len(layer_weights)} layer_weights for a loss network with {len(self.loss_net.nodes)} "
                              "layers: give one per layer")

    @property
    def loss_net(self) -> LossNetwork:
        """The frozen loss network (not part of the state dict)."""
        return self._frozen

    def extra_repr(self) -> str:
        w = "1 per layer" if self.layer_weights is None else list(self.layer_weights)
        return f"net={self.loss_net.describe_short()}, layer weights={w}, reduction={self.reduction}"

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
        return feature_reconstruction_loss(feats, list(target_features), self.layer_weights, self.reduction,
                                           validate=self.validate)


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

    def extra_repr(self) -> str:
        return f"reduction={self.reduction}"

    def forward(self, mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
        return kl_divergence(mu, logvar, self.reduction)
