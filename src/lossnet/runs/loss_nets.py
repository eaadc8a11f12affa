"""The loss network of a run's config, and what identifies it in a cell id."""

from __future__ import annotations

import hashlib
from typing import Any

import torch

from lossnet.errors import ConfigError

__all__ = ["NORMALIZE", "build_loss_net", "loss_net_identity"]

NORMALIZE = ("none", "imagenet", "lpips")
"""Values of ``loss_net.normalize``."""


def build_loss_net(ln_cfg):
    """The loss network of ``cfg.loss_net``: ``name`` a preset (``paper``: AlexNet 2nd ReLU +
    sigmoid) or an architecture with ``layers``/``sigmoid``; ``weights`` ``imagenet`` or ``random``
    (seeded with ``init_seed``; for tests and smoke runs); ``normalize`` the input normalisation
    applied to [0, 1] images inside the network: ``none`` (the authors' code for papers A/B feeds
    [0, 1] images to AlexNet unnormalised), ``imagenet`` (mean/std the weights were trained with;
    the default when the key is absent) or ``lpips``."""
    from lossnet.zoo import PRESETS, LossNetwork

    name = str(ln_cfg.name)
    weights = str(ln_cfg.weights)
    if weights not in ("imagenet", "random"):
        raise ConfigError(f"loss_net.weights must be imagenet or random, got {weights!r}")
    kwargs: dict[str, Any] = {}
    norm = ln_cfg.get("normalize", "imagenet")
    norm = "none" if norm is None else str(norm)
    if norm not in NORMALIZE:
        raise ConfigError(f"loss_net.normalize must be one of {', '.join(NORMALIZE)}, got {norm!r}")
    kwargs["normalize"] = None if norm == "none" else norm
    if name not in PRESETS:
        kwargs["layers"] = list(ln_cfg.layers) if ln_cfg.get("layers") is not None else ["S"]
        kwargs["sigmoid"] = bool(ln_cfg.sigmoid) if ln_cfg.get("sigmoid") is not None else True
    try:
        if weights == "random":
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(int(ln_cfg.init_seed))
                return LossNetwork(name, weights=None, **kwargs)
        return LossNetwork(name, **kwargs)
    except (KeyError, ValueError) as e:
        raise ConfigError(f"loss_net: {e}") from None


def loss_net_identity(net) -> dict:
    """What identifies a loss network in a cell id: architecture, graph nodes, sigmoid,
    normalisation, weight source (plus a hash of the parameters for random/state-dict weights)."""
    ident = {"arch": net.arch, "nodes": list(net.nodes), "layers": [str(x) for x in net.layer_refs],
             "sigmoid": bool(net.sigmoid), "normalize": net.normalize, "weights": net.weights_source}
    if net.weights_source in (None, "state_dict"):
        h = hashlib.sha256()
        for k, p in sorted(net.state_dict().items()):
            h.update(k.encode())
            h.update(p.detach().cpu().numpy().tobytes())
        ident["params_sha256"] = h.hexdigest()[:16]
    return ident
