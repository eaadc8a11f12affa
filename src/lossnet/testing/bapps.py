"""Tiny fabricated BAPPS folders in the *official* on-disk layout, for tests.

The layout is the one the PerceptualSimilarity project's ``scripts/download_dataset.sh``
unpacks and its ``data/dataset/{twoafc,jnd}_dataset.py`` read::

    ROOT/2afc/{train,val}/{category}/ref/000000.png   reference patch
    ROOT/2afc/{train,val}/{category}/p0/000000.png    distortion 0
    ROOT/2afc/{train,val}/{category}/p1/000000.png    distortion 1
    ROOT/2afc/{train,val}/{category}/judge/000000.npy fraction of humans preferring p1, in [0, 1]
    ROOT/jnd/val/{category}/p0/000000.png             first patch of a pair
    ROOT/jnd/val/{category}/p1/000000.png             second patch
    ROOT/jnd/val/{category}/same/000000.npy           fraction of humans calling the pair the same

PNG patches are RGB, 64 x 64; each ``.npy`` holds one float. The writer returns exactly what a
reader must give back: images as ``uint8`` arrays ``(N, 3, H, W)`` and judgements as ``float32``
``(N,)``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Mapping, Optional, Sequence, Union

import numpy as np
from PIL import Image

from lossnet.types import PathLike

__all__ = ["write_fake_bapps", "write_png_chw", "write_scalar_npy"]

JudgeSpec = Union[None, float, Mapping[str, float]]


def write_png_chw(path: PathLike, img: np.ndarray) -> None:
    """Write one ``uint8`` (3, H, W) image as an RGB PNG."""
    Image.fromarray(np.ascontiguousarray(img.transpose(1, 2, 0))).save(path)


def write_scalar_npy(path: PathLike, value: float) -> None:
    """Write one judgement as a 1-element ``float32`` ``.npy`` file (read back with ``reshape``)."""
    np.save(path, np.array([value], dtype=np.float32))


def _judges(rng: np.random.Generator, n: int, spec: JudgeSpec, category: str, votes: int) -> np.ndarray:
    if isinstance(spec, Mapping):
        spec = spec.get(category)
    if spec is None:  # fractions of `votes` human judgements, as in the real data
        return (rng.integers(0, votes + 1, size=n) / votes).astype(np.float32)
    return np.full(n, float(spec), dtype=np.float32)


def write_fake_bapps(
    root: PathLike,
    *,
    split: str = "val",
    categories_2afc: Sequence[str] = ("traditional", "cnn"),
    categories_jnd: Optional[Sequence[str]] = ("traditional", "cnn"),
    n: int = 4,
    size: int = 64,
    seed: int = 0,
    judge: JudgeSpec = None,
    same: JudgeSpec = None,
    p0_is_ref: bool = False,
) -> dict:
    """Fabricate a tiny BAPPS under ``root`` (the folder that holds ``2afc/`` and ``jnd/``).

    Args:
        split: 2AFC split to write (``"val"`` or ``"train"``); JND is always ``val``.
        categories_2afc / categories_jnd: category folders to write (``None`` / empty: no JND).
        n: triplets (pairs) per category; ``size``: patch side in pixels.
        judge / same: a constant, a ``{category: constant}`` mapping, or ``None`` for random
            vote fractions (k/5 for 2AFC, k/3 for JND, like the real data).
        p0_is_ref: make every ``p0`` an exact copy of ``ref`` (and in JND ``p1`` of pair i an
            exact copy of ``p0`` for even i), so distances are known by construction.

    Returns:
        ``{"2afc": {cat: {"ref", "p0", "p1", "judge"}}, "jnd": {cat: {"p0", "p1", "same"}}}``
        with ``uint8`` (N, 3, size, size) images and ``float32`` (N,) judgements.
    """
    root = Path(root)
    rng = np.random.default_rng(seed)
    out: dict = {"2afc": {}, "jnd": {}}

    def images() -> np.ndarray:
        return rng.integers(0, 256, size=(n, 3, size, size), dtype=np.uint8)

    for cat in categories_2afc:
        base = root / "2afc" / split / cat
        ref, p1 = images(), images()
        p0 = ref.copy() if p0_is_ref else images()
        j = _judges(rng, n, judge, cat, votes=5)
        for sub in ("ref", "p0", "p1", "judge"):
            (base / sub).mkdir(parents=True, exist_ok=True)
        for i in range(n):
            name = f"{i:06d}"
            write_png_chw(base / "ref" / f"{name}.png", ref[i])
            write_png_chw(base / "p0" / f"{name}.png", p0[i])
            write_png_chw(base / "p1" / f"{name}.png", p1[i])
            write_scalar_npy(base / "judge" / f"{name}.npy", j[i])
        out["2afc"][cat] = {"ref": ref, "p0": p0, "p1": p1, "judge": j}

    for cat in categories_jnd or ():
        base = root / "jnd" / "val" / cat
        p0, p1 = images(), images()
        if p0_is_ref:
            p1[::2] = p0[::2]
        s = _judges(rng, n, same, cat, votes=3)
        for sub in ("p0", "p1", "same"):
            (base / sub).mkdir(parents=True, exist_ok=True)
        for i in range(n):
            name = f"{i:06d}"
            write_png_chw(base / "p0" / f"{name}.png", p0[i])
            write_png_chw(base / "p1" / f"{name}.png", p1[i])
            write_scalar_npy(base / "same" / f"{name}.npy", s[i])
        out["jnd"][cat] = {"p0": p0, "p1": p1, "same": s}
    return out
