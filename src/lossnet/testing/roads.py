"""Fabricated Massachusetts Roads files in the official layout (tests and smoke runs)."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

from lossnet.types import PathLike

__all__ = ["write_fake_massachusetts"]


def write_fake_massachusetts(root: PathLike, counts: dict[str, int] | None = None, size: int = 64, *,
                             layout: str = "tiff", val_name: str = "val", seed: int = 0,
                             blank_stems: Sequence[str] = ()) -> Path:
    """Fabricate tiny files in the official MRD layout (for tests): RGB ``.tiff`` images with a
    grey road on green and ``.tif`` labels (mode L, 0/255), ``counts`` per split (default
    train 2, val 1, test 1), ``layout="tiff"`` (``root/tiff/...``) or ``"flat"``. The i-th image of
    the k-th split (in ``counts`` order) has the stem ``f"{10000000 + 100 * k + i}_{i}"``. Images whose
    stem is in ``blank_stems`` get their right half painted white (no-data). Returns ``root``."""
    from PIL import Image

    root = Path(root)
    base = root / "tiff" if layout == "tiff" else root
    counts = counts or {"train": 2, val_name: 1, "test": 1}
    rng = np.random.default_rng(seed)
    for k, (split, n) in enumerate(counts.items()):
        (base / split).mkdir(parents=True, exist_ok=True)
        (base / f"{split}_labels").mkdir(parents=True, exist_ok=True)
        for i in range(n):
            stem = f"{10000000 + 100 * k + i}_{i}"
            img = np.zeros((size, size, 3), np.uint8)
            img[...] = (60, 110, 50)
            img = np.clip(img + rng.integers(-10, 10, img.shape), 0, 255).astype(np.uint8)
            lab = np.zeros((size, size), np.uint8)
            r = int(rng.integers(size // 4, 3 * size // 4))
            lab[r - 2:r + 2, :] = 255
            img[lab > 0] = (150, 150, 150)
            if stem in blank_stems:
                img[:, size // 2:] = 255
                lab[:, size // 2:] = 0
            Image.fromarray(img).save(base / split / f"{stem}.tiff")
            Image.fromarray(lab).save(base / f"{split}_labels" / f"{stem}.tif")
    return root
