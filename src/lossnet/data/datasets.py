"""Whole-split dataset readers: STL-10, SVHN and a user's own image folders.

Training runs from in-memory tensors, so every reader returns a complete split as an
:class:`ImageSet`: ``images`` uint8 ``N x 3 x H x W`` (RGB, channels first, 0..255) and
``labels`` int64 ``N`` (or ``None`` for unlabelled data).

lossnet never downloads anything. The readers look for the official files where
torchvision would (``download=False`` always) and raise one :class:`FileNotFoundError`
saying which files to place where when they are missing.

Integrity checks (torchvision 0.29): ``STL10`` and ``SVHN`` refuse to load unless every
file matches the md5 of the official release (``check_integrity`` -> ``check_md5``), and
``STL10._check_integrity`` hashes *all five* ``.bin`` files whatever the split (so
``split="test"`` needs the 2.6 GB ``unlabeled_X.bin`` present as well). Fabricated test
files (:mod:`lossnet.testing.fakes`) or partial downloads therefore fail there with
``RuntimeError("Dataset not found or corrupted...")``. With ``verify=True`` (default) the
readers go through torchvision first and, when that check fails but the split's own files
exist, read the files with lossnet's reader, which reproduces torchvision's parsing line
for line, and emit a :class:`DatasetIntegrityWarning`. ``verify=False`` skips
torchvision and the md5 hashing and reads directly (no warning).
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional, Sequence

import numpy as np
import torch

from lossnet.types import PathLike

__all__ = [
    "ImageSet",
    "DatasetIntegrityWarning",
    "SPLIT_ROLES",
    "split_roles",
    "load_stl10",
    "load_svhn",
    "load_image_folder",
    "IMAGE_EXTENSIONS",
    "STL10_FILES",
    "SVHN_FILES",
]


class DatasetIntegrityWarning(UserWarning):
    """Files were read by lossnet's reader because torchvision's md5 check rejected them."""


@dataclass
class ImageSet:
    """A whole dataset split held in memory.

    Attributes:
        images: torch.uint8, ``N x 3 x H x W``, RGB, channels first, values 0..255.
        labels: torch.int64, ``N`` (class indices from 0), or ``None`` if unlabelled.
        name: dataset name, e.g. ``"stl10"``, ``"svhn"`` or the folder's name.
        split: split name, e.g. ``"train"``, ``"test"``, ``"unlabeled"``, ``"extra"``.
        classes: class names indexed by label, when known.
    """

    images: torch.Tensor
    labels: Optional[torch.Tensor]
    name: str
    split: str
    classes: Optional[list[str]] = field(default=None)

    def __post_init__(self) -> None:
        if self.images.dtype != torch.uint8 or self.images.ndim != 4 or self.images.shape[1] != 3:
            raise ValueError(
                f"images must be uint8 N x 3 x H x W, got {self.images.dtype} {tuple(self.images.shape)}"
            )
        if self.labels is not None:
            if self.labels.dtype != torch.int64 or self.labels.shape != (self.images.shape[0],):
                raise ValueError(
                    f"labels must be int64 of shape ({self.images.shape[0]},), "
                    f"got {self.labels.dtype} {tuple(self.labels.shape)}"
                )

    def __len__(self) -> int:
        return int(self.images.shape[0])

    def float_images(self, idx: Any = None) -> torch.Tensor:
        """Images (all, or ``images[idx]`` for any first-axis index) as float32 in [0, 1].

        Float is 4x the uint8 size: convert batches (``idx``) for the large splits.
        """
        x = self.images if idx is None else self.images[idx]
        return x.to(torch.float32).div_(255.0)


# --------------------------------------------------------------------------- split roles

# Which split plays which role (encoder = unsupervised autoencoder training, probe =
# downstream predictor training, test = final evaluation). The papers split the encoder and
# probe parts 80% train / 20% validation each.
# Sources: Paper A (Improving autoencoder embeddings with perceptual loss), Sec. VI and
# Table I: Autoencoder = Unaltered / Unlabeled / Extra, Predictor = 80% altered / Training /
# Training, Test = 20% altered / Test / Test (LunarLander / STL-10 / SVHN); thesis Sec. 2.2.1
# ("Both papers use the parts for encoder training, downstream model training, and
# downstream model evaluation, respectively"); Paper B Sec. 3 (as reprinted in the thesis);
# systematic analysis Sec. IV-D, Benchmark 4 ("The auxiliary images are those in the extra
# set from SVHN and the unlabeled images from STL-10"; its Table I lists loss networks, not
# splits). NB: SVHN's *extra* split trains the encoder, not "train": encoder and probe data
# are disjoint on purpose (Paper B Sec. 7, whose one extra trial with MLPs on "extra" is
# the exception). LunarLander-v2: thesis 2.2.1 / Paper B 3.1 use three runs of 700
# rollouts: run 1 -> encoder, run 2 -> probe, run 3 -> test (runs 2-3 drop frames with the
# lander off-screen). Paper A describes the same data as 1400 rollouts: the "unaltered"
# first 700 for the encoder and an 80% / 20% probe / test split of the "altered" rest.
SPLIT_ROLES: dict[str, dict[str, str]] = {
    "stl10": {"encoder": "unlabeled", "probe": "train", "test": "test"},
    "svhn": {"encoder": "extra", "probe": "train", "test": "test"},
    "lunarlander": {"encoder": "run1", "probe": "run2", "test": "run3"},
}


def split_roles(dataset: str) -> dict[str, str]:
    """Role -> split name for ``dataset`` ("stl10", "STL-10", "svhn", "lunarlander[-v2]")."""
    key = dataset.lower().replace("-", "").replace("_", "")
    if key.startswith("lunarlander"):
        key = "lunarlander"
    if key not in SPLIT_ROLES:
        raise ValueError(f"unknown dataset {dataset!r}; known: {sorted(SPLIT_ROLES)}")
    return dict(SPLIT_ROLES[key])


# --------------------------------------------------------------------------- helpers


def _is_not_found_error(err: RuntimeError) -> bool:
    msg = str(err).lower()
    return "not found" in msg or "corrupt" in msg or "integrity" in msg


def _to_uint8_nchw(data: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(data, dtype=np.uint8))


# --------------------------------------------------------------------------- STL-10

STL10_FOLDER = "stl10_binary"
STL10_FILES = ("unlabeled_X.bin", "train_X.bin", "train_y.bin", "test_X.bin", "test_y.bin")
_STL10_SPLIT_FILES = {
    "unlabeled": ("unlabeled_X.bin", None),
    "train": ("train_X.bin", "train_y.bin"),
    "test": ("test_X.bin", "test_y.bin"),
}
_STL10_URL = "https://cs.stanford.edu/~acoates/stl10/"


def _stl10_missing_message(root: Path, split: str, missing: Sequence[str]) -> str:
    base = root / STL10_FOLDER
    msg = (
        f"STL-10 split {split!r}: missing {', '.join(missing)} in {base}. "
        f"lossnet never downloads datasets. Expected the official binary files "
        f"{', '.join(STL10_FILES)} (plus class_names.txt, fold_indices.txt) in {base}/. "
        f"They come from stl10_binary.tar.gz on the STL-10 authors' page at Stanford "
        f"({_STL10_URL}); extract the archive inside {root} so that {base}/ exists."
    )
    if (root / "train_X.bin").exists() or (root / "unlabeled_X.bin").exists():
        msg += f" (Found .bin files directly in {root}: pass its parent directory as root.)"
    return msg


def _read_stl10_bin(path: Path) -> np.ndarray:
    """Official ``*_X.bin`` -> uint8 N x 3 x 96 x 96 (RGB, rows first); as torchvision."""
    everything = np.fromfile(path, dtype=np.uint8)
    if everything.size % (3 * 96 * 96):
        raise ValueError(f"{path}: size {everything.size} B is not a multiple of 3*96*96; file truncated?")
    return np.reshape(everything, (-1, 3, 96, 96)).transpose(0, 1, 3, 2)  # column-major planes


def _read_stl10_direct(
    base: Path, split: str, fold: Optional[int]
) -> tuple[np.ndarray, Optional[np.ndarray]]:
    x_file, y_file = _STL10_SPLIT_FILES[split]
    data = _read_stl10_bin(base / x_file)
    labels = None
    if y_file is not None:
        labels = np.fromfile(base / y_file, dtype=np.uint8).astype(np.int64) - 1  # 1..10 -> 0..9
        if len(labels) != len(data):
            raise ValueError(f"{base / y_file}: {len(labels)} labels for {len(data)} images in {x_file}")
    if fold is not None and split == "train":
        lines = (base / "fold_indices.txt").read_text().splitlines()
        idx = np.array(lines[fold].split(), dtype=np.int64)
        data = data[idx]
        labels = labels[idx] if labels is not None else None
    return data, labels


def load_stl10(root: PathLike, split: str, fold: Optional[int] = None, verify: bool = True) -> ImageSet:
    """Load an STL-10 split from the official binaries in ``root/stl10_binary/``.

    Args:
        root: directory that contains ``stl10_binary/`` (as torchvision's ``STL10``).
        split: ``"unlabeled"`` (100000 images, ~2.8 GB as uint8, labels None),
            ``"train"`` (5000: 500 per class, the papers' "500 labeled images") or ``"test"`` (8000).
        fold: ``0..9`` selects one of the official 1000-image training folds
            (``fold_indices.txt``, split ``"train"`` only); None for the whole split.
        verify: go through ``torchvision.datasets.STL10`` (md5 of all five .bin files);
            if that check fails but the split's files exist, fall back to lossnet's
            reader with a :class:`DatasetIntegrityWarning`. False: read directly.

    Returns:
        ImageSet with images uint8 ``N x 3 x 96 x 96`` (RGB) and labels int64 in 0..9
        (the files store 1..10) or None for ``"unlabeled"``; ``classes`` from
        ``class_names.txt`` when present.

    Raises:
        FileNotFoundError: the split's files are missing (message says what/where).
    """
    if split not in _STL10_SPLIT_FILES:
        raise ValueError(f"STL-10 split must be one of {tuple(_STL10_SPLIT_FILES)}, got {split!r}")
    if fold is not None and (split != "train" or fold not in range(10)):
        raise ValueError("fold must be None or 0..9, and only with split='train'")
    root = Path(root).expanduser()
    base = root / STL10_FOLDER
    needed = [f for f in _STL10_SPLIT_FILES[split] if f is not None]
    if fold is not None:
        needed.append("fold_indices.txt")
    missing = [f for f in needed if not (base / f).is_file()]
    if missing:
        raise FileNotFoundError(_stl10_missing_message(root, split, missing))

    data: Optional[np.ndarray] = None
    labels: Optional[np.ndarray] = None
    if verify:
        from torchvision.datasets import STL10

        try:
            ds = STL10(os.fspath(root), split=split, folds=fold, download=False)
            data, labels = ds.data, ds.labels
        except RuntimeError as err:
            if not _is_not_found_error(err):
                raise
            missing = [f for f in needed if not (base / f).is_file()]
            if missing:
                raise FileNotFoundError(_stl10_missing_message(root, split, missing)) from err
            absent = [f for f in STL10_FILES if not (base / f).is_file()]
            why = f"{', '.join(absent)} absent" if absent else "md5 differs from the official release"
            warnings.warn(
                f"torchvision's STL-10 integrity check failed in {base} ({why}); "
                f"read split {split!r} with lossnet's reader of the official binary format.",
                DatasetIntegrityWarning,
                stacklevel=2,
            )
    if data is None:
        data, labels = _read_stl10_direct(base, split, fold)

    images = _to_uint8_nchw(data)
    del data
    label_t = None
    if labels is not None and split != "unlabeled":
        label_t = torch.from_numpy(np.asarray(labels, dtype=np.int64).copy())
    class_file = base / "class_names.txt"
    classes = class_file.read_text().splitlines() if class_file.is_file() else None
    return ImageSet(images, label_t, "stl10", split, classes)


# --------------------------------------------------------------------------- SVHN

SVHN_FILES = {"train": "train_32x32.mat", "test": "test_32x32.mat", "extra": "extra_32x32.mat"}
_SVHN_URL = "http://ufldl.stanford.edu/housenumbers/"
_SVHN_MODES = ("tile", "reflect", "resize")


def _svhn_missing_message(root: Path, split: str) -> str:
    return (
        f"SVHN split {split!r}: missing {root / SVHN_FILES[split]}. lossnet never downloads "
        f"datasets. Expected the official cropped-digit files {', '.join(SVHN_FILES.values())} "
        f"(\"Format 2: Cropped Digits\", MATLAB .mat) directly in {root}/. They come from the "
        f"SVHN page ({_SVHN_URL})."
    )


def _read_svhn_direct(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Official ``*_32x32.mat`` -> (uint8 N x 3 x 32 x 32, int64 N in 0..9), as torchvision."""
    import scipy.io as sio

    loaded = sio.loadmat(os.fspath(path))
    # torchvision uses .squeeze(), which for N == 1 gives a 0-d array; reshape(-1) is the same otherwise
    labels = loaded["y"].astype(np.int64).reshape(-1)
    np.place(labels, labels == 10, 0)  # SVHN stores digit 0 as label 10
    data = np.transpose(loaded["X"], (3, 2, 0, 1))  # (H, W, C, N) -> (N, C, H, W)
    if len(labels) != len(data):
        raise ValueError(f"{path}: {len(labels)} labels for {len(data)} images")
    return data, labels


def _reflect_index(n: int, pad: int) -> torch.Tensor:
    return torch.from_numpy(np.pad(np.arange(n), pad, mode="reflect"))


def _svhn_to_size(images: torch.Tensor, size: int, mode: str, chunk: int = 8192) -> torch.Tensor:
    n, _, h, _ = images.shape
    if size == h:
        return images
    if mode == "tile":
        if size % h:
            raise ValueError(f"mode='tile' needs size a multiple of {h}, got {size}")
        k = size // h
        return images.repeat(1, 1, k, k)
    if mode == "reflect":
        pad = (size - h) // 2
        if (size - h) % 2 or not 0 < pad < h:
            raise ValueError(f"mode='reflect' needs size = {h} + 2*pad with 0 < pad < {h}, got {size}")
        idx = _reflect_index(h, pad)
        return images[:, :, idx][:, :, :, idx].contiguous()
    if mode == "resize":
        import torch.nn.functional as F

        out = torch.empty((n, 3, size, size), dtype=torch.uint8)
        for s in range(0, n, chunk):
            x = images[s : s + chunk].to(torch.float32)
            y = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)
            out[s : s + chunk] = y.round_().clamp_(0, 255).to(torch.uint8)
        return out
    raise ValueError(f"mode must be one of {_SVHN_MODES}, got {mode!r}")


def load_svhn(
    root: PathLike,
    split: str,
    size: int = 64,
    mode: str = "tile",
    verify: bool = True,
) -> ImageSet:
    """Load an SVHN cropped-digit split from ``root/{train,test,extra}_32x32.mat``.

    The 32x32 digits are brought to ``size x size`` (the autoencoders take 64x64):

    * ``mode="tile"`` (default; Paper A, Sec. V: "each image duplicated into a 2-by-2 grid
      of 64x64 pixels"): ``out[..., :32, :32] == out[..., 32:, 32:] == original``.
    * ``mode="reflect"`` (systematic analysis, Sec. IV-D, Benchmark 4: "scaled up to 64x64
      images through reflection padding"): reflect-pad ``(size-32)/2`` px per side, edge pixel not
      repeated (``numpy``/``torch`` "reflect"); centre ``[16:48, 16:48]`` == original.
    * ``mode="resize"``: bilinear upsampling (``align_corners=False``), rounded to uint8.

    ``size=32`` returns the images as stored. Memory: ``extra`` at 64x64 is ~6.5 GB uint8.

    Args:
        root: directory holding the ``*_32x32.mat`` files (as torchvision's ``SVHN``).
        split: ``"train"`` (73257), ``"test"`` (26032) or ``"extra"`` (531131).
        verify: go through ``torchvision.datasets.SVHN``, which md5-checks the .mat; if it
            rejects an existing file (e.g. fabricated test data), read it with
            ``scipy.io.loadmat`` exactly as torchvision does (same axis order, 10 -> 0) and
            warn with :class:`DatasetIntegrityWarning`. False: read directly.

    Returns:
        ImageSet, images uint8 ``N x 3 x size x size`` (RGB), labels int64 digits 0..9.
    """
    if split not in SVHN_FILES:
        raise ValueError(f"SVHN split must be one of {tuple(SVHN_FILES)}, got {split!r}")
    if mode not in _SVHN_MODES:
        raise ValueError(f"mode must be one of {_SVHN_MODES}, got {mode!r}")
    root = Path(root).expanduser()
    path = root / SVHN_FILES[split]
    if not path.is_file():
        raise FileNotFoundError(_svhn_missing_message(root, split))

    data: Optional[np.ndarray] = None
    labels: Optional[np.ndarray] = None
    if verify:
        from torchvision.datasets import SVHN

        try:
            ds = SVHN(os.fspath(root), split=split, download=False)
            data, labels = ds.data, np.asarray(ds.labels, dtype=np.int64).reshape(-1)
        except RuntimeError as err:
            if not _is_not_found_error(err):
                raise
            if not path.is_file():
                raise FileNotFoundError(_svhn_missing_message(root, split)) from err
            warnings.warn(
                f"torchvision's SVHN integrity check rejected {path} (md5 differs from the "
                f"official release); read it with lossnet's reader of the official .mat format.",
                DatasetIntegrityWarning,
                stacklevel=2,
            )
    if data is None:
        try:
            data, labels = _read_svhn_direct(path)
        except Exception as e:  # noqa: BLE001 - scipy.io raises many kinds on a corrupt file
            raise ValueError(f"{path} is not a readable SVHN .mat file ({type(e).__name__}: {str(e)[:100]}); "
                             f"download it again from http://ufldl.stanford.edu/housenumbers/") from None

    images = _svhn_to_size(_to_uint8_nchw(data), size, mode)
    del data
    label_t = torch.from_numpy(np.asarray(labels, dtype=np.int64).copy())
    return ImageSet(images, label_t, "svhn", split, [str(d) for d in range(10)])


# --------------------------------------------------------------------------- image folders

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".webp")


def _load_square(path: Path, size: int) -> np.ndarray:
    from PIL import Image

    from lossnet.data.images import open_rgb

    im = open_rgb(path)  # 16-bit scaled, transparency on white, unreadable -> ValueError
    w, h = im.size
    s = min(w, h)
    left, top = int(round((w - s) / 2.0)), int(round((h - s) / 2.0))  # as torchvision CenterCrop
    im = im.crop((left, top, left + s, top + s))
    if s != size:
        im = im.resize((size, size), Image.Resampling.BILINEAR)
    return np.array(im, dtype=np.uint8).transpose(2, 0, 1)


def load_image_folder(
    root: PathLike,
    size: int = 64,
    exts: Sequence[str] = IMAGE_EXTENSIONS,
    recursive: bool = True,
    max_images: Optional[int] = None,
) -> ImageSet:
    """Load a user's own images from a folder.

    Each image is read by :func:`lossnet.data.images.open_rgb` (EXIF-rotated, 16-bit scaled to 8,
    transparency composited on white, fully transparent files refused), centre-cropped to a square (side =
    shorter edge, offsets as torchvision's ``CenterCrop``) and resized to ``size x size``
    with PIL bilinear resampling (antialiased when shrinking). Files are taken in sorted
    order of their path relative to ``root``; extensions match case-insensitively;
    ``max_images`` keeps the first ones in that order.

    Labels follow torchvision's ``ImageFolder``: if every image lies below a first-level
    sub-folder (``root/<class>/.../img.png``), labels index the sorted sub-folder names
    (``classes``); if any image sits directly in ``root``, labels are None.

    Returns:
        ImageSet named after the folder, split ``"all"``, images uint8 ``N x 3 x size x size``.

    Raises:
        FileNotFoundError: ``root`` is not a directory.
        ValueError: no image with one of ``exts`` found.
    """
    root = Path(root).expanduser()
    if not root.is_dir():
        raise FileNotFoundError(f"image folder {root} does not exist or is not a directory")
    suffixes = tuple(e.lower() if e.startswith(".") else "." + e.lower() for e in exts)
    candidates = root.rglob("*") if recursive else root.iterdir()
    rel = sorted(
        (p.relative_to(root) for p in candidates if p.is_file() and p.suffix.lower() in suffixes),
        key=lambda r: r.as_posix(),
    )
    if max_images is not None:
        rel = rel[: max(0, int(max_images))]
    if not rel:
        where = "recursively under" if recursive else "directly in"
        raise ValueError(f"no images with extensions {', '.join(suffixes)} found {where} {root}")

    images = torch.empty((len(rel), 3, size, size), dtype=torch.uint8)
    for i, r in enumerate(rel):
        images[i] = torch.from_numpy(_load_square(root / r, size))

    labels, classes = None, None
    if all(len(r.parts) >= 2 for r in rel):
        classes = sorted({r.parts[0] for r in rel})
        index = {c: i for i, c in enumerate(classes)}
        labels = torch.tensor([index[r.parts[0]] for r in rel], dtype=torch.int64)
    return ImageSet(images, labels, root.resolve().name, "all", classes)
