"""What every loss, distance and metric shares: input checks, reductions, trunk calls, and how a
frozen :class:`~lossnet.zoo.LossNetwork` is held (outside the module tree, never in a state dict)."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from ..checks import check_images
from ..errors import ConfigError
from ..zoo.network import LossNetwork

REDUCTIONS = ("mean", "sum", "none")


def _check_images(x: torch.Tensor, name: str, input_range: str = "[0,1]", validate: bool = True) -> None:
    check_images(x, name, input_range=input_range, validate=validate)


def _check_reduction(reduction: str) -> None:
    if reduction not in REDUCTIONS:
        raise ConfigError(f"reduction must be one of {REDUCTIONS}, got {reduction!r}")


def _reduce_elements(err: torch.Tensor, reduction: str) -> torch.Tensor:
    """Element-wise errors (N, ...) -> scalar mean / sum, or (N,) per-item means."""
    _check_reduction(reduction)
    if reduction == "mean":
        return err.mean()
    if reduction == "sum":
        return err.sum()
    return err.mean(tuple(range(1, err.ndim)))  # per item; no copy for channels-last maps


def _reduce(per_item: torch.Tensor, reduction: str) -> torch.Tensor:
    """Per-item values (N,) -> their mean / sum, or themselves for ``"none"``."""
    _check_reduction(reduction)
    if reduction == "mean":
        return per_item.mean()
    if reduction == "sum":
        return per_item.sum()
    return per_item


def _features(net, x: torch.Tensor) -> list[torch.Tensor]:
    """The loss network's features of already-checked images (no second input check)."""
    extract = getattr(net, "extract", None)
    return extract(x) if extract is not None else net(x)


def _needs_graph(*xs: torch.Tensor) -> bool:
    return torch.is_grad_enabled() and any(x.requires_grad for x in xs)


def _batched_features(net, x: torch.Tensor, y: torch.Tensor) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """Features of two checked, equally shaped batches from ONE trunk call on their concatenation
    (bigger matrix products, one pass of per-call overhead); returns views of the halves."""
    n = x.shape[0]
    feats = _features(net, torch.cat([x, y]))
    return [f[:n] for f in feats], [f[n:] for f in feats]


def as_loss_network(obj: Any, owner: str, **kwargs) -> LossNetwork:
    """``obj`` as a :class:`LossNetwork`: itself, or built from a name (``LossNetwork(obj, **kwargs)``).

    Anything else (a bare ``nn.Module``, a function) is a :class:`~lossnet.errors.ConfigError`
    naming :meth:`LossNetwork.from_module`, the route that freezes and normalises it.
    """
    kwargs = {k: v for k, v in kwargs.items() if v is not None}
    if isinstance(obj, LossNetwork):
        if kwargs:
            raise ConfigError(f"{owner} got a LossNetwork and network arguments {sorted(kwargs)}; give one or the "
                              "other (the LossNetwork already fixes its layers and normalisation)")
        return obj
    if isinstance(obj, str):
        return LossNetwork(obj, **kwargs)
    what = type(obj).__name__
    raise ConfigError(f"{owner} needs a LossNetwork or an architecture name, got a {what}; wrap your own network "
                      f"with LossNetwork.from_module(module, layers=..., normalize=...) (frozen, eval mode)")


class FrozenNetHolder:
    """Mixin for modules (losses, distances, metrics) that use a frozen network.

    The network is kept outside the module tree: not in ``state_dict``, ``parameters()`` or
    ``children()`` (a parent's checkpoint stays small and loads strictly into a model without the
    loss; an optimiser over ``parent.parameters()`` never sees it), yet it follows ``.to()`` /
    ``.cuda()`` / dtype casts of the holder and stays in eval mode when the holder's ``.train()``
    is called. Older checkpoints that still hold the network's tensors under one of
    ``legacy_prefixes`` load, strict or not: those keys are dropped.
    """

    def _hold(self, net: nn.Module, *legacy_prefixes: str) -> None:
        net.requires_grad_(False).eval()
        object.__setattr__(self, "_frozen", net)  # bypass nn.Module registration
        object.__setattr__(self, "_legacy_prefixes", tuple(p.rstrip(".") + "." for p in legacy_prefixes))
        if legacy_prefixes:
            self._register_load_state_dict_pre_hook(_drop_legacy_keys, with_module=True)

    def _apply(self, fn, *args, **kwargs):
        this = super()._apply(fn, *args, **kwargs)
        self._frozen._apply(fn)
        return this

    def train(self, mode: bool = True):
        super().train(mode)
        self._frozen.eval()
        return self


def _drop_legacy_keys(module, state_dict, prefix, *_args) -> None:
    for key in [k for k in state_dict if k.startswith(prefix)]:
        if key[len(prefix):].startswith(module._legacy_prefixes):
            del state_dict[key]
