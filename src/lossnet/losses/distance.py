"""The LPIPS-style distance (systematic analysis Eq. 1): functional head and :class:`PerceptualDistance`.

``PerceptualDistance("alexnet")`` (``"vgg16"``, ``"squeezenet1_1"``; lpips' ``"alex"``, ``"vgg"``,
``"squeeze"``) is LPIPS v0.1 itself, equal to ``lpips.LPIPS(net=...)``: LPIPS' layers, its
learned channel weights and its input scaling. ``weighting="uniform"`` is the plain channel sum
of unit-normalised features (any architecture, any layers; ImageNet normalisation by default).
"""

from __future__ import annotations

import contextlib
import importlib.util
from pathlib import Path
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ..checks import check_input_range, check_pair, to_unit_range
from ..errors import ConfigError
from ..zoo.names import canonical_arch
from ..zoo.network import LossNetwork
from ._common import FrozenNetHolder, _batched_features, _check_images, _check_reduction, _features, _needs_graph, \
    _reduce, as_loss_network

__all__ = ["LPIPS_LAYERS", "PerceptualDistance", "WEIGHTINGS", "load_lpips_channel_weights", "perceptual_distance",
           "unit_normalize"]

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
    with _full_precision(feats0[0]):
        for i, (a, b) in enumerate(zip(feats0, feats1)):
            d = d + _layer_distance(i, a, b, None if channel_weights is None else channel_weights[i], spatial_size)
    return d


def _full_precision(f: torch.Tensor):
    """Autocast off for the head (its norms and divisions in bf16 lose ~3 digits): the distance is
    float32 under autocast, as :class:`~lossnet.losses.PerceptualLoss` (``mse_loss`` autocasts to float32)."""
    dev = f.device.type
    return torch.autocast(dev, enabled=False) if torch.is_autocast_enabled(dev) else contextlib.nullcontext()


def _layer_distance(i: int, a: torch.Tensor, b: torch.Tensor, cw, spatial_size) -> torch.Tensor:
    if a.dtype in (torch.float16, torch.bfloat16):
        a, b = a.float(), b.float()
    check_pair(a, b, (f"feats0[{i}]", f"feats1[{i}]"))
    if cw is None:
        w = a.new_ones(a.shape[1])
    else:
        w = cw.to(a).flatten()
        if w.numel() != a.shape[1]:
            raise ValueError(f"layer {i}: {w.numel()} channel weights for {a.shape[1]} channels")
    if _needs_graph(a, b, w):
        per_pixel = _LPIPSLayer.apply(a, b, w)[0]
    else:
        per_pixel = _lpips_head(a, b, w, keep_diff=False)[0]
    if spatial_size is None:
        return per_pixel.mean((1, 2))
    return F.interpolate(per_pixel[:, None], size=tuple(spatial_size), mode="bilinear", align_corners=False)


LPIPS_LAYERS = {"alexnet": (1, 4, 7, 9, 11), "vgg16": (3, 8, 15, 22, 29), "squeezenet1_1": (1, 4, 7, 9, 10, 11, 12)}
"""The layers LPIPS v0.1 uses per architecture (torchvision child indices of ``features``)."""

WEIGHTINGS = ("lpips", "uniform")
"""``"lpips"``: LPIPS v0.1's learned channel weights; ``"uniform"``: all ones (a plain channel sum)."""

_LPIPS_FILES = {"alexnet": "alex", "vgg16": "vgg", "squeezenet1_1": "squeeze"}


def load_lpips_channel_weights(arch: str) -> list[torch.Tensor]:
    """LPIPS v0.1's channel weights of ``arch`` (alexnet, vgg16, squeezenet1_1): one (C_l,) vector
    per layer of :data:`LPIPS_LAYERS`, from lossnet's store or else the installed ``lpips`` package."""
    from ..zoo.weights import WeightsUnavailableError, load_lpips_linear

    try:
        lin = load_lpips_linear(arch)
        return [lin[f"lin.{k}.weight"].flatten() for k in range(len(lin))]
    except WeightsUnavailableError:
        spec = importlib.util.find_spec("lpips")
        path = Path(spec.origin).parent / "weights" / "v0.1" / f"{_LPIPS_FILES[arch]}.pth" if spec else None
        if path is None or not path.is_file():
            raise WeightsUnavailableError(
                f"no LPIPS channel weights for {arch!r}: `pip install lpips` (they ship with it) or run "
                f"`lossnet weights fetch {arch}`; or use PerceptualDistance({arch!r}, weighting='uniform')") from None
        sd = torch.load(path, map_location="cpu", weights_only=True)
        return [sd[f"lin{k}.model.1.weight"].flatten() for k in range(len(LPIPS_LAYERS[arch]))]


class PerceptualDistance(FrozenNetHolder, nn.Module):
    """LPIPS, or an LPIPS-style distance with any loss network (systematic analysis Eq. 1).

    Args:
        arch: a registered architecture or lpips name (``"alex"``, ``"vgg"``, ``"squeeze"``), or a
            :class:`LossNetwork` (your own network: :meth:`LossNetwork.from_module`; then
            ``layers``, ``weights`` and ``normalize`` must be left unset).
        layers: extraction layers (E/S/M/L, indices, node names, ``"relu3_3"``-style names);
            default: LPIPS' layers for alexnet / vgg16 / squeezenet1_1, else ``["L"]``.
        lpips_weights: older spelling of ``weighting`` (True: ``"lpips"``, False: ``"uniform"``).
        weights: loss-network weights, as for :class:`LossNetwork`.
        normalize: input normalisation; default ``"lpips"`` (the package's scaling layer) with
            LPIPS weighting, ``"imagenet"`` with uniform weighting.
        weighting: ``"lpips"`` (LPIPS v0.1's learned channel weights; the default for alexnet,
            vgg16 and squeezenet1_1 at LPIPS' layers: then this *is* ``lpips.LPIPS(net=...)``) or
            ``"uniform"`` (all channels weigh 1; the default for every other network, and for a
            given :class:`LossNetwork`).
        reduction: ``"none"`` (default: (N,) distances), ``"mean"`` or ``"sum"`` over the batch.
        spatial: return the distance map (N, 1, H, W) at the input size instead (``reduction``
            must then be ``"none"``), as ``lpips.LPIPS(spatial=True)``.
        input_range: ``"[0,1]"`` (default) or ``"[-1,1]"`` (the lpips package's convention).
        validate: value checks of the inputs (see :mod:`lossnet.checks`).

    ``forward(x0, x1)`` takes two batches of images (N, 3, H, W), N >= 1. When only one of them
    needs a gradient, the other's features are computed under ``torch.no_grad``; otherwise both go
    through the trunk in one batched call. The result is float32 for float16/bfloat16 features
    (autocast), like :class:`~lossnet.losses.PerceptualLoss`. The frozen network is not in
    ``state_dict`` (see :class:`~lossnet.losses.FrozenNetHolder`).
    """

    def __init__(self, arch: str | LossNetwork = "alexnet", layers=None, lpips_weights: bool | None = None,
                 weights="imagenet", normalize: str | None = None, *, weighting: str | None = None,
                 reduction: str = "none", spatial: bool = False, input_range: str = "[0,1]",
                 validate: bool = True) -> None:
        super().__init__()
        _check_reduction(reduction)
        check_input_range(input_range)
        if spatial and reduction != "none":
            raise ConfigError("spatial=True returns one map per image: use reduction='none'")
        if weighting is not None and weighting not in WEIGHTINGS:
            raise ConfigError(f"weighting must be one of {WEIGHTINGS}, got {weighting!r}")
        if lpips_weights is not None:
            old = "lpips" if lpips_weights else "uniform"
            if weighting is not None and weighting != old:
                raise ConfigError(f"lpips_weights={lpips_weights} contradicts weighting={weighting!r}; give only weighting")
            weighting = old
        self.reduction, self.spatial, self.input_range, self.validate = reduction, spatial, input_range, validate
        if isinstance(arch, str):
            name = canonical_arch(arch)
            if weighting is None:
                weighting = "lpips" if name in LPIPS_LAYERS and layers is None else "uniform"
            if layers is None:
                layers = list(LPIPS_LAYERS.get(name, ("L",)))
            if normalize is None:
                normalize = "lpips" if weighting == "lpips" else "imagenet"
            net = LossNetwork(name, layers=layers, weights=weights, normalize=normalize)
        else:
            net = as_loss_network(arch, "PerceptualDistance", layers=layers, normalize=normalize,
                                  weights=None if weights == "imagenet" else weights)
            weighting = weighting or "uniform"
        self._hold(net, "net")
        self.weighting = weighting
        self.channel_weights = None
        if weighting == "lpips":
            if net.arch not in LPIPS_LAYERS:
                raise ConfigError(f"LPIPS channel weights exist for {sorted(_LPIPS_FILES)} only, not {net.arch}; "
                                  "use weighting='uniform'")
            ws = load_lpips_channel_weights(net.arch)
            if len(ws) != len(net.nodes):
                raise ConfigError(f"LPIPS weights have {len(ws)} layers, the loss network returns {len(net.nodes)}: "
                                  f"use LPIPS' layers {list(LPIPS_LAYERS[net.arch])} or weighting='uniform'")
            for k, w in enumerate(ws):
                self.register_buffer(f"lin{k}", w, persistent=False)
            self.channel_weights = len(ws)

    @property
    def net(self) -> LossNetwork:
        """The frozen loss network (not part of the state dict)."""
        return self._frozen

    def extra_repr(self) -> str:
        w = "lpips v0.1 channel weights" if self.weighting == "lpips" else "uniform"
        return (f"net={self.net.describe_short()}, weighting={w}, reduction={self.reduction}, "
                f"input_range={self.input_range}" + (", spatial=True" if self.spatial else ""))

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
