"""Oxford-IIIT Pet (Parkhi et al. 2012): the training images of the SR-VAE paper.

lossnet never downloads anything; place the official release (``images.tar.gz`` and
``annotations.tar.gz`` from https://www.robots.ox.ac.uk/~vgg/data/pets/) so that ::

    ROOT/images/Abyssinian_100.jpg ...
    ROOT/annotations/trainval.txt      (3680 lines)
    ROOT/annotations/test.txt          (3669 lines)

or pass the parent folder holding ``oxford-iiit-pet/`` laid out like that (torchvision's
``OxfordIIITPet(root)`` layout). List lines are ``NAME CLASS_ID SPECIES BREED_ID`` (e.g.
``Abyssinian_100 1 1 1``: class ids 1..37, species 1 = cat, 2 = dog); lines starting with ``#``
are comments. :func:`load_oxford_pets` returns labels from 0 (``class_id - 1``, ``species - 1``).

The real set holds a few files PIL cannot decode and some greyscale / CMYK / RGBA JPEGs: the
latter are converted to RGB (:func:`lossnet.data.sr.read_image`), the former (and list entries
without a file) are skipped and reported in ``PetsSplit.skipped``.

:func:`pets_training_data` gives the super-resolution training pairs in the structure of
:func:`lossnet.data.sr.sr_training_data`, so the SR-VAE trains on either source.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch

from lossnet.types import PathLike

__all__ = ["PetsSplit", "PETS_SPLITS", "pets_root", "read_pets_list", "load_oxford_pets", "pets_training_data"]

PETS_SPLITS = ("trainval", "test")


@dataclass
class PetsSplit:
    """One split of Oxford-IIIT Pet.

    Attributes:
        names: image names (file stems), in list order.
        paths: their ``.jpg`` paths.
        labels: int64 (N,) breed class 0..36 (``CLASS_ID - 1``).
        species: int64 (N,) 0 = cat, 1 = dog.
        images: uint8 (3, H, W) tensors (sizes vary), or ``None`` when not loaded (``load=False``).
        skipped: ``[(name, reason)]`` for list entries whose file is missing or unreadable.
        root: the resolved dataset root; split: ``"trainval"`` or ``"test"``.
    """

    names: list[str]
    paths: list[Path]
    labels: torch.Tensor
    species: torch.Tensor
    images: list[torch.Tensor] | None
    skipped: list[tuple[str, str]] = field(default_factory=list)
    root: Path | None = None
    split: str = "trainval"

    def __len__(self) -> int:
        return len(self.names)

    def items(self) -> list[tuple[str, torch.Tensor]]:
        """``[(name, uint8 (3, H, W))]`` (the :func:`lossnet.data.sr.load_images` structure)."""
        if self.images is None:
            raise ValueError("images were not loaded (load=False)")
        return list(zip(self.names, self.images))


def pets_root(root: PathLike) -> Path:
    """The folder holding ``images/`` and ``annotations/``: ``root`` itself or ``root/oxford-iiit-pet``."""
    root = Path(root).expanduser()
    if not root.is_dir():
        raise FileNotFoundError(f"Oxford-IIIT Pet root {root} does not exist or is not a directory")
    for cand in (root, root / "oxford-iiit-pet"):
        if (cand / "images").is_dir() and (cand / "annotations").is_dir():
            return cand
    raise FileNotFoundError(
        f"{root} is not an Oxford-IIIT Pet folder: expected {root}/images/*.jpg and {root}/annotations/trainval.txt, "
        f"test.txt (or the same under {root}/oxford-iiit-pet/); extract images.tar.gz and annotations.tar.gz from "
        "https://www.robots.ox.ac.uk/~vgg/data/pets/ there")


def read_pets_list(path: PathLike) -> list[tuple[str, int, int, int]]:
    """Parse an annotation list: ``[(name, class_id, species, breed_id)]`` as written (1-based)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"Oxford-IIIT Pet list file {path} is missing; it comes with annotations.tar.gz "
                                "(annotations/trainval.txt and annotations/test.txt)")
    rows = []
    for i, line in enumerate(path.read_text().splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        parts = line.split()
        try:
            if len(parts) != 4:
                raise ValueError
            rows.append((parts[0], int(parts[1]), int(parts[2]), int(parts[3])))
        except ValueError:
            raise ValueError(f"{path}:{i}: expected 'NAME CLASS_ID SPECIES BREED_ID', got {line!r}") from None
    if not rows:
        raise ValueError(f"{path} lists no images")
    return rows


def _spread(n: int, k: int | None) -> list[int]:
    """``k`` indices spread evenly over ``range(n)`` (all when ``k`` is None or >= n)."""
    if k is None or k >= n:
        return list(range(n))
    if k < 1:
        raise ValueError(f"max_images must be >= 1, got {k}")
    return sorted({int(i * n / k) for i in range(k)})


def load_oxford_pets(root: PathLike, split: str = "trainval", max_images: int | None = None, *,
                     load: bool = True) -> PetsSplit:
    """Read a split of Oxford-IIIT Pet (see the module docstring for the layout).

    ``max_images`` keeps that many list entries spread evenly over the list (the lists are sorted
    by breed, so every breed stays represented) before unreadable files are skipped. ``load=False``
    only checks that the files exist (``images`` is then ``None``).
    """
    from lossnet.data.sr import read_image

    if split not in PETS_SPLITS:
        raise ValueError(f"split must be one of {PETS_SPLITS}, got {split!r}")
    base = pets_root(root)
    rows = read_pets_list(base / "annotations" / f"{split}.txt")
    rows = [rows[i] for i in _spread(len(rows), max_images)]
    names, paths, labels, species, images, skipped = [], [], [], [], [], []
    for name, cls, sp, _ in rows:
        p = base / "images" / f"{name}.jpg"
        if not p.is_file():
            skipped.append((name, "missing"))
            continue
        if load:
            try:
                images.append(read_image(p))
            except ValueError as e:
                skipped.append((name, f"unreadable: {e}"))
                continue
        names.append(name)
        paths.append(p)
        labels.append(cls - 1)
        species.append(sp - 1)
    if not names:
        raise ValueError(f"none of the {len(rows)} images of {base}/annotations/{split}.txt could be read from "
                         f"{base}/images ({len(skipped)} missing or unreadable)")
    return PetsSplit(names, paths, torch.tensor(labels, dtype=torch.int64), torch.tensor(species, dtype=torch.int64),
                     images if load else None, skipped, base, split)


def pets_training_data(root: PathLike, *, factor: int, patch: int, n_patches: int, val_images: int,
                       val_patch: int | None = None, sigma: float = 1.0, antialias: bool = True, seed: int = 0,
                       max_images: int | None = None, sampling: str = "patches") -> tuple[dict, dict, dict]:
    """Super-resolution pairs from Oxford-IIIT Pet, as :func:`lossnet.data.sr.sr_training_data`.

    The ``trainval`` split is read (``max_images`` of it, spread over the breeds); ``val_images``
    of those, spread evenly over the list, are held out for validation; the rest train.
    ``sampling="patches"``: ``n_patches`` seeded random ``patch`` crops, validation on the central
    ``val_patch`` crops (all cut to the smallest such crop); ``sampling="resize"``: every image
    scaled whole to ``patch x patch`` (the paper's "scaled to a fixed size"). The pairs are degraded
    by :func:`lossnet.data.sr.degrade` (Gaussian blur ``sigma``, bicubic downsampling by ``factor``:
    the paper's preprocessing). Returns ``(train, val, info)`` with ``{"lr", "hr"}`` uint8 tensors.
    """
    from lossnet.data.sr import sampled_pairs

    if patch % factor:
        raise ValueError(f"patch size {patch} must be a multiple of the factor {factor}")
    ps = load_oxford_pets(root, "trainval", max_images)
    imgs = ps.images
    if len(imgs) <= val_images:
        raise ValueError(f"{ps.root} gave {len(imgs)} readable trainval images; need more than val_images={val_images}")
    held = set(_spread(len(imgs), val_images))
    train_imgs = [im for i, im in enumerate(imgs) if i not in held]
    train, val, info = sampled_pairs(train_imgs, [imgs[i] for i in sorted(held)], factor=factor, patch=patch,
                                     n_patches=n_patches, val_patch=val_patch, sigma=sigma, antialias=antialias,
                                     seed=seed, sampling=sampling)
    return train, val, {"source": "oxford-iiit-pet", "train_images": len(train_imgs), "val_images": len(held),
                        **info, "skipped": len(ps.skipped)}
