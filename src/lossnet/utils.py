"""Small helpers every layer shares: the cache root, device choice, progress lines.

A leaf module (imports nothing of lossnet but :mod:`lossnet.errors`).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import torch

__all__ = ["best_device", "log", "lossnet_home", "module_device"]


def lossnet_home() -> Path:
    """Root of lossnet's cache: ``$LOSSNET_HOME``, default ``~/.cache/lossnet``."""
    return Path(os.environ.get("LOSSNET_HOME", Path.home() / ".cache" / "lossnet")).expanduser()


def best_device(preferred: str | torch.device | None = None) -> torch.device:
    """``preferred`` when given (e.g. a ``device:`` setting), else CUDA when present, else CPU."""
    if preferred:
        return torch.device(preferred)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def module_device(m: torch.nn.Module) -> torch.device:
    """The device of a module's first parameter or buffer (CPU for an empty module)."""
    for t in (*m.parameters(), *m.buffers()):
        return t.device
    return torch.device("cpu")


def log(msg: str) -> None:
    """One progress line on stderr (kept out of stdout, which stays machine-readable)."""
    print(msg, file=sys.stderr, flush=True)
