"""Names users bring from lpips, piq and torchmetrics, resolved once for every loss network.

* Architectures: ``"alex"``, ``"vgg"``, ``"squeeze"`` (lpips / torchmetrics ``net_type``) are
  ``"alexnet"``, ``"vgg16"``, ``"squeezenet1_1"``.
* Layers of the plain convolutional stacks (AlexNet, VGG): ``"relu3_3"``, ``"conv4_1"``,
  ``"pool2"`` (piq / Johnson et al.: block ``b``, layer ``i`` within it; blocks end at max-pools)
  for VGG; ``"relu1"`` ... ``"relu5"``, ``"conv1"`` ... ``"conv5"``, ``"pool1"`` ... ``"pool3"`` for
  AlexNet (counted through the network, as lpips names AlexNet's layers). They resolve to child
  indices of ``features``, e.g. VGG-16 ``relu3_3`` -> 15, AlexNet ``relu2`` -> 4.
"""

from __future__ import annotations

import re

from torch import nn

__all__ = ["ARCH_ALIASES", "canonical_arch", "relu_layer_names"]

ARCH_ALIASES = {"alex": "alexnet", "vgg": "vgg16", "squeeze": "squeezenet1_1"}
"""lpips / torchmetrics network names and the registered architecture each one means."""

_NAME = re.compile(r"^(conv|relu|pool)(\d+)(?:_(\d+))?$")


def canonical_arch(name: str) -> str:
    """The registered architecture an lpips-style ``name`` means (unchanged if not an alias)."""
    return ARCH_ALIASES.get(name, name) if isinstance(name, str) else name


def relu_layer_names(arch: str, children: list[tuple[str, nn.Module]]) -> dict[str, int]:
    """``{"relu3_3": 15, ...}``: conv / relu / pool names of a plain stack's children.

    Only AlexNet and the VGG family (without batch norm a ReLU follows its conv; with batch norm
    the ReLU after the norm is still ``relu{b}_{i}``); empty for every other architecture.
    """
    if not (arch == "alexnet" or arch.startswith("vgg")):
        return {}
    names: dict[str, int] = {}
    block, conv, relu, pool = 1, 0, 0, 0
    for idx, (_, m) in enumerate(children):
        if isinstance(m, nn.Conv2d):
            conv += 1
            names[f"conv{conv}" if arch == "alexnet" else f"conv{block}_{conv}"] = idx
        elif isinstance(m, nn.ReLU):
            relu += 1
            names[f"relu{relu}" if arch == "alexnet" else f"relu{block}_{relu}"] = idx
        elif isinstance(m, nn.MaxPool2d):
            pool += 1
            names[f"pool{pool}" if arch == "alexnet" else f"pool{block}"] = idx
            if arch != "alexnet":
                block, conv, relu = block + 1, 0, 0
    return names


def looks_like_layer_name(ref: object) -> bool:
    return isinstance(ref, str) and _NAME.match(ref) is not None
