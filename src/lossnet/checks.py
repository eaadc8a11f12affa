"""Input checks shared by every public entry point (losses, distances, :class:`~lossnet.zoo.LossNetwork`).

One set of rules everywhere: images are float tensors (N, 3, H, W) with values in ``[0, 1]`` (or
``[-1, 1]`` with ``input_range="[-1,1]"``); values up to :data:`RANGE_TOLERANCE` outside the range
are accepted unchanged (an unclamped decoder's 1.001), anything further, NaN or Inf is one
``ValueError`` that says what was wrong and how to fix it.

Cost: rank, channel and dtype checks read only metadata. The value checks (finite, range) are
one ``torch.aminmax`` reduction and one host sync per input; they are skipped under
``torch.compile`` (so ``fullgraph=True`` works; a warning says so once, on the first
compilation) and when ``validate=False`` (then only the free
metadata checks run: the documented switch for training loops that want no sync per step).
Bad options (an unknown ``input_range``) are a :class:`~lossnet.errors.ConfigError` (a
``ValueError`` too). It imports only :mod:`lossnet.errors`.
"""

from __future__ import annotations

import math
import warnings
from typing import Sequence

import torch

from .errors import ConfigError

__all__ = ["INPUT_RANGES", "RANGE_TOLERANCE", "check_images", "check_input_range", "check_pair", "check_tensor",
           "to_unit_range"]

RANGE_TOLERANCE = 1e-2
"""How far outside the declared input range values may lie and still be accepted (unchanged)."""

INPUT_RANGES = {"[0,1]": (0.0, 1.0), "[-1,1]": (-1.0, 1.0)}
"""The accepted ``input_range`` values and their bounds."""


def check_input_range(input_range: str) -> tuple[float, float]:
    """The (low, high) bounds of an ``input_range`` option; ConfigError for an unknown one."""
    key = input_range.replace(" ", "")
    if key not in INPUT_RANGES:
        raise ConfigError(f"input_range must be one of {', '.join(INPUT_RANGES)}, got {input_range!r}")
    return INPUT_RANGES[key]


_COMPILE_WARNED = False


def _warn_compiled() -> None:
    global _COMPILE_WARNED
    if not _COMPILE_WARNED:
        _COMPILE_WARNED = True
        warnings.warn("lossnet: under torch.compile the input checks keep only shape, dtype and channels; the "
                      "value checks (range, NaN/Inf) are off. Check a batch eagerly first.", UserWarning, stacklevel=4)


def _value_checks_on(validate: bool) -> bool:
    if not torch.compiler.is_compiling():
        return bool(validate)
    if validate:  # runs while dynamo traces: warns once per process, on the first compilation
        try:
            from torch._dynamo.comptime import comptime

            comptime(lambda ctx: _warn_compiled())
        except ImportError:  # pragma: no cover - an older torch without comptime: the docs say it
            pass
    return False


def check_tensor(x: torch.Tensor, name: str, *, ndim: int | Sequence[int] | None = None, channels: int | None = None,
                 value_range: tuple[float, float] | None = None, validate: bool = True) -> None:
    """Raise ValueError unless ``x`` is a float tensor of the expected rank and channels, and (when
    ``validate``) finite and inside ``value_range`` (+- :data:`RANGE_TOLERANCE`)."""
    if not isinstance(x, torch.Tensor):
        raise ValueError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if not x.is_floating_point():
        raise ValueError(f"{name} must be a float tensor, got dtype {x.dtype}; "
                         "convert uint8 images with x.float() / 255")
    if ndim is not None:
        dims = (ndim,) if isinstance(ndim, int) else tuple(ndim)
        if x.ndim not in dims:
            layout = f" (N, {channels}, H, W)" if channels is not None and dims == (4,) else ""
            raise ValueError(f"{name} must have {' or '.join(map(str, dims))} dimensions{layout}, "
                             f"got shape {tuple(x.shape)}")
    if channels is not None and x.shape[1] != channels:
        raise ValueError(f"{name} must have {channels} channels (N, {channels}, H, W), got shape {tuple(x.shape)}")
    if not _value_checks_on(validate) or x.numel() == 0:
        return
    lo, hi = (float(v) for v in torch.stack(torch.aminmax(x.detach())).tolist())  # one pass, one sync
    if not (math.isfinite(lo) and math.isfinite(hi)):  # NaN propagates into aminmax
        raise ValueError(f"{name} contains NaN or Inf values")
    if value_range is not None:
        a, b = value_range
        if lo < a - RANGE_TOLERANCE or hi > b + RANGE_TOLERANCE:
            what = "[0, 1]" if value_range == (0.0, 1.0) else f"[{a:g}, {b:g}]"
            raise ValueError(f"{name} must be images with values in {what}, got min {lo:.4g} max {hi:.4g}; "
                             "divide uint8 images by 255 and undo any normalisation (or set input_range)")


def check_images(x: torch.Tensor, name: str, *, input_range: str = "[0,1]", validate: bool = True) -> None:
    """``x`` must be float images (N, 3, H, W), N >= 1, in ``input_range`` (see the module docstring)."""
    check_tensor(x, name, ndim=4, channels=3, value_range=check_input_range(input_range), validate=validate)
    if x.shape[0] == 0:
        raise ValueError(f"{name} is an empty batch (shape {tuple(x.shape)}); give at least one image")


def check_pair(a: torch.Tensor, b: torch.Tensor, names: tuple[str, str], *, same_shape: bool = True) -> None:
    """``a`` and ``b`` must have the same batch size (and shape, unless ``same_shape=False``)."""
    if a.shape[0] != b.shape[0]:
        raise ValueError(f"batch mismatch: {names[0]} has {a.shape[0]} items, {names[1]} has {b.shape[0]}")
    if same_shape and a.shape != b.shape:
        raise ValueError(f"shape mismatch: {names[0]} {tuple(a.shape)} vs {names[1]} {tuple(b.shape)}")


def to_unit_range(x: torch.Tensor, input_range: str) -> torch.Tensor:
    """Images in ``input_range`` mapped to ``[0, 1]`` (identity for ``"[0,1]"``)."""
    a, b = check_input_range(input_range)
    return x if (a, b) == (0.0, 1.0) else (x - a) / (b - a)
