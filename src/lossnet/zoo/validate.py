"""Validation of a state dict against its architecture: every route checks before anything is stored."""

from __future__ import annotations

import torch

from lossnet.errors import InvalidWeightsError

from .registry import get_spec

__all__ = ["AUX_PREFIXES", "expected_tensors", "validate_state_dict"]

# Keys of official torchvision files that the registry's (auxiliary-free) models do not have.
AUX_PREFIXES: dict[str, tuple[str, ...]] = {"googlenet": ("aux1.", "aux2."), "inception_v3": ("AuxLogits.",)}

_EXPECTED: dict[str, dict[str, tuple[torch.Size, torch.dtype]]] = {}


def expected_tensors(arch: str) -> dict[str, tuple[torch.Size, torch.dtype]]:
    """``{key: (shape, dtype)}`` of ``arch``'s ``state_dict()``, built on the meta device (no memory, no init cost)."""
    if arch not in _EXPECTED:
        with torch.device("meta"):
            model = get_spec(arch).build()
        _EXPECTED[arch] = {k: (v.shape, v.dtype) for k, v in model.state_dict().items()}
    return _EXPECTED[arch]


def validate_state_dict(arch: str, sd, what: str, *, partial: bool = False) -> dict[str, torch.Tensor]:
    """Check that ``sd`` is a complete, finite, floating-point state dict of ``arch``; return it cleaned.

    Checks, in order: a non-empty dict of tensors; auxiliary-classifier keys of official
    torchvision files (``aux1.*``, ``aux2.*``, ``AuxLogits.*``) are dropped; no unknown keys; no
    missing keys (``num_batches_tracked`` may be absent; ``partial=True`` allows a subset, for
    sources that ship only the convolutional trunk); every shape equals the architecture's;
    floating dtype (integer only for ``num_batches_tracked``); all values finite.

    Args:
        what: the source, for messages (a file name).

    Raises:
        InvalidWeightsError: naming ``what``, the first offending keys, and what to do.
    """
    fix = f"give the ImageNet state dict of torchvision's {arch} (`torchvision.models.{arch}(...).state_dict()` keys)"
    if not isinstance(sd, dict) or not all(isinstance(v, torch.Tensor) for v in sd.values()):
        raise InvalidWeightsError(f"{what} is not a state dict of tensors (got {type(sd).__name__}); {fix}")
    if not sd:
        raise InvalidWeightsError(f"{what} is an empty state dict; {fix}")
    aux = AUX_PREFIXES.get(arch, ())
    sd = {k: v for k, v in sd.items() if not k.startswith(aux)} if aux else dict(sd)
    expected = expected_tensors(arch)
    unknown = [k for k in sd if k not in expected]
    if unknown:
        raise InvalidWeightsError(f"{what} does not fit {arch}: {len(unknown)} unknown keys such as {unknown[:3]}; {fix}")
    if not partial:
        missing = [k for k in expected if k not in sd and not k.endswith("num_batches_tracked")]
        if missing:
            raise InvalidWeightsError(f"{what} does not fit {arch}: {len(missing)} of its {len(expected)} tensors are "
                                      f"missing, e.g. {missing[:3]} (a partial state dict); {fix}")
    bad = [f"{k} {tuple(v.shape)} (expected {tuple(expected[k][0])})" for k, v in sd.items() if v.shape != expected[k][0]]
    if bad:
        raise InvalidWeightsError(f"{what} does not fit {arch}: wrong shapes for {bad[:3]}; {fix}")
    for k, v in sd.items():
        if k.endswith("num_batches_tracked"):
            continue
        if not v.is_floating_point():
            raise InvalidWeightsError(f"{what}: {k} has dtype {v.dtype}; weights must be floating point (float32, "
                                      f"float16 or bfloat16), not quantised or integer; {fix}")
        if not bool(torch.isfinite(v).all()):
            n = int((~torch.isfinite(v)).sum())
            raise InvalidWeightsError(f"{what}: {k} holds {n} NaN/inf values; the file is corrupted or came from a "
                                      f"diverged training run; {fix}")
    return sd
