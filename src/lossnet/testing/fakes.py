"""Tiny fabricated STL-10 and SVHN files in the *official* on-disk formats, for tests.

The files are written byte-for-byte in the layouts the datasets' authors publish, so the
readers in :mod:`lossnet.data.datasets` (and torchvision's) parse them as real data. They
never match the official md5 sums, so torchvision's integrity checks reject them (see
:func:`lossnet.data.datasets.load_stl10`); lossnet's readers then read them faithfully.

Every writer returns what a reader should give back: images as ``uint8`` arrays of shape
``N x 3 x H x W`` (RGB, channels first) and labels as ``int64`` in ``0..9``.

Image 0 of every fabricated split is an orientation marker rather than noise:
``R[y, x] = k*x``, ``G[y, x] = k*y``, ``B = 128`` with ``k = 2`` (STL-10, 96 px) or ``6``
(SVHN, 32 px); so red grows along a row (left to right), green down a column. A transposed or
channel-swapped reader fails on it. The other images are uniform random noise.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Optional

import numpy as np

from lossnet.types import PathLike

__all__ = [
    "STL10_CLASSES",
    "orientation_marker",
    "write_stl10_images",
    "write_stl10_labels",
    "write_fake_stl10",
    "write_svhn_mat",
    "write_fake_svhn",
]

STL10_CLASSES = ("airplane", "bird", "car", "cat", "deer", "dog", "horse", "monkey", "ship", "truck")


def orientation_marker(size: int) -> np.ndarray:
    """``3 x size x size`` uint8 image with R = k*x, G = k*y, B = 128, k = 192 // size."""
    k = max(1, 192 // size)
    ramp = (np.arange(size) * k).astype(np.uint8)
    img = np.empty((3, size, size), dtype=np.uint8)
    img[0] = ramp[None, :]  # red varies along x (columns)
    img[1] = ramp[:, None]  # green varies along y (rows)
    img[2] = 128
    return img


def _fake_images(rng: np.random.Generator, n: int, size: int) -> np.ndarray:
    images = rng.integers(0, 256, size=(n, 3, size, size), dtype=np.uint8)
    if n > 0:
        images[0] = orientation_marker(size)
    return images


def _fake_labels(rng: np.random.Generator, n: int) -> np.ndarray:
    # every class appears once n >= 10
    return rng.permutation(np.arange(n) % 10).astype(np.int64)


# ----------------------------------------------------------------------------- STL-10


def write_stl10_images(path: PathLike, images: np.ndarray) -> None:
    """Write ``images`` (uint8, N x 3 x 96 x 96, RGB, rows first) as an STL-10 ``*_X.bin``.

    Official layout: raw uint8, no header, per image 3 channel planes (R, G, B), each plane
    stored column-major (all of column 0 top to bottom, then column 1, ...).
    """
    images = np.asarray(images)
    if images.dtype != np.uint8 or images.ndim != 4 or images.shape[1:] != (3, 96, 96):
        raise ValueError(f"expected uint8 N x 3 x 96 x 96, got {images.dtype} {images.shape}")
    np.ascontiguousarray(images.transpose(0, 1, 3, 2)).tofile(os.fspath(path))


def write_stl10_labels(path: PathLike, labels: np.ndarray) -> None:
    """Write 0-based ``labels`` (0..9) as an STL-10 ``*_y.bin``: raw uint8, 1..10."""
    labels = np.asarray(labels)
    if labels.size and (labels.min() < 0 or labels.max() > 9):
        raise ValueError("STL-10 labels must be in 0..9 (written as 1..10)")
    (labels.astype(np.uint8) + 1).tofile(os.fspath(path))


def write_fake_stl10(
    root: PathLike,
    n_unlabeled: int = 20,
    n_train: int = 10,
    n_test: int = 10,
    seed: int = 0,
) -> dict[str, dict[str, Optional[np.ndarray]]]:
    """Fabricate an STL-10 directory ``root/stl10_binary/`` in the official binary format.

    Writes ``unlabeled_X.bin, train_X.bin, train_y.bin, test_X.bin, test_y.bin,
    class_names.txt`` and ``fold_indices.txt`` (10 lines of space-separated 0-based train
    indices, ``max(1, n_train // 5)`` each, like the official 1000-of-5000 folds).

    Returns ``{"unlabeled" | "train" | "test": {"images": uint8 N x 3 x 96 x 96,
    "labels": int64 N in 0..9 or None}}`` -- exactly what a correct reader returns -- plus
    ``"folds": list of 10 int64 index arrays``.
    """
    rng = np.random.default_rng(seed)
    base = Path(root) / "stl10_binary"
    base.mkdir(parents=True, exist_ok=True)
    out: dict = {}
    plan = (("unlabeled", n_unlabeled, False), ("train", n_train, True), ("test", n_test, True))
    for split, n, labelled in plan:
        images = _fake_images(rng, n, 96)
        labels = _fake_labels(rng, n) if labelled else None
        write_stl10_images(base / f"{split}_X.bin", images)
        if labels is not None:
            write_stl10_labels(base / f"{split}_y.bin", labels)
        out[split] = {"images": images, "labels": labels}
    (base / "class_names.txt").write_text("\n".join(STL10_CLASSES) + "\n")
    per_fold = min(n_train, max(1, n_train // 5))
    folds = [np.sort(rng.choice(n_train, size=per_fold, replace=False)).astype(np.int64) for _ in range(10)]
    (base / "fold_indices.txt").write_text("".join(" ".join(map(str, f)) + " \n" for f in folds))
    out["folds"] = folds
    return out


# ----------------------------------------------------------------------------- SVHN


def write_svhn_mat(path: PathLike, images: np.ndarray, labels: np.ndarray) -> None:
    """Write an SVHN "format 2" ``*_32x32.mat`` (MATLAB v5) from readers' conventions.

    ``images``: uint8 N x 3 x 32 x 32 (RGB, rows first); ``labels``: digits 0..9.
    Stored as in the official files: ``X`` uint8 of shape (32, 32, 3, N) indexed
    ``X[row, col, channel, n]``, ``y`` uint8 of shape (N, 1) with the digit 0 stored as 10.
    """
    from scipy.io import savemat

    images = np.asarray(images)
    labels = np.asarray(labels).reshape(-1)
    if images.dtype != np.uint8 or images.ndim != 4 or images.shape[1:] != (3, 32, 32):
        raise ValueError(f"expected uint8 N x 3 x 32 x 32, got {images.dtype} {images.shape}")
    if len(labels) != len(images) or (labels.size and (labels.min() < 0 or labels.max() > 9)):
        raise ValueError("expected one digit 0..9 per image")
    X = np.ascontiguousarray(images.transpose(2, 3, 1, 0))  # N,C,H,W -> H,W,C,N
    y = np.where(labels == 0, 10, labels).astype(np.uint8).reshape(-1, 1)
    savemat(os.fspath(path), {"X": X, "y": y}, format="5")


def write_fake_svhn(
    root: PathLike,
    n_train: int = 20,
    n_test: int = 10,
    seed: int = 0,
    n_extra: int = 0,
) -> dict[str, dict[str, np.ndarray]]:
    """Fabricate ``root/train_32x32.mat`` and ``root/test_32x32.mat`` (and
    ``root/extra_32x32.mat`` when ``n_extra > 0``) in the official SVHN format 2.

    Returns ``{split: {"images": uint8 N x 3 x 32 x 32, "labels": int64 N in 0..9}}``,
    i.e. what a correct reader returns (digit 0 is label 0; the file stores 10).
    """
    rng = np.random.default_rng(seed)
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    out = {}
    splits = [("train", n_train), ("test", n_test)] + ([("extra", n_extra)] if n_extra > 0 else [])
    for split, n in splits:
        images = _fake_images(rng, n, 32)
        labels = _fake_labels(rng, n)
        write_svhn_mat(root / f"{split}_32x32.mat", images, labels)
        out[split] = {"images": images, "labels": labels}
    return out
