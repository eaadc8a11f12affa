"""Shared by the GPU tests: the device under test and the ``gpu`` marks.

``DEV`` is ``cuda`` unless ``$LOSSNET_GPU_TESTS_ON`` names another device: ``LOSSNET_GPU_TESTS_ON=cpu``
runs the same tests on the CPU against the CPU, a dry run that checks the tests themselves on a
machine without a GPU (it proves nothing about CUDA; tests that need CUDA itself stay skipped).
"""

from __future__ import annotations

import os

import pytest
import torch

DEV = os.environ.get("LOSSNET_GPU_TESTS_ON", "cuda")
CUDA = torch.cuda.is_available()
ON_CUDA = DEV.startswith("cuda")
needs_device = pytest.mark.skipif(ON_CUDA and not CUDA, reason="needs CUDA (torch.cuda.is_available() is False)")
needs_cuda = pytest.mark.skipif(not (ON_CUDA and CUDA), reason="needs CUDA itself (no CPU dry run)")
GPU = [pytest.mark.gpu, needs_device]
