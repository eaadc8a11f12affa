"""Frozen, truncated loss networks built by one general mechanism.

:class:`LossNetwork` builds a registered architecture, loads its pretrained weights, and uses
``torchvision.models.feature_extraction.create_feature_extractor`` to keep exactly the part of
the graph that the requested layers need: modules after the deepest requested layer are not in
the forward pass (nor in the module). Inputs are [0, 1] RGB images; the per-architecture
normalisation (ImageNet mean/std unless the weights expect otherwise) is applied inside.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from typing import Sequence

import torch
from torch import fx, nn
from torchvision.models.feature_extraction import get_graph_node_names

from lossnet.checks import check_images
from lossnet.errors import ZooError

from .names import canonical_arch, looks_like_layer_name, relu_layer_names
from .registry import IMAGENET_MEAN, IMAGENET_STD, LAYER_KEYS, ArchSpec, get_spec
from .trunk import build_body, disable_inplace_modules
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
    """Turn ``"E"``/``"S"``/``"M"``/``"L"``, a child index, a piq-style name (``"relu3_3"``, AlexNet /
    VGG only, :mod:`lossnet.zoo.names`) or a torchvision node name into a node name.

    Raises :class:`~lossnet.errors.ZooError` (a ValueError) with the valid choices otherwise.
    """
    children = _holder_children(model, spec.holder)
    prefix = f"{spec.holder}." if spec.holder else ""
    if isinstance(ref, str) and ref.upper() in LAYER_KEYS and len(ref) == 1:
        ref = spec.layer_index(ref.upper())
    if isinstance(ref, str) and ref.lstrip("-").isdigit():
        ref = int(ref)
    if isinstance(ref, str) and looks_like_layer_name(ref):
        named = relu_layer_names(spec.name, children)
        if ref not in named:
            valid = f"e.g. {[n for n in named if n.startswith('relu')]}" if named else "only AlexNet and VGG have them"
            raise ZooError(f"{spec.name}: no layer named {ref!r} ({valid}); or use E/S/M/L, a child index or a node name")
        ref = named[ref]
    if isinstance(ref, int) and not isinstance(ref, bool):
        if not -len(children) <= ref < len(children):
            raise ZooError(f"{spec.name}: child index {ref} out of range; {spec.holder or 'the model'} has "
                              f"{len(children)} children (0..{len(children) - 1})")
        return prefix + children[ref][0]
    if isinstance(ref, str):
        _, eval_nodes = get_graph_node_names(model)
        if ref in eval_nodes or any(n.startswith(ref + ".") for n in eval_nodes):
            return ref
        raise ZooError(f"{spec.name}: {ref!r} is neither E/S/M/L, a child index, a relu name nor a node name; "
                          f"node names look like {eval_nodes[1:4]} (see torchvision get_graph_node_names)")
    raise ZooError(f"layer must be 'E'/'S'/'M'/'L', an int index or a node name, got {ref!r}")


class LossNetwork(nn.Module):
    """A frozen pretrained network truncated after the deepest requested layer.

    Args:
        arch: a registered architecture (``lossnet.zoo.list_archs()``), an lpips-style alias
            (``"alex"``, ``"vgg"``, ``"squeeze"``) or a preset (``"paper"``: AlexNet up to the 2nd
            ReLU with a sigmoid; a preset fixes ``layers`` and ``sigmoid``: giving others is an error).
        layers: extraction layers: ``"E"``, ``"S"``, ``"M"``, ``"L"`` (Table II), child indices of
            the feature holder, torchvision node names, or for AlexNet / VGG piq-style names
            (``"relu3_3"``, ``"relu2"``; :mod:`lossnet.zoo.names`). One or several, each once.
            Default ``"L"``.
        weights: ``"imagenet"`` (default; an error if unavailable, never silent random weights),
            ``"random"`` (random initialisation, reproducible with ``seed``; ``None`` means the
            same), or a state dict.
        normalize: ``"imagenet"`` applies the normalisation the weights expect to [0, 1] input;
            ``"lpips"`` the LPIPS package's scaling layer; ``None`` feeds the input as is.
        sigmoid: apply a sigmoid to each returned feature map (papers A/B). Default False.
        channels_last: run the trunk in the channels-last memory format (default; the same values
            to float rounding; faster convolutions, pooling and ReLUs on CPU with oneDNN, see the
            speed section of docs/losses.md); ``False``: the contiguous (N, C, H, W) format.
        seed: with ``weights="random"``: the seed of the initialisation (the global RNG is left
            untouched).

    ``forward(x)`` takes ``x`` of shape (N, 3, H, W), N >= 1, float, values in [0, 1], and returns a
    list of feature maps (N, C_l, H_l, W_l), one per requested layer in the order given, contiguous,
    in the network's dtype (other float inputs are cast to it). The module is always in eval mode
    and its parameters never require gradients; gradients do flow to ``x``. :meth:`extract` (what
    the losses call) returns the same maps in the trunk's memory format (channels-last strides by
    default). Your own network: :meth:`from_module`.
    """

    def __init__(
        self,
        arch: str,
        layers: LayerRef | Sequence[LayerRef] | None = None,
        weights: str | dict | None = "imagenet",
        normalize: str | None = "imagenet",
        sigmoid: bool | None = None,
        channels_last: bool = True,
        *,
        seed: int | None = None,
    ) -> None:
        super().__init__()
        if isinstance(arch, nn.Module):
            raise ZooError(f"LossNetwork takes an architecture name; wrap your {type(arch).__name__} with "
                              "LossNetwork.from_module(module, layers=..., normalize=...)")
        arch = canonical_arch(arch)
        if arch in PRESETS:
            preset = PRESETS[arch]
            given = {k: v for k, v in (("layers", layers), ("sigmoid", sigmoid)) if v is not None}
            clash = {k: v for k, v in given.items()
                     if (list(v) if isinstance(v, (list, tuple)) else [v] if k == "layers" else v) != (
                         list(preset[k]) if k == "layers" else preset[k])}
            if clash:
                raise ZooError(f"preset {arch!r} fixes arch={preset['arch']!r}, layers={list(preset['layers'])}, "
                                  f"sigmoid={preset['sigmoid']}; it conflicts with {clash}: drop them, or use "
                                  f"LossNetwork({preset['arch']!r}, layers=..., sigmoid=...)")
            arch, layers, sigmoid = preset["arch"], preset["layers"], preset["sigmoid"]
        layers = "L" if layers is None else layers
        sigmoid = bool(sigmoid)
        spec = get_spec(arch)
        if isinstance(layers, (str, int)):
            layers = [layers]
        if not layers:
            raise ZooError("request at least one layer (layers=['E'], ['S'], ['M'], ['L'] or node names)")
        if seed is not None and weights not in ("random", None):
            raise ZooError(f"seed={seed} only applies to weights='random', got weights={weights!r}")
        if seed is None:
            model = spec.build()
        else:
            with torch.random.fork_rng(devices=[]):  # a seeded build leaves the global RNG as it was
                torch.manual_seed(int(seed))
                model = spec.build()
        self.weights_source = None
        if isinstance(weights, str) and weights not in ("imagenet", "random"):
            raise ZooError(f"weights must be 'imagenet', 'random' or a state dict, got {weights!r}")
        if weights == "imagenet":
            sd, self.weights_source = load_state_dict(arch)
        elif isinstance(weights, dict):
            sd, self.weights_source = weights, "state_dict"
        elif weights is None or weights == "random":
            sd, self.weights_source = None, "random" if seed is None else f"random(seed={seed})"
        else:
            raise ZooError(f"weights must be 'imagenet', 'random' or a state dict, got {type(weights).__name__}")
        model.eval()
        self.spec = spec
        self.layer_refs = list(layers)
        nodes = [resolve_layer(spec, model, r) for r in layers]
        disable_inplace_modules(model)
        self._finish(build_body(model, nodes, self.layer_refs), nodes, normalize, spec.mean, spec.std, sigmoid,
                     channels_last)
        if sd is not None:
            self._load(sd)

    @classmethod
    def from_module(cls, module: nn.Module, layers: str | int | Sequence[str | int] | None = None, *,
                    normalize: str | tuple | None = "imagenet", sigmoid: bool = False,
                    channels_last: bool = False, name: str | None = None) -> "LossNetwork":
        """Your own network as a loss network, frozen and in eval mode like the zoo's.

        Args:
            module: any ``nn.Module`` taking (N, 3, H, W) images: a torchvision model, a timm
                ``features_only`` model, your own. Its parameters are frozen in place
                (``requires_grad=False``) and it is kept in eval mode, also when a parent module
                calls ``.train()``.
            layers: torchvision node names (``torchvision.models.feature_extraction
                .get_graph_node_names(module)[1]``, e.g. ``"layer2"`` or ``"features.4"``) or
                child indices of ``module``; the graph is cut after the deepest one. ``None``:
                ``module``'s own output (a tensor, a list / tuple of tensors as timm's
                ``features_only`` models return, or a dict of them) is the feature list.
            normalize: ``"imagenet"`` (default: torchvision's and most timm models' mean/std),
                ``"lpips"``, a ``(mean, std)`` pair of 3-tuples for [0, 1] input, or ``None``.
            sigmoid, channels_last: as for the zoo's networks (channels-last off by default here).
            name: what ``repr`` and errors call it (default: the module's class name).
        """
        if not isinstance(module, nn.Module):
            raise ZooError(f"LossNetwork.from_module needs an nn.Module, got {type(module).__name__}")
        self = cls.__new__(cls)
        nn.Module.__init__(self)
        self.spec, self.weights_source = None, "module"
        self._name = name or type(module).__name__
        module.requires_grad_(False).eval()
        if layers is None:
            self.layer_refs, nodes, body = ["output"], ["output"], module
        else:
            refs = [layers] if isinstance(layers, (str, int)) else list(layers)
            if not refs:
                raise ZooError("request at least one layer, or layers=None for the module's own output")
            children = list(module.named_children())
            nodes = []
            for r in refs:
                if isinstance(r, int) or (isinstance(r, str) and r.lstrip("-").isdigit()):
                    i = int(r)
                    if not -len(children) <= i < len(children):
                        raise ZooError(f"{self._name}: child index {i} out of range (0..{len(children) - 1})")
                    nodes.append(children[i][0])
                else:
                    nodes.append(str(r))
            self.layer_refs = refs
            disable_inplace_modules(module)
            try:
                body = build_body(module, nodes, refs)
            except ZooError:
                raise
            except Exception as e:  # FX cannot trace it, or a name that is not a node
                raise ZooError(f"{self._name}: cannot extract layers {refs} with torchvision's feature extraction "
                                  f"({type(e).__name__}: {str(e).splitlines()[0][:160]}); pass layers=None and let "
                                  "the module return its feature maps (e.g. timm.create_model(..., features_only=True))"
                                  ) from None
        if isinstance(normalize, (tuple, list)):
            mean, std = (tuple(float(v) for v in t) for t in normalize)
            normalize = "custom"
        else:
            mean, std = IMAGENET_MEAN, IMAGENET_STD
        self._finish(body, nodes, normalize, mean, std, sigmoid, channels_last)
        return self

    def _finish(self, body: nn.Module, nodes: list[str], normalize, mean, std, sigmoid: bool,
                channels_last: bool) -> None:
        self.nodes = nodes
        self.body = body
        if normalize not in ("imagenet", "lpips", "custom", None):
            raise ZooError(f"normalize must be 'imagenet', 'lpips' or None, got {normalize!r}")
        self.normalize = normalize
        if normalize == "lpips":  # the lpips package's ScalingLayer, written for [0, 1] input
            mean, std = LPIPS_SHIFT_01, LPIPS_SCALE_01
        self.register_buffer("mean", torch.tensor(mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std).view(1, 3, 1, 1), persistent=False)
        self.memory_format = torch.channels_last if channels_last else torch.contiguous_format
        if channels_last:
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

    def __setstate__(self, state: dict) -> None:
        """Unpickled and ``copy.deepcopy``-ed networks are in eval mode too (``fx.GraphModule``'s
        deepcopy rebuilds the traced trunk in training mode: batch norm would use batch statistics)."""
        super().__setstate__(state)
        self.train(False)

    def params_sha256(self) -> str:
        """The identity of the parameters and buffers: sha256 over the state dict's keys (sorted)
        and raw bytes, 16 hex digits (the same weights give the same digest on any device)."""
        h = hashlib.sha256()
        for k, p in sorted(self.state_dict().items()):
            h.update(k.encode())
            h.update(p.detach().cpu().numpy().tobytes())
        return h.hexdigest()[:16]

    @property
    def arch(self) -> str:
        """The registered architecture, or ``custom:<name>`` for :meth:`from_module` networks."""
        return self.spec.name if self.spec is not None else f"custom:{self._name}"

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Features of images ``x`` (N, 3, H, W), float in [0, 1]: a list with one (N, C, H, W) map
        per requested layer. The input is checked as every loss checks it (:mod:`lossnet.checks`:
        empty batches, 0-255 floats, NaN and already-normalised images are refused;
        ``self.validate = False`` keeps only the free shape/dtype checks)."""
        check_images(x, "LossNetwork input", validate=self.validate)
        return [f.contiguous() for f in self.extract(x)]

    def extract(self, x: torch.Tensor) -> list[torch.Tensor]:
        """:meth:`forward` without the input check (for callers that checked ``x`` already); the
        maps are in the trunk's memory format (:attr:`memory_format`), not necessarily contiguous."""
        if x.dtype != self.mean.dtype:  # e.g. float64 images into a float32 network
            x = x.to(self.mean.dtype)
        if self.normalize is not None:
            x = (x - self.mean) / self.std
        x = x.contiguous(memory_format=self.memory_format)
        try:
            out = self.body(x)
        except RuntimeError as e:  # pooling / convolution windows larger than the shrunken input
            msg = str(e)
            if not any(s in msg for s in ("too small", "smaller than", "greater than input", "can't be greater")):
                raise
            raise ZooError(f"{x.shape[-2]}x{x.shape[-1]} images are too small for {self.arch} up to layer(s) "
                           f"{', '.join(map(str, self.layer_refs))} ({msg.splitlines()[0][:120]}); use larger "
                           f"images or an earlier layer (e.g. E)") from None
        if isinstance(out, dict):
            feats = [out[str(i)] for i in range(len(self.nodes))] if self.spec is not None or self.nodes != ["output"] \
                else list(out.values())
        elif isinstance(out, (list, tuple)):
            feats = list(out)
        else:
            feats = [out]
        if self.sigmoid:
            feats = [torch.sigmoid(f) for f in feats]
        return feats

    def describe_short(self) -> str:
        """``arch[layers]`` with the sigmoid and normalisation when set, for the losses' reprs."""
        extra = ", sigmoid" if self.sigmoid else ""
        return f"{self.arch}{self.layer_refs}{extra}, normalize={self.normalize}"

    def extra_repr(self) -> str:
        return (f"arch={self.arch}, layers={self.layer_refs}, nodes={self.nodes}, sigmoid={self.sigmoid}, "
                f"normalize={self.normalize}, weights={self.weights_source}")


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
