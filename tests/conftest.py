"""Shared fixtures: the offline weights (fetched once by `make test`), real photographs, tiny data.

Real photographs come from ``../shared/data/sr`` beside the checkout (or ``$LOSSNET_SHARED/data/sr``);
on a clone without it, :func:`sr_dir` falls back to the small crops shipped in ``tests/data/sr``
and the few tests that need the full sets (:func:`sr_full_dir`) skip with one line saying where
to put the folder.
"""

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
SHIPPED_SR = REPO / "tests" / "data" / "sr"
"""128 px crops of five photographs of the SR sets, same sub-folder names (tests/data/sr/README.md)."""


def shared_dir() -> Path:
    """The read-only ../shared folder beside the checkout (or $LOSSNET_SHARED)."""
    return Path(os.environ.get("LOSSNET_SHARED", REPO.parent / "shared"))


@pytest.fixture(scope="session")
def offline_weights():
    """Make sure the three offline-available architectures are fetched (a no-op after `make weights`)."""
    from lossnet.zoo import fetch

    return {a: fetch(a) for a in OFFLINE_ARCHS}


def shared_sr_dir() -> Path:
    """``<shared>/data/sr``: the full SR sets (CSet5, CSet14, CBSD68, CSun_Hays80), which may be absent."""
    return shared_dir() / "data" / "sr"


@pytest.fixture(scope="session")
def sr_dir() -> Path:
    """Some real photographs in the SR sets' layout (``CSet14/``, ``CBSD68/``): the full sets of
    :func:`shared_sr_dir` when present, else the crops shipped in ``tests/data/sr``."""
    d = shared_sr_dir()
    return d if d.is_dir() else SHIPPED_SR


@pytest.fixture(scope="session")
def sr_full_dir() -> Path:
    """The full SR sets; skips (one line: where to put them) on a clone without the shared folder."""
    d = shared_sr_dir()
    if not d.is_dir():
        pytest.skip(f"needs the full SR sets in {d}: put the shared folder beside the checkout or set LOSSNET_SHARED")
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
