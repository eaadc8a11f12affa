"""The loss-network zoo: registry, pretrained weights and frozen truncated networks.

:class:`LossNetwork` is the one way to build a loss network (a registered architecture or a
preset such as ``"paper"``); :func:`register` adds your own architecture (an :class:`ArchSpec`).
The names below are loaded on first use, so importing :mod:`lossnet.zoo.layers` stays torch-free.
"""

from __future__ import annotations

import importlib

from lossnet.errors import ChecksumError, InvalidWeightsError, WeightsUnavailableError, ZooError

from .layers import LAYER_KEYS

_EXPORTS = {
    "LossNetwork": "network", "LossNetworkInfo": "network", "PRESETS": "network", "describe": "network",
    "graph_depth": "network", "resolve_layer": "network",
    "ArchSpec": "registry", "TableRecord": "registry", "PAPER_ARCHS": "registry", "REGISTRY": "registry",
    "get_spec": "registry", "list_archs": "registry", "paper_archs": "registry", "register": "registry",
    "WeightsStatus": "weights", "fetch": "weights", "list_status": "weights", "load_state_dict": "weights",
    "status": "weights",
}

__all__ = ["ChecksumError", "InvalidWeightsError", "LAYER_KEYS", "WeightsUnavailableError", "ZooError", *sorted(_EXPORTS)]


def __getattr__(name: str):
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'lossnet.zoo' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))
