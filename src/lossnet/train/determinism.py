"""Deterministic training: ``FitConfig(deterministic=True)`` / ``deterministic: true`` in a
training section of the YAML configs (``encoder``, ``train``; docs/reliability.md).

What it guarantees: two runs of the same code with the same settings and data on the same
machine (same hardware, library versions and ``torch.get_num_threads()``) give bit-identical
weights, histories and scores (tested in ``tests/test_determinism.py``). Across machines, thread
counts or library versions floating-point summation orders differ and results agree only within
the spread over seeds that the docs state.

:func:`deterministic_mode` turns on ``torch.use_deterministic_algorithms(True)`` (operations
without a deterministic implementation raise instead of running non-deterministically), turns off
cuDNN autotuning, sets ``CUBLAS_WORKSPACE_CONFIG=:4096:8`` when CUDA is used and the variable is
unset (cuBLAS reads it when its handle is created: set it in the environment before starting the
process if CUDA was used earlier in it), and seeds Python's ``random``, NumPy's global generator
and torch (every device) with ``seed``; on exit the previous algorithm settings are restored.
"""

from __future__ import annotations

import contextlib
import os
import random
from typing import Iterator

import numpy as np
import torch

__all__ = ["CUBLAS_WORKSPACE", "deterministic_mode", "seed_everything"]

CUBLAS_WORKSPACE = ":4096:8"
"""The ``CUBLAS_WORKSPACE_CONFIG`` value that makes cuBLAS deterministic (CUDA >= 10.2)."""


def seed_everything(seed: int) -> None:
    """Seed Python's ``random``, NumPy's global generator and torch (CPU and every CUDA device)."""
    random.seed(int(seed))
    np.random.seed(int(seed) % 2**32)
    torch.manual_seed(int(seed))


@contextlib.contextmanager
def deterministic_mode(seed: int, device: torch.device | str = "cpu") -> Iterator[None]:
    """Deterministic algorithms and seeded generators inside the block (module docstring)."""
    if torch.device(device).type == "cuda" and not os.environ.get("CUBLAS_WORKSPACE_CONFIG"):
        os.environ["CUBLAS_WORKSPACE_CONFIG"] = CUBLAS_WORKSPACE
    was = (torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled())
    cudnn = (torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark)
    torch.use_deterministic_algorithms(True)
    torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = True, False
    seed_everything(seed)
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(was[0], warn_only=was[1])
        torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = cudnn
