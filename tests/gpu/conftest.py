"""GPU tests (``pytest -m gpu tests/gpu``): every test here is marked ``gpu`` and skipped without CUDA.

Nothing excludes them from a plain ``pytest`` run: on a machine without CUDA they are reported as
skipped (that skip keeps CPU-only CI green); on a GPU machine they run. ``tools/gpu_check.sh`` runs
them first. TF32 is switched off in every test, so CUDA results can be compared with the CPU's at
1e-5.
"""

from __future__ import annotations

import pytest
import torch

CUDA = torch.cuda.is_available()


@pytest.fixture(autouse=True)
def _no_tf32():
    """float32 matmuls and convolutions in full precision (TF32 would differ from the CPU by ~1e-3)."""
    if not CUDA:
        yield
        return
    old = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    yield
    torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = old
