"""Frozen, truncated loss networks built by one general mechanism.

:class:`LossNetwork` builds a registered architecture, loads its pretrained weights, and uses
``torchvision.models.feature_extraction.create_feature_extractor`` to keep exactly the part of
the graph that the requested layers need: modules after the deepest requested layer are not in
the forward pass (nor in the module). Inputs are [0, 1] RGB images; the per-architecture
normalisation (ImageNet mean/std unless the weights expect otherwise) is applied inside.
"""

from __future__ import annotations

import math
import operator
from dataclasses import dataclass
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import fx, nn
from torchvision.models.feature_extraction import create_feature_extractor, get_graph_node_names

from lossnet.checks import check_images
from lossnet.errors import InputError

from .registry import LAYER_KEYS, ArchSpec, get_spec
from .weights import load_state_dict

LayerRef = str | int

# LPIPS' ScalingLayer maps [-1, 1] input x' to (x' - shift) / scale. For [0, 1] input x = (x' + 1) / 2
# this is (x - (shift + 1) / 2) / (scale / 2).
_LPIPS_SHIFT = (-0.030, -0.088, -0.188)
_LPIPS_SCALE = (0.458, 0.448, 0.450)
LPIPS_SHIFT_01 = tuple((s + 1) / 2 for s in _LPIPS_SHIFT)
LPIPS_SCALE_01 = tuple(s / 2 for s in _LPIPS_SCALE)

# The papers' loss network (papers A and B): AlexNet up to the 2nd ReLU, then a sigmoid.
PRESETS: dict[str, dict] = {
    "paper": dict(arch="alexnet", layers=("S",), sigmoid=True),
    "alexnet_relu2_sigmoid": dict(arch="alexnet", layers=("S",), sigmoid=True),
    "vgg16_relu3_3": dict(arch="vgg16", layers=(15,), sigmoid=False),  # SR-VAE paper
}


def _holder_children(model: nn.Module, holder: str) -> list[tuple[str, nn.Module]]:
    mod = model.get_submodule(holder) if holder else model
    return list(mod.named_children())


def resolve_layer(spec: ArchSpec, model: nn.Module, ref: LayerRef) -> str:
    """Turn ``"E"``/``"S"``/``"M"``/``"L"``, a child index, or a torchvision node name into a node name.

    Raises ValueError with the valid choices when ``ref`` is none of these.
    """
    children = _holder_children(model, spec.holder)
    prefix = f"{spec.holder}." if spec.holder else ""
    if isinstance(ref, str) and ref.upper() in LAYER_KEYS and len(ref) == 1:
        ref = spec.layer_index(ref.upper())
    if isinstance(ref, str) and ref.lstrip("-").isdigit():
        ref = int(ref)
    if isinstance(ref, int):
        if not -len(children) <= ref < len(children):
            raise ValueError(f"{spec.name}: child index {ref} out of range; {spec.holder or 'the model'} has "
                             f"{len(children)} children (0..{len(children) - 1})")
        return prefix + children[ref][0]
    if isinstance(ref, str):
        _, eval_nodes = get_graph_node_names(model)
        if ref in eval_nodes or any(n.startswith(ref + ".") for n in eval_nodes):
            return ref
        raise ValueError(f"{spec.name}: {ref!r} is neither E/S/M/L, a child index, nor a node name; "
                         f"node names look like {eval_nodes[1:4]} (see torchvision get_graph_node_names)")
    raise ValueError(f"layer must be 'E'/'S'/'M'/'L', an int index or a node name, got {ref!r}")


_INPLACE_OPERATORS = {operator.iadd: operator.add, operator.isub: operator.sub, operator.imul: operator.mul,
                      operator.itruediv: operator.truediv}


def _disable_inplace_modules(model: nn.Module) -> None:
    """Set ``inplace=False`` on every submodule that has the attribute (ReLU, ReLU6, SiLU, Hardswish,
    Dropout, timm's activations, ...), so no module overwrites a tensor another layer returned."""
    for m in model.modules():
        if isinstance(getattr(m, "inplace", None), bool):
            m.inplace = False


def _disable_inplace_nodes(gm: fx.GraphModule) -> None:
    """Rewrite in-place calls the trace recorded (``F.relu(x, inplace=True)``, ``torch.relu_``,
    ``x.add_(y)``, ``x += y``) as their out-of-place forms.

    An in-place activation after a returned layer (e.g. VGG's ``ReLU(inplace=True)`` after a
    requested conv) would otherwise overwrite that layer's output before it is returned.
    """
    for node in gm.graph.nodes:
        if node.op not in ("call_function", "call_method"):
            continue
        if node.kwargs.get("inplace") is True:
            node.kwargs = {**node.kwargs, "inplace": False}
        if node.op == "call_function" and node.target in _INPLACE_OPERATORS:
            node.target = _INPLACE_OPERATORS[node.target]
            continue
        name = node.target if node.op == "call_method" else getattr(node.target, "__name__", "")
        if not isinstance(name, str) or not name.endswith("_") or name.startswith("_") or name == "requires_grad_":
            continue
        if node.op == "call_method" and hasattr(torch.Tensor, name[:-1]):
            node.target = name[:-1]
        elif node.op == "call_function":
            for ns in (torch, F, torch.Tensor):
                if getattr(ns, name, None) is node.target and hasattr(ns, name[:-1]):
                    node.target = getattr(ns, name[:-1])
                    break
    gm.recompile()


def _prune(gm: fx.GraphModule) -> fx.GraphModule:
    """Drop shape assertions (``torch._assert``, impure for FX) so dead-code elimination can cut
    everything after the requested layers, then delete the submodules no node uses any more."""
    for node in list(gm.graph.nodes):
        if node.op == "call_function" and node.target in (torch._assert, getattr(torch, "_assert_async", None)):
            gm.graph.erase_node(node)
    gm.graph.eliminate_dead_code()
    gm.recompile()
    gm.delete_all_unused_submodules()
    return gm


class LossNetwork(nn.Module):
    """A frozen pretrained network truncated after the deepest requested layer.

    Args:
        arch: a registered architecture (``lossnet.zoo.list_archs()``) or a preset name
            (``"paper"``: AlexNet up to the 2nd ReLU with a sigmoid).
        layers: extraction layers: ``"E"``, ``"S"``, ``"M"``, ``"L"`` (Table II), child indices of
            the feature holder, or torchvision node names. One or several.
        weights: ``"imagenet"`` (default; an error if unavailable, never silent random weights),
            ``None`` for random weights, or a state dict.
        normalize: ``"imagenet"`` applies the normalisation the weights expect to [0, 1] input;
            ``"lpips"`` the LPIPS package's scaling layer; ``None`` feeds the input as is.
        sigmoid: apply a sigmoid to each returned feature map (papers A/B).
        channels_last: run the trunk in the channels-last memory format (default; the same values
            to float rounding; faster convolutions, pooling and ReLUs on CPU with oneDNN, see the
            speed section of docs/losses.md); ``False``: the contiguous (N, C, H, W) format.

    ``forward(x)`` takes ``x`` of shape (N, 3, H, W), float, values in [0, 1], and returns a list of
    feature maps (N, C_l, H_l, W_l), one per requested layer in the order given, contiguous. The
    module is always in eval mode and its parameters never require gradients; gradients do flow
    to ``x``. :meth:`extract` (what the losses call) returns the same maps in the trunk's memory
    format (channels-last strides by default).
    """

    def __init__(
        self,
        arch: str,
        layers: LayerRef | Sequence[LayerRef] = "L",
        weights: str | dict | None = "imagenet",
        normalize: str | None = "imagenet",
        sigmoid: bool = False,
        channels_last: bool = True,
    ) -> None:
        super().__init__()
        if arch in PRESETS:
            preset = PRESETS[arch]
            arch, layers, sigmoid = preset["arch"], preset["layers"], preset["sigmoid"]
        spec = get_spec(arch)
        if isinstance(layers, (str, int)):
            layers = [layers]
        if not layers:
            raise ValueError("request at least one layer")
        model = spec.build()
        self.weights_source = None
        if isinstance(weights, str):
            if weights != "imagenet":
                raise ValueError(f"weights must be 'imagenet', None or a state dict, got {weights!r}")
            sd, self.weights_source = load_state_dict(arch)
        elif isinstance(weights, dict):
            sd, self.weights_source = weights, "state_dict"
        elif weights is None:
            sd = None
        else:
            raise ValueError(f"weights must be 'imagenet', None or a state dict, got {type(weights).__name__}")
        model.eval()
        self.spec = spec
        self.layer_refs = list(layers)
        self.nodes = [resolve_layer(spec, model, r) for r in layers]
        _disable_inplace_modules(model)
        body = create_feature_extractor(model, return_nodes={n: str(i) for i, n in enumerate(self.nodes)})
        _disable_inplace_nodes(body)
        self.body = _prune(body)
        if sd is not None:
            self._load(sd)
        if normalize not in ("imagenet", "lpips", None):
            raise ValueError(f"normalize must be 'imagenet', 'lpips' or None, got {normalize!r}")
        self.normalize = normalize
        if normalize == "lpips":  # the lpips package's ScalingLayer, written for [0, 1] input
            mean, std = LPIPS_SHIFT_01, LPIPS_SCALE_01
        else:
            mean, std = spec.mean, spec.std
        self.register_buffer("mean", torch.tensor(mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std).view(1, 3, 1, 1), persistent=False)
        self.memory_format = torch.channels_last if channels_last else torch.contiguous_format
        self.body.to(memory_format=self.memory_format)  # 4-D weights only; values unchanged
        self.sigmoid = sigmoid
        self.validate = True  # value checks of forward()'s input (lossnet.checks)
        for p in self.parameters():
            p.requires_grad_(False)
        self.eval()

    def _load(self, sd: dict[str, torch.Tensor]) -> None:
        needed = self.body.state_dict()
        missing = [k for k in needed if k not in sd and not k.endswith("num_batches_tracked")]
        if missing:
            from .weights import WeightsUnavailableError

            raise WeightsUnavailableError(
                f"{self.spec.name} weights ({self.weights_source}) lack {len(missing)} tensors the requested layers need, "
                f"e.g. {missing[:3]}; this source covers only part of the network"
            )
        self.body.load_state_dict({k: sd[k] for k in needed if k in sd}, strict=False)

    def train(self, mode: bool = True) -> "LossNetwork":
        """Loss networks stay in eval mode (batch-norm statistics never change)."""
        return super().train(False)

    @property
    def arch(self) -> str:
        return self.spec.name

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Features of images ``x`` (N, 3, H, W), float in [0, 1]: a list with one (N, C, H, W) map
        per requested layer. The input is checked as every loss checks it (:mod:`lossnet.checks`:
        0-255 floats, NaN and already-normalised images are refused; ``self.validate = False``
        keeps only the free shape/dtype checks)."""
        check_images(x, "LossNetwork input", validate=self.validate)
        return [f.contiguous() for f in self.extract(x)]

    def extract(self, x: torch.Tensor) -> list[torch.Tensor]:
        """:meth:`forward` without the input check (for callers that checked ``x`` already); the
        maps are in the trunk's memory format (:attr:`memory_format`), not necessarily contiguous."""
        if self.normalize is not None:
            x = (x - self.mean) / self.std
        x = x.contiguous(memory_format=self.memory_format)
        try:
            out = self.body(x)
        except RuntimeError as e:  # pooling / convolution windows larger than the shrunken input
            msg = str(e)
            if not any(s in msg for s in ("too small", "smaller than", "greater than input", "can't be greater")):
                raise
            raise InputError(f"{x.shape[-2]}x{x.shape[-1]} images are too small for {self.arch} up to layer(s) "
                             f"{', '.join(map(str, self.layer_refs))} ({msg.splitlines()[0][:120]}); use larger "
                             f"images or an earlier layer (e.g. E)") from None
        feats = [out[str(i)] for i in range(len(self.nodes))]
        if self.sigmoid:
            feats = [torch.sigmoid(f) for f in feats]
        return feats

    def extra_repr(self) -> str:
        return f"arch={self.arch}, layers={self.layer_refs}, nodes={self.nodes}, sigmoid={self.sigmoid}"


def create_loss_network(name: str, layer: LayerRef | Sequence[LayerRef] | None = None, **kwargs) -> LossNetwork:
    """The one entry point: a preset (``"paper"``) or ``arch`` with ``layer`` (default ``"L"``)."""
    if name in PRESETS:
        return LossNetwork(name, **kwargs)
    return LossNetwork(name, layers=layer if layer is not None else "L", **kwargs)


# --------------------------------------------------------------------------------------------
# Computed metadata
# --------------------------------------------------------------------------------------------

_MATMUL = {"conv1d", "conv2d", "conv3d", "linear", "matmul", "mm", "bmm", "addmm", "conv2d_same"}
_NONLIN = {"relu", "relu_", "relu6", "silu", "silu_", "sigmoid", "sigmoid_", "hardswish", "hardsigmoid", "gelu",
           "tanh", "elu", "leaky_relu", "max_pool2d", "adaptive_max_pool2d", "softmax", "mish"}
_MATMUL_MODULES = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear)
_NONLIN_MODULES = (nn.ReLU, nn.ReLU6, nn.SiLU, nn.Sigmoid, nn.Hardswish, nn.Hardsigmoid, nn.GELU, nn.Tanh,
                   nn.ELU, nn.LeakyReLU, nn.MaxPool2d, nn.AdaptiveMaxPool2d, nn.Mish)


def _module_kind(m: nn.Module) -> str:
    if isinstance(m, _MATMUL_MODULES):
        return "matmul"
    if isinstance(m, _NONLIN_MODULES):
        return "nonlin"
    return "other"


def _node_kinds(gm: fx.GraphModule, node: fx.Node) -> list[str]:
    """Kinds of the operations a node performs, in order.

    A call to a composite module that FX kept as a leaf (torchvision's ``ops`` blocks such as
    ``Conv2dNormActivation`` or ``SqueezeExcitation``) is read as its leaf modules in order.
    """
    if node.op == "call_module":
        m = gm.get_submodule(node.target)
        leaves = [c for c in m.modules() if not list(c.children())]
        return [_module_kind(c) for c in leaves] or ["other"]
    return [_node_kind(gm, node)]


def _node_kind(gm: fx.GraphModule, node: fx.Node) -> str:
    if node.op == "call_module":
        return _module_kind(gm.get_submodule(node.target))
    if node.op in ("call_function", "call_method"):
        name = getattr(node.target, "__name__", str(node.target)).lower()
        if name in _MATMUL:
            return "matmul"
        if name in _NONLIN:
            return "nonlin"
    return "other"


def graph_depth(gm: fx.GraphModule) -> int:
    """Depth as the systematic-analysis paper defines it (footnote 2).

    The maximum number of non-linearly separated matrix multiplications (convolutions, linear
    layers) on any path from the input to the outputs; consecutive matrix multiplications with no
    non-linearity between them (e.g. a projection conv feeding the next block's expansion conv
    through a skip addition) count once; where the graph branches and rejoins only the longest
    branch counts.
    """
    neg = -math.inf
    closed: dict[fx.Node, float] = {}  # best count where the last matmul has been followed by a non-linearity
    open_: dict[fx.Node, float] = {}  # best count where the last matmul is not yet followed by one
    best = 0.0
    for node in gm.graph.nodes:
        ins = [a for a in node.all_input_nodes]
        a_in = max((closed[i] for i in ins), default=0.0 if node.op == "placeholder" else neg)
        b_in = max((open_[i] for i in ins), default=neg)
        if node.op == "placeholder":
            a_in = 0.0
        for kind in _node_kinds(gm, node):
            if kind == "matmul":
                a_in, b_in = neg, max(a_in + 1, b_in)
            elif kind == "nonlin":
                a_in, b_in = max(a_in, b_in), neg
        closed[node], open_[node] = a_in, b_in
        if node.op == "output":
            best = max(a_in, b_in)
    return int(best)


@dataclass
class LossNetworkInfo:
    """Computed attributes of one loss network (architecture + extraction layer)."""

    arch: str
    layer: str
    node: str
    params: int  # parameters up to the layer
    params_fraction: float  # of the whole architecture's parameters
    total_params: int  # of the whole architecture (classifier included)
    depth: int  # up to the layer, paper's definition
    channels: int
    height: int
    width: int
    features: int  # channels * height * width at the layer
    flops: int  # of the truncated forward pass, FlopCounterMode convention (2 per multiply-add)
    input_size: int
    batchnorm: bool
    conv1x1: bool

    def as_dict(self) -> dict:
        return dict(self.__dict__)


def describe(arch: str, layer: LayerRef = "L", input_size: int = 224) -> LossNetworkInfo:
    """Computed metadata of ``arch`` truncated at ``layer`` for one ``input_size`` x ``input_size`` image.

    Nothing here is typed in: parameters and depth are read from the truncated graph, channels and
    features from a forward pass, FLOPs from ``torch.utils.flop_counter.FlopCounterMode``.
    """
    from torch.utils.flop_counter import FlopCounterMode

    with torch.device("meta"):  # shapes only: no random initialisation of (VGG's 100M) parameters
        net = LossNetwork(arch, layers=[layer], weights=None, normalize=None)
        full = get_spec(arch).build()
        x = torch.zeros(1, 3, input_size, input_size)
        with torch.no_grad(), FlopCounterMode(display=False) as fc:
            (f,) = net.extract(x)
    params = sum(p.numel() for p in net.body.parameters())
    total = sum(p.numel() for p in full.parameters())
    mods = list(net.body.modules())
    return LossNetworkInfo(
        arch=arch,
        layer=str(layer),
        node=net.nodes[0],
        params=params,
        params_fraction=params / total,
        total_params=total,
        depth=graph_depth(net.body),
        channels=f.shape[1],
        height=f.shape[2],
        width=f.shape[3],
        features=f[0].numel(),
        flops=int(fc.get_total_flops()),
        input_size=input_size,
        batchnorm=any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in mods),
        conv1x1=any(isinstance(m, nn.Conv2d) and m.kernel_size == (1, 1) for m in mods),
    )
