"""Super-resolution data: test sets, training patches and the degradation model.

Conventions (Johnson et al. 2016 as the systematic-analysis paper runs it, Sec. IV-B):

* Images are uint8 tensors (3, H, W) on disk and in memory; float images are (N, 3, H, W) in
  [0, 1]. Greyscale files (two in Set14) are replicated to three channels.
* :func:`degrade`: a high-resolution image is blurred by a Gaussian with ``sigma = 1.0`` (kernel
  ``2 * ceil(3 sigma) + 1`` = 7 px, reflect padding) and downsampled by ``factor`` with bicubic
  interpolation (PyTorch's antialiased bicubic, which matches PIL's ``resize(BICUBIC)``), then
  rounded to 8 bits, as a saved low-resolution image would be.
* :func:`modcrop`: test images are cropped (bottom/right) to a multiple of ``factor`` so the
  super-resolved output and the original have the same size.
* :func:`bicubic_upsample`: the reference row, PyTorch bicubic (``align_corners=False``), clamped
  to [0, 1].

The shared SR images (``../shared/data/sr``) are CSet5, CSet14, CBSD68 and CSun_Hays80 (a small
training folder standing in for MS-COCO); :data:`TEST_SETS` maps test-set names to folders.
CBSD68 (68 images of the BSD test split) is *not* the paper's BSD100 (100 other BSD images): it
is named and labelled ``cbsd68``; ``bsd100`` reads a real BSD100 folder only.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from lossnet.types import PathLike
from lossnet.data.datasets import IMAGE_EXTENSIONS

TEST_SETS = {"set5": ("Set5", "CSet5"), "set14": ("Set14", "CSet14"), "bsd100": ("BSD100",), "cbsd68": ("CBSD68",)}
"""Test-set name -> folder names under the SR root, tried in order (CSet5 / CSet14 are the colour
Set5 / Set14 images; CBSD68 is a different image set from BSD100, so it has its own name)."""


def read_image(path: PathLike) -> torch.Tensor:
    """One image file as uint8 (3, H, W) by :func:`lossnet.data.images.open_rgb`'s rules (EXIF-rotated,
    greyscale replicated, 16-bit scaled to 8 bits, transparency composited on white)."""
    from lossnet.data.images import read_rgb_array

    arr = np.array(read_rgb_array(path))
    return torch.from_numpy(arr).permute(2, 0, 1).contiguous()


def image_files(root: PathLike) -> list[Path]:
    """Image files directly in ``root`` or below it, sorted by relative path."""
    root = Path(root).expanduser()
    if not root.is_dir():
        raise FileNotFoundError(f"image folder {root} does not exist or is not a directory")
    files = sorted((p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS),
                   key=lambda p: p.relative_to(root).as_posix())
    if not files:
        raise ValueError(f"no images ({', '.join(IMAGE_EXTENSIONS)}) found under {root}")
    return files


def folder_digest(root: PathLike) -> str:
    """A cheap identity of an image folder (16 hex digits): relative names and sizes of its images."""
    import hashlib

    root = Path(root).expanduser()
    h = hashlib.sha256()
    for p in image_files(root):
        h.update(f"{p.relative_to(root).as_posix()}:{p.stat().st_size};".encode())
    return h.hexdigest()[:16]


def load_images(root: PathLike, max_images: int | None = None) -> list[tuple[str, torch.Tensor]]:
    """``[(name, uint8 (3, H, W))]`` for every image under ``root`` (full size, sorted by path)."""
    files = image_files(root)[:max_images]
    return [(p.stem, read_image(p)) for p in files]


def resolve_test_set(sr_root: PathLike, name: str) -> Path:
    """The folder of test set ``name``: a name of :data:`TEST_SETS` (``set5``, ``set14``, ``bsd100``,
    ``cbsd68``), a folder name under ``sr_root`` (``CSet5``) or a path."""
    cand = Path(str(name)).expanduser()
    if cand.is_dir():
        return cand
    root = Path(sr_root).expanduser()
    folders = TEST_SETS.get(str(name).lower(), (str(name),))
    for folder in folders:
        if (root / folder).is_dir():
            return root / folder
    known = ", ".join(f"{k} ({' or '.join(v)})" for k, v in TEST_SETS.items())
    hint = (" CBSD68 (68 images) is a different set, not a stand-in: use cbsd68 for it, or point bsd100 at a "
            "BSD100 folder (sr_root=DIR holding BSD100, or a path)." if str(name).lower() == "bsd100" else "")
    raise FileNotFoundError(f"test set {name!r}: no {' or '.join(folders)} folder under {root}; use one of {known} "
                            f"under an SR root that holds them (e.g. sr_root=../shared/data/sr), or a folder path."
                            + hint)


def modcrop(img: torch.Tensor, factor: int) -> torch.Tensor:
    """Crop (..., H, W) at the bottom/right to multiples of ``factor``."""
    h, w = img.shape[-2:]
    if h < factor or w < factor:
        raise ValueError(f"image of size {h}x{w} is smaller than the upscaling factor {factor}")
    return img[..., : h - h % factor, : w - w % factor]


def _check_float_images(x: torch.Tensor, name: str) -> None:
    if not isinstance(x, torch.Tensor) or not x.is_floating_point() or x.ndim != 4 or x.shape[1] != 3:
        shape = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
        raise ValueError(f"{name} must be float images (N, 3, H, W) in [0, 1], got {shape}")


def gaussian_kernel_size(sigma: float) -> int:
    """``2 * ceil(3 sigma) + 1``: the odd kernel covering +-3 sigma."""
    return 2 * math.ceil(3 * sigma) + 1


def degrade(hr: torch.Tensor, factor: int, sigma: float = 1.0, *, antialias: bool = True,
            quantize: bool = True) -> torch.Tensor:
    """Low-resolution version of ``hr`` (N, 3, H, W) in [0, 1]: Gaussian blur (``sigma``; 0 = none),
    then bicubic downsampling by ``factor`` (H, W must be multiples of it), clamped to [0, 1] and
    (``quantize``) rounded to 8 bits. Returns (N, 3, H / factor, W / factor)."""
    from torchvision.transforms.v2.functional import gaussian_blur

    _check_float_images(hr, "hr")
    if int(factor) != factor or factor < 1:
        raise ValueError(f"factor must be a positive integer, got {factor}")
    h, w = hr.shape[-2:]
    if h % factor or w % factor:
        raise ValueError(f"image size {h}x{w} is not a multiple of the factor {factor}; crop it with modcrop first")
    if sigma < 0:
        raise ValueError(f"sigma must be >= 0, got {sigma}")
    x = hr
    if sigma > 0:
        k = gaussian_kernel_size(sigma)
        x = gaussian_blur(x, [k, k], [float(sigma), float(sigma)])
    x = F.interpolate(x, size=(h // factor, w // factor), mode="bicubic", align_corners=False,
                      antialias=antialias).clamp_(0, 1)
    return x.mul_(255).round_().div_(255) if quantize else x


def bicubic_upsample(lr: torch.Tensor, factor: int) -> torch.Tensor:
    """Bicubic upsampling of (N, 3, h, w) by ``factor``, clamped to [0, 1] (the reference row)."""
    _check_float_images(lr, "lr")
    return F.interpolate(lr, scale_factor=factor, mode="bicubic", align_corners=False).clamp_(0, 1)


def subset_files(files: Sequence[Path], n: int, seed: int) -> list[Path]:
    """``n`` of ``files`` drawn without replacement (a seeded permutation's first ``n``; the same
    ``seed`` gives the same subset, in draw order)."""
    if n > len(files):
        raise ValueError(f"cannot draw {n} distinct images from {len(files)}")
    order = torch.randperm(len(files), generator=torch.Generator().manual_seed(int(seed)))
    return [files[i] for i in order[:n].tolist()]


def subset_patches(files: Sequence[Path], n_images: int, n_patches: int, size: int, *, subset_seed: int,
                   seed: int) -> tuple[torch.Tensor, list[Path], int]:
    """The paper's training set: ``n_images`` distinct images drawn without replacement (seeded by
    ``subset_seed``; images smaller than ``size`` on a side are passed over and the draw continues)
    and ``n_patches`` uniform random ``size x size`` crops spread evenly over them (crop ``i`` from
    image ``i mod n_images``; ``n_patches == n_images``: one crop per image). Each image is read,
    cropped and dropped, so 10k MS-COCO images need only the crops' memory.

    Returns ``(uint8 (n_patches, 3, size, size), the images used in draw order, images passed over)``.
    """
    if n_images < 1 or n_patches < 1:
        raise ValueError(f"n_images and n_patches must be >= 1, got {n_images}, {n_patches}")
    order = subset_files(files, len(files), subset_seed)
    g = torch.Generator().manual_seed(int(seed))
    out = torch.empty((n_patches, 3, size, size), dtype=torch.uint8)
    used: list[Path] = []
    small = 0
    for p in order:
        if len(used) == n_images:
            break
        im = read_image(p)
        if im.shape[-2] < size or im.shape[-1] < size:
            small += 1
            continue
        k = len(used)
        for i in range(k, n_patches, n_images):
            top = int(torch.randint(im.shape[-2] - size + 1, (1,), generator=g))
            left = int(torch.randint(im.shape[-1] - size + 1, (1,), generator=g))
            out[i] = im[:, top:top + size, left:left + size]
        used.append(p)
    if len(used) < n_images:
        raise ValueError(f"only {len(used)} of {len(files)} training images are at least {size}x{size} "
                         f"({small} smaller); need train_images={n_images}")
    return out, used, small


def random_patches(images: Sequence[torch.Tensor], n: int, size: int, seed: int = 0) -> torch.Tensor:
    """``n`` random ``size x size`` crops, uint8 (n, 3, size, size): each from an image drawn
    uniformly (with replacement) from those at least ``size`` on each side, at a uniform position.
    Deterministic given ``seed``."""
    usable = [im for im in images if im.shape[-2] >= size and im.shape[-1] >= size]
    if not usable:
        raise ValueError(f"no training image is at least {size}x{size}; lower the patch size")
    g = torch.Generator().manual_seed(seed)
    out = torch.empty((n, 3, size, size), dtype=torch.uint8)
    which = torch.randint(len(usable), (n,), generator=g)
    for i, k in enumerate(which.tolist()):
        im = usable[k]
        top = int(torch.randint(im.shape[-2] - size + 1, (1,), generator=g))
        left = int(torch.randint(im.shape[-1] - size + 1, (1,), generator=g))
        out[i] = im[:, top:top + size, left:left + size]
    return out


SAMPLINGS = ("patches", "resize")
"""How training pairs are cut from images: ``patches`` (random crops) or ``resize`` (each whole image
scaled to a fixed square, the SR-VAE paper's "scaled to a fixed size")."""


def resize_square(images: Sequence[torch.Tensor], size: int, chunk: int = 64) -> torch.Tensor:
    """Each uint8 (3, H, W) image scaled (aspect ratio not kept) to ``size x size`` by antialiased bicubic
    interpolation, rounded to 8 bits: uint8 (N, 3, size, size)."""
    if size < 1:
        raise ValueError(f"size must be >= 1, got {size}")
    out = torch.empty((len(images), 3, size, size), dtype=torch.uint8)
    for i, im in enumerate(images):
        x = F.interpolate(im[None].float().div(255), size=(size, size), mode="bicubic", align_corners=False,
                          antialias=True)
        out[i] = x[0].clamp_(0, 1).mul_(255).round_().to(torch.uint8)
    return out


def center_patch(img: torch.Tensor, size: int) -> torch.Tensor:
    """The central ``size x size`` crop of (3, H, W) (the whole image side when smaller, modcropped)."""
    h, w = img.shape[-2:]
    sh, sw = min(size, h), min(size, w)
    top, left = (h - sh) // 2, (w - sw) // 2
    return img[..., top:top + sh, left:left + sw]


def make_pairs(hr: torch.Tensor, factor: int, sigma: float = 1.0, antialias: bool = True,
               chunk: int = 64) -> dict[str, torch.Tensor]:
    """Training pairs from uint8 patches (N, 3, P, P): ``{"lr": uint8 (N, 3, P/f, P/f), "hr": hr}``."""
    if hr.dtype != torch.uint8 or hr.ndim != 4:
        raise ValueError(f"hr must be uint8 patches (N, 3, P, P), got {hr.dtype} {tuple(hr.shape)}")
    lr = [degrade(hr[i:i + chunk].float() / 255, factor, sigma, antialias=antialias).mul(255).round().to(torch.uint8)
          for i in range(0, len(hr), chunk)]
    return {"lr": torch.cat(lr), "hr": hr}


def _val_crops(val_imgs: Sequence[torch.Tensor], val_patch: int, factor: int) -> torch.Tensor:
    """The central ``val_patch`` crops of the held-out images, modcropped and cut to the smallest side."""
    val_c = [modcrop(center_patch(v, val_patch), factor) for v in val_imgs]
    side = min(min(v.shape[-2], v.shape[-1]) for v in val_c)
    side -= side % factor
    return torch.stack([center_patch(v, side) for v in val_c])


def sampled_pairs(train_imgs: Sequence[torch.Tensor], val_imgs: Sequence[torch.Tensor], *, factor: int, patch: int,
                  n_patches: int, val_patch: int | None, sigma: float, antialias: bool, seed: int,
                  sampling: str = "patches") -> tuple[dict, dict, dict]:
    """``(train, val, info)`` pairs from training and held-out uint8 images.

    ``sampling="patches"``: ``n_patches`` seeded random ``patch`` crops for training, the central
    ``val_patch`` crops (cut to the smallest) for validation. ``sampling="resize"``: every image,
    training and held-out, scaled whole to ``patch x patch`` (:func:`resize_square`; ``n_patches``
    and ``val_patch`` unused). Pairs degraded by :func:`make_pairs`."""
    if sampling not in SAMPLINGS:
        raise ValueError(f"sampling must be one of {SAMPLINGS}, got {sampling!r}")
    if patch % factor:
        raise ValueError(f"patch size {patch} must be a multiple of the factor {factor}")
    if sampling == "resize":
        train_hr, val_hr = resize_square(train_imgs, patch), resize_square(val_imgs, patch)
        info = {"sampling": sampling, "patch": patch, "val_patch": patch, "n_patches": len(train_hr)}
    else:
        val_hr = _val_crops(val_imgs, int(val_patch or patch), factor)
        train_hr = random_patches(train_imgs, n_patches, patch, seed)
        info = {"patch": patch, "val_patch": val_hr.shape[-1], "n_patches": n_patches}
    return make_pairs(train_hr, factor, sigma, antialias), make_pairs(val_hr, factor, sigma, antialias), info


def sr_training_data(train_root: PathLike, *, factor: int, patch: int, n_patches: int, val_images: int,
                     val_patch: int | None = None, sigma: float = 1.0, antialias: bool = True, seed: int = 0,
                     max_images: int | None = None, val_root: PathLike | None = None,
                     train_images: int | None = None, subset_seed: int = 0,
                     sampling: str = "patches") -> tuple[dict, dict, dict]:
    """Training and validation pairs from image folders (MS-COCO 2014 train / val in the paper).

    Validation: with ``val_root``, ``val_images`` images of that folder drawn without replacement
    (``subset_seed``; the paper: 100 MS-COCO val images), and no image of ``val_root`` is trained
    on, also where it lies inside ``train_root``; without it, the last ``val_images`` files of ``train_root``
    (sorted order) are held out. Validation uses their central ``val_patch`` crops (default
    ``patch``), cut to the smallest side among them.

    Training: with ``train_images``, :func:`subset_patches` (the paper: 10k images drawn without
    replacement, one ``patch`` crop each); without it, every remaining image is loaded and
    ``n_patches`` crops are drawn from them with replacement (:func:`random_patches`). Crop
    positions are seeded by ``seed``. ``sampling="resize"`` scales every image (training and
    validation) whole to ``patch`` instead (:func:`sampled_pairs`; not with ``train_images``).

    Returns ``(train, val, info)`` with ``train``/``val`` = ``{"lr", "hr"}`` uint8 tensors and
    ``info`` the counts (and ``val_files``, the validation images' paths).
    """
    if patch % factor:
        raise ValueError(f"patch size {patch} must be a multiple of the factor {factor}")
    if sampling not in SAMPLINGS:
        raise ValueError(f"sampling must be one of {SAMPLINGS}, got {sampling!r}")
    if sampling == "resize" and train_images is not None:
        raise ValueError("sampling='resize' scales every training image whole; train_images (a subset of "
                         "crops) does not apply: leave train_images unset")
    files = image_files(train_root)[:max_images]
    if val_root is None:
        if len(files) <= val_images:
            raise ValueError(f"{train_root} has {len(files)} images; need more than val_images={val_images}")
        tr_files, va_files = files[:len(files) - val_images], files[len(files) - val_images:]
    else:
        pool = image_files(val_root)
        if len(pool) < val_images:
            raise ValueError(f"val_root {val_root} has {len(pool)} images; need val_images={val_images}")
        va_files = subset_files(pool, val_images, subset_seed)
        held = {p.resolve() for p in pool}  # the whole validation folder, also where it lies inside train_root
        tr_files = [p for p in files if p.resolve() not in held]
        if not tr_files:
            raise ValueError(f"every image of {train_root} is a validation image of {val_root}")
    va_imgs = [read_image(p) for p in va_files]
    if train_images is None:
        train, val, info = sampled_pairs([read_image(p) for p in tr_files], va_imgs, factor=factor, patch=patch,
                                         n_patches=n_patches, val_patch=val_patch, sigma=sigma, antialias=antialias,
                                         seed=seed, sampling=sampling)
        n_train = len(tr_files)
    else:
        hr, used, small = subset_patches(tr_files, int(train_images), n_patches, patch, subset_seed=subset_seed,
                                         seed=seed)
        val_hr = _val_crops(va_imgs, int(val_patch or patch), factor)
        train, val = make_pairs(hr, factor, sigma, antialias), make_pairs(val_hr, factor, sigma, antialias)
        info = {"patch": patch, "val_patch": val_hr.shape[-1], "n_patches": n_patches,
                "sampling": "subset without replacement", "subset_seed": int(subset_seed), "images_too_small": small}
        n_train = len(used)
    return train, val, {"train_images": n_train, "val_images": len(va_files),
                        "val_source": "val_root" if val_root is not None else "held out of train_root",
                        **info, "val_files": [str(p) for p in va_files]}
