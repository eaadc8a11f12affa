"""Readers of the BAPPS dataset (Zhang et al. 2018, the PerceptualSimilarity project's layout).

BAPPS is never downloaded here: :func:`load_bapps_2afc` and :func:`load_bapps_jnd` read the
official folders that the user downloaded (``BAPPS_HOWTO``). Scoring lives in
:mod:`lossnet.eval.similarity`.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Optional, Sequence

import numpy as np
import torch

from lossnet.types import PathLike

__all__ = ["BAPPS_2AFC_CATEGORIES", "BAPPS_HOWTO", "BAPPS_JND_CATEGORIES", "BAPPS_LAYOUT", "load_bapps_2afc",
           "load_bapps_jnd"]


BAPPS_2AFC_CATEGORIES = {
    "val": ("traditional", "cnn", "superres", "deblur", "color", "frameinterp"),
    "train": ("traditional", "cnn", "mix"),
}


BAPPS_JND_CATEGORIES = ("traditional", "cnn")


_IMG_EXTENSIONS = (".jpg", ".JPG", ".jpeg", ".JPEG", ".png", ".PNG", ".ppm", ".PPM", ".bmp", ".BMP")


_NP_EXTENSIONS = (".npy",)


BAPPS_LAYOUT = """\
  ROOT/2afc/{train,val}/{category}/{ref,p0,p1}/000000.png ...  and  .../judge/000000.npy ...
  ROOT/jnd/val/{category}/{p0,p1}/000000.png ...               and  .../same/000000.npy ...
  (2afc val categories: traditional cnn superres deblur color frameinterp; jnd: traditional cnn)"""


BAPPS_HOWTO = (
    "BAPPS is not shipped with lossnet and is never downloaded by it: download it yourself with "
    "the PerceptualSimilarity project's script (github.com/richzhang/PerceptualSimilarity, "
    "`bash ./scripts/download_dataset.sh`, which unpacks into ./dataset) and pass that `dataset` "
    "folder as ROOT."
)


def _missing(path: Path, what: str) -> FileNotFoundError:
    return FileNotFoundError(
        f"BAPPS {what} not found: {path} is missing. Expected the official layout\n{BAPPS_LAYOUT}\n{BAPPS_HOWTO}"
    )


def _resolve_root(root: PathLike) -> Path:
    """``root`` is the folder holding ``2afc/`` and ``jnd/``; its parent (``dataset/`` inside) is accepted."""
    root = Path(root).expanduser()
    if not (root / "2afc").is_dir() and not (root / "jnd").is_dir() and (root / "dataset").is_dir():
        return root / "dataset"
    return root


def _list_files(d: Path, exts: Sequence[str]) -> list[str]:
    """All files under ``d`` (recursively) with one of ``exts``, sorted by full path, as the official code."""
    found = [os.path.join(r, f) for r, _, fs in sorted(os.walk(d)) for f in fs if f.endswith(tuple(exts))]
    return sorted(found)


def _read_images(paths: Sequence[str], load_size: Optional[int]) -> torch.Tensor:
    """PNG paths -> uint8 (N, 3, H, W); resized like the official ``transforms.Resize(load_size)``."""
    from lossnet.data.images import open_rgb

    out = None
    for i, p in enumerate(paths):
        im = open_rgb(p)  # the shared reader: 16-bit scaled, transparency on white, bad files named
        if load_size is not None and min(im.size) != load_size:
            import torchvision.transforms.functional as TF

            im = TF.resize(im, load_size)  # smaller edge -> load_size, bilinear + antialias
        a = np.asarray(im, dtype=np.uint8)
        if out is None:
            out = torch.empty((len(paths), 3, a.shape[0], a.shape[1]), dtype=torch.uint8)
        if a.shape[:2] != tuple(out.shape[2:]):
            raise ValueError(f"{p}: size {a.shape[:2]} differs from the first image's {tuple(out.shape[2:])}")
        out[i] = torch.from_numpy(a.transpose(2, 0, 1).copy())
    return out


def _read_scalars(paths: Sequence[str], what: str = "judge") -> torch.Tensor:
    """One fraction of human votes per ``.npy`` file; each must be a single finite value in [0, 1]."""
    vals = []
    for p in paths:
        try:
            a = np.load(p, allow_pickle=False)
            v = float(np.asarray(a, dtype=np.float64).reshape(()))
        except (ValueError, TypeError, OSError) as e:
            raise ValueError(f"BAPPS {what} file {p} is not a single number ({e}); it should hold one fraction of "
                             "human votes in [0, 1]") from None
        if not 0.0 <= v <= 1.0:  # also false for NaN
            raise ValueError(f"BAPPS {what} file {p} holds {v:g}, outside [0, 1]: {what} values are fractions of human "
                             "votes; the file is corrupted or not from BAPPS")
        vals.append(v)
    return torch.tensor(vals, dtype=torch.float32)


def _read_folder_set(base: Path, img_subs: Sequence[str], np_sub: str, what: str,
                     load_size: Optional[int]) -> tuple[torch.Tensor, ...]:
    lists = {}
    for sub in (*img_subs, np_sub):
        d = base / sub
        if not d.is_dir():
            raise _missing(d, what)
        lists[sub] = _list_files(d, _NP_EXTENSIONS if sub == np_sub else _IMG_EXTENSIONS)
    counts = {k: len(v) for k, v in lists.items()}
    if len(set(counts.values())) != 1 or not next(iter(counts.values())):
        raise ValueError(f"BAPPS {what} at {base}: file counts differ or are zero: {counts}")
    imgs = [_read_images(lists[s], load_size) for s in img_subs]
    return (*imgs, _read_scalars(lists[np_sub], np_sub))


def load_bapps_2afc(root: PathLike, split: str = "val", categories: Optional[Sequence[str]] = None,
                    load_size: Optional[int] = 64) -> dict[str, tuple[torch.Tensor, ...]]:
    """Read BAPPS 2AFC ``ROOT/2afc/{split}/{category}/{ref,p0,p1,judge}``.

    Returns ``{category: (ref, p0, p1, judge)}``: images uint8 (N, 3, 64, 64), judge float32 (N,)
    = fraction of humans who found p1 closer to ref. Files are matched by sorted path, as the
    official ``TwoAFCDataset``. ``categories`` default: all official ones of ``split``. Raises
    FileNotFoundError (naming the layout and how to obtain BAPPS) if a folder is missing.
    """
    root = _resolve_root(root)
    if categories is None:
        if split not in BAPPS_2AFC_CATEGORIES:
            raise ValueError(f"split must be one of {sorted(BAPPS_2AFC_CATEGORIES)}, got {split!r}")
        categories = BAPPS_2AFC_CATEGORIES[split]
    return {c: _read_folder_set(root / "2afc" / split / c, ("ref", "p0", "p1"), "judge", f"2AFC {split}/{c}",
                                load_size) for c in categories}


def load_bapps_jnd(root: PathLike, categories: Optional[Sequence[str]] = None,
                   load_size: Optional[int] = 64) -> dict[str, tuple[torch.Tensor, ...]]:
    """Read BAPPS JND ``ROOT/jnd/val/{category}/{p0,p1,same}``.

    Returns ``{category: (p0, p1, same)}``: images uint8 (N, 3, 64, 64), same float32 (N,) =
    fraction of humans who judged the pair identical. Missing folders: FileNotFoundError.
    """
    root = _resolve_root(root)
    categories = BAPPS_JND_CATEGORIES if categories is None else categories
    return {c: _read_folder_set(root / "jnd" / "val" / c, ("p0", "p1"), "same", f"JND val/{c}", load_size)
            for c in categories}
