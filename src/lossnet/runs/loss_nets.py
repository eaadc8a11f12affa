"""The loss network of a run's config, and what identifies it in a cell id."""

from __future__ import annotations

from typing import Any

from lossnet.errors import ConfigError
from lossnet.schema import build, check
from lossnet.schema.fields import section_items
from lossnet.schema.sections import LossNet

__all__ = ["NORMALIZE", "build_loss_net", "loss_net_identity"]

NORMALIZE = ("none", "imagenet", "lpips")
"""Values of ``loss_net.normalize``."""


def build_loss_net(section):
    """The loss network of ``cfg.loss_net`` (a :class:`~lossnet.schema.sections.LossNet`, or a
    mapping / DictConfig checked and typed by it here): ``name`` a preset (``paper``: AlexNet 2nd
    ReLU + sigmoid) or an architecture with ``layers``/``sigmoid``; ``weights`` ``imagenet`` or
    ``random`` (seeded with ``init_seed``; for tests and smoke runs); ``normalize`` the input
    normalisation applied to [0, 1] images inside the network: ``none`` (the authors' code for
    papers A/B feeds [0, 1] images to AlexNet unnormalised), ``imagenet`` (mean/std the weights
    were trained with; the default when a mapping lacks the key) or ``lpips``."""
    from lossnet.zoo import PRESETS, LossNetwork

    if isinstance(section, LossNet):
        ln = section
    else:
        items = {"normalize": "imagenet", **section_items(section)}
        check(LossNet, items)
        ln = build(LossNet, items)
    kwargs: dict[str, Any] = {"normalize": None if ln.normalize == "none" else ln.normalize}
    if ln.name not in PRESETS:
        kwargs["layers"] = list(ln.layers) if ln.layers is not None else ["S"]
        kwargs["sigmoid"] = ln.sigmoid if ln.sigmoid is not None else True
    if ln.weights == "random":
        kwargs["seed"] = ln.init_seed
    try:
        return LossNetwork(ln.name, weights=ln.weights, **kwargs)
    except (KeyError, ValueError) as e:
        raise ConfigError(f"loss_net: {e}") from None


def loss_net_identity(net) -> dict:
    """What identifies a loss network in a cell id: architecture, graph nodes, sigmoid,
    normalisation, weight source (plus :meth:`~lossnet.zoo.LossNetwork.params_sha256` for
    state-dict weights, or random ones drawn without a seed)."""
    ident = {"arch": net.arch, "nodes": list(net.nodes), "layers": [str(x) for x in net.layer_refs],
             "sigmoid": bool(net.sigmoid), "normalize": net.normalize, "weights": net.weights_source}
    if net.weights_source in (None, "state_dict"):
        ident["params_sha256"] = net.params_sha256()
    return ident
