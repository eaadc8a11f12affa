"""The loss-network zoo: registry, pretrained weights and frozen truncated networks."""

from .network import PRESETS, LossNetwork, LossNetworkInfo, create_loss_network, describe, graph_depth, resolve_layer
from .registry import LAYER_KEYS, PAPER_ARCHS, REGISTRY, ArchSpec, get_spec, list_archs, paper_archs, register
from .weights import ChecksumError, InvalidWeightsError, WeightsUnavailableError, fetch, list_status, load_state_dict, status

__all__ = [
    "ArchSpec", "ChecksumError", "InvalidWeightsError", "LAYER_KEYS", "LossNetwork", "LossNetworkInfo", "PAPER_ARCHS", "PRESETS", "REGISTRY",
    "WeightsUnavailableError", "create_loss_network", "describe", "fetch", "get_spec", "graph_depth",
    "list_archs", "list_status", "paper_archs", "load_state_dict", "register", "resolve_layer", "status",
]
