"""Shared fixtures: the offline weights (fetched once by `make test`), ../shared, tiny data."""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import pytest
import torch

warnings.filterwarnings("ignore", message=".*not writable.*")
torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))

REPO = Path(__file__).resolve().parents[1]
OFFLINE_ARCHS = ("alexnet", "vgg16", "efficientnet_lite0")


def shared_dir() -> Path:
    """The read-only ../shared folder beside the checkout (or $LOSSNET_SHARED)."""
    return Path(os.environ.get("LOSSNET_SHARED", REPO.parent / "shared"))


@pytest.fixture(scope="session")
def offline_weights():
    """Make sure the three offline-available architectures are fetched (a no-op after `make weights`)."""
    from lossnet.zoo import fetch

    return {a: fetch(a) for a in OFFLINE_ARCHS}


@pytest.fixture(scope="session")
def sr_dir() -> Path:
    d = shared_dir() / "data" / "sr"
    assert d.exists(), f"{d} is missing: tests expect ../shared beside the checkout (or set LOSSNET_SHARED)"
    return d


@pytest.fixture
def random_png_folder(tmp_path):
    """``make(n, name="{i:02d}.png") -> Path``: a folder ``tmp_path/imgs`` of ``n`` seeded random
    64x64 RGB PNGs (the image folders that `lossnet pretrain` reads)."""
    import numpy as np
    from PIL import Image

    def make(n: int, name: str = "{i:02d}.png") -> Path:
        folder = tmp_path / "imgs"
        folder.mkdir()
        rng = np.random.default_rng(0)
        for i in range(n):
            Image.fromarray(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(folder / name.format(i=i))
        return folder

    return make
