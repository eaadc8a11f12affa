"""Type aliases shared by every layer. A leaf module: it imports nothing of lossnet."""

from __future__ import annotations

import os
from typing import Union

__all__ = ["PathLike"]

PathLike = Union[str, os.PathLike]
"""A file or folder path: a ``str`` or any ``os.PathLike`` (``pathlib.Path``, ...)."""
