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


class DeviceReportBench:
    """A stand-in benchmark for the launcher test (module level: workers unpickle it): each cell
    sleeps ``seconds`` (so every worker gets cells), computes a sum on the cell's device and reports
    the worker's ``CUDA_VISIBLE_DEVICES`` and how many GPUs it sees."""

    def __init__(self, seconds: float = 1.0) -> None:
        self.seconds = seconds

    def run(self, req) -> dict:
        import time

        time.sleep(self.seconds)
        dev = torch.device(req.cfg["device"])
        x = torch.arange(10.0, device=dev)
        return {"scores": {"visible": os.environ.get("CUDA_VISIBLE_DEVICES"), "pid": os.getpid(),
                           "gpus_seen": torch.cuda.device_count() if dev.type == "cuda" else 0,
                           "total": float(x.sum().item()), "on": x.device.type}, "details": {}}
