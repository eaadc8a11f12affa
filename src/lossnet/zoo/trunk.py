"""Graph surgery for loss networks: cut a traced model after the requested nodes, no in-place ops.

:func:`build_body` is what :class:`~lossnet.zoo.network.LossNetwork` (zoo and ``from_module``)
uses to turn a model and node names into the truncated trunk.
"""

from __future__ import annotations

import operator

import torch
import torch.nn.functional as F
from torch import fx, nn
from torchvision.models.feature_extraction import create_feature_extractor

from lossnet.errors import ZooError

__all__ = ["build_body", "disable_inplace_modules"]


_INPLACE_OPERATORS = {operator.iadd: operator.add, operator.isub: operator.sub, operator.imul: operator.mul,
                      operator.itruediv: operator.truediv}


def disable_inplace_modules(model: nn.Module) -> None:
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


_GRAPH_MODULE_HOOKS = ("_replace_hooks", "_create_node_hooks", "_erase_node_hooks", "_deepcopy_hooks")


def _add_graph_module_hooks(gm: fx.GraphModule) -> fx.GraphModule:
    """Give ``gm`` the (empty) hook lists ``fx.GraphModule.__init__`` sets. torchvision's
    ``DualGraphModule`` skips that ``__init__``, and ``torch.compile`` of torch 2.11 registers a
    node hook on the module it traces (``AttributeError: ... no attribute '_create_node_hooks'``)."""
    for name in _GRAPH_MODULE_HOOKS:
        if name not in vars(gm):
            setattr(gm, name, [])
    return gm


def build_body(model: nn.Module, nodes: list[str], refs: list) -> nn.Module:
    """The truncated graph returning ``{"0": map of nodes[0], ...}``; each node at most once."""
    seen: dict[str, object] = {}
    for r, n in zip(refs, nodes):
        if n in seen:
            raise ZooError(f"layers {refs} name the same layer twice ({seen[n]!r} and {r!r} are both {n}); "
                              "give each layer once")
        seen[n] = r
    body = create_feature_extractor(model, return_nodes={n: str(i) for i, n in enumerate(nodes)})
    _disable_inplace_nodes(_add_graph_module_hooks(body))
    return _prune(body)
