"""Errors the user can fix. A leaf module: it imports nothing of lossnet, so every layer can raise them.

The command line prints any of these as one line (``lossnet: error: ...``) and exits 2; anything
else is a bug and keeps its traceback.
"""

from __future__ import annotations

__all__ = ["ChecksumError", "ConfigError", "InputError", "InvalidWeightsError", "SweepError", "UserError",
           "WeightsUnavailableError", "ZooError"]


class UserError(Exception):
    """An error whose message tells the user what to do; printed without a traceback."""


class ConfigError(UserError, ValueError):
    """A bad setting (unknown key, dataset, procedure, value out of range ...); printed as one line."""


class InputError(UserError, ValueError):
    """Unusable input named by the user (a folder, an output directory, an image size); the message
    names it and the fix. A ``ValueError`` too, for library callers."""


class SweepError(UserError):
    """Some cells failed (their tracebacks were logged); rerun the same command to retry them."""


class ZooError(ConfigError):
    """A loss-network zoo request that cannot be met: unknown architecture, layer or preset, bad arguments,
    missing or bad weights (a :class:`ConfigError`: the fix is a different setting or fetching the weights)."""


class WeightsUnavailableError(ZooError):
    """No source could provide pretrained weights for an architecture (the message says how to get them)."""


class InvalidWeightsError(ZooError):
    """A weights file or state dict is unusable: not a regular file, empty, truncated, unreadable, or
    content that does not fit its architecture (keys, shapes, dtype, non-finite values)."""


class ChecksumError(UserError, ValueError):
    """A file does not match the sha256 (or size) recorded for it: corrupted, truncated or replaced."""
