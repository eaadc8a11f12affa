"""Delineation data for Benchmark 3: the Massachusetts Roads Dataset and a synthetic generator.

Both return a :class:`DelineationSet`: ``images`` uint8 (N, 3, S, S) RGB and ``masks`` uint8
(N, 1, S, S) with values in {0, 255} (so the training engine's uint8 -> [0, 1] conversion turns
them into {0., 1.} maps).

* :func:`load_massachusetts_roads` reads the official files of the Massachusetts Roads Dataset
  (Mnih 2013; 1171 aerial images of 1500 x 1500 px: 1108 train, 14 valid, 49 test) as
  distributed (``root/tiff/{train,val,test}/NAME.tiff`` + ``root/tiff/{train,val,test}_labels/
  NAME.tif``; ``valid``/``validation`` are accepted for ``val``, and the flat variant
  ``root/{train,val,test}{,_labels}/``). lossnet never downloads it.
* :func:`synthetic_curvilinear` draws thin curvilinear structures (``roads``: smooth curves a few
  pixels wide; ``cracks``: thin jagged branching dark lines) on textured backgrounds with
  distractors, occluders and low-contrast stretches, with the exact ground truth. It needs no
  download and is the quick-scale stand-in for MRD.
* tiny files in the official layout for tests: :func:`lossnet.testing.roads.write_fake_massachusetts`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path


import numpy as np
import torch

from lossnet.types import PathLike

__all__ = ["DelineationSet", "IMAGE_SUFFIXES", "load_massachusetts_roads", "synthetic_curvilinear"]

IMAGE_SUFFIXES = (".tiff", ".tif", ".png", ".jpg", ".jpeg")
"""File suffixes read as images or labels (case-insensitive)."""

SPLIT_DIRS = {"train": ("train",), "valid": ("val", "valid", "validation"), "test": ("test",)}
"""Split -> folder names tried, in order (``val`` and ``validation`` are aliases of ``valid``)."""

BLANK_LEVEL = 250
"""A pixel whose three channels are all >= this counts as white no-data (MRD's blank regions)."""


@dataclass
class DelineationSet:
    """Images with binary delineation maps, in memory.

    Attributes:
        images: uint8 (N, 3, S, S), RGB.
        masks: uint8 (N, 1, S, S), 0 (background) or 255 (structure).
        name: ``"massachusetts_roads"`` or ``"synthetic_roads"`` / ``"synthetic_cracks"``.
        split: split name.
        sources: one string per item: ``"STEM@row,col"`` (tile origin in the original image) or
            ``"seed:i"`` for synthetic images.
        skipped: tiles left out as blank (MRD only).
    """

    images: torch.Tensor
    masks: torch.Tensor
    name: str
    split: str
    sources: list[str] = field(default_factory=list)
    skipped: int = 0

    def __post_init__(self) -> None:
        if self.images.dtype != torch.uint8 or self.images.ndim != 4 or self.images.shape[1] != 3:
            raise ValueError(f"images must be uint8 (N, 3, H, W), got {self.images.dtype} {tuple(self.images.shape)}")
        want = (self.images.shape[0], 1, *self.images.shape[2:])
        if self.masks.dtype != torch.uint8 or tuple(self.masks.shape) != want:
            raise ValueError(f"masks must be uint8 {want}, got {self.masks.dtype} {tuple(self.masks.shape)}")

    def __len__(self) -> int:
        return int(self.images.shape[0])

    def mask_fraction(self) -> float:
        """Fraction of structure pixels over the whole set."""
        return float((self.masks > 127).float().mean()) if len(self) else float("nan")


# =============================================================================================
# Massachusetts Roads Dataset
# =============================================================================================


def _split_key(split: str) -> str:
    s = str(split).lower()
    for key, names in SPLIT_DIRS.items():
        if s == key or s in names:
            return key
    raise ValueError(f"split must be train, valid (or val) or test, got {split!r}")


def _find_split_dirs(root: Path, split: str) -> tuple[Path, Path]:
    """(image folder, label folder) of ``split`` under ``root`` (official or flat layout)."""
    key = _split_key(split)
    tried = []
    for base in (root / "tiff", root):
        for name in SPLIT_DIRS[key]:
            d = base / name
            tried.append(d)
            if d.is_dir():
                lab = base / f"{name}_labels"
                if not lab.is_dir():
                    raise FileNotFoundError(f"Massachusetts Roads: found images in {d} but no label folder {lab}; "
                                            f"the labels of split {name} must lie in {name}_labels/ beside it")
                return d, lab
    present = sorted(p.name for p in root.iterdir() if p.is_dir()) if root.is_dir() else []
    raise FileNotFoundError(
        f"Massachusetts Roads split {key!r} not found under {root}: expected one of "
        f"{', '.join(str(t.relative_to(root)) for t in tried)} (the dataset as distributed: "
        f"tiff/{{train,val,test}}/NAME.tiff + tiff/{{train,val,test}}_labels/NAME.tif); folders present: "
        f"{present or 'none'}")


def _files_by_stem(d: Path) -> dict[str, Path]:
    out: dict[str, Path] = {}
    for p in sorted(d.iterdir()):
        if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES:
            if p.stem in out:
                raise ValueError(f"two files with the stem {p.stem!r} in {d}: {out[p.stem].name} and {p.name}")
            out[p.stem] = p
    return out


def _read_rgb(p: Path) -> np.ndarray:
    from .images import open_image

    with open_image(p) as im:
        return np.asarray(im.convert("RGB"))


def _read_label(p: Path) -> np.ndarray:
    """Binary (H, W) bool: labels as distributed are 0/255; 0/1 maps are accepted too."""
    from .images import open_image

    with open_image(p) as im:
        a = np.asarray(im.convert("L") if im.mode not in ("L", "1", "I;16", "I") else im)
    if a.ndim == 3:
        a = a[..., 0]
    return a > (127 if a.max() > 1 else 0)


def _resize_rgb(a: np.ndarray, size: int) -> np.ndarray:
    from PIL import Image

    if a.shape[0] == size and a.shape[1] == size:
        return a
    return np.asarray(Image.fromarray(a).resize((size, size), Image.BILINEAR))


def _resize_mask(m: np.ndarray, size: int) -> np.ndarray:
    """Bilinear (antialiased) resize of the binary map, then >= half coverage -> structure."""
    from PIL import Image

    if m.shape[0] == size and m.shape[1] == size:
        return m
    r = np.asarray(Image.fromarray(m.astype(np.uint8) * 255).resize((size, size), Image.BILINEAR))
    return r >= 128


def load_massachusetts_roads(root: PathLike, split: str = "train", size: int = 224, *, mode: str = "tiles",
                             tile: int = 300, max_blank: float = 0.5, max_images: int | None = None,
                             max_items: int | None = None, progress: bool = False) -> DelineationSet:
    """Read one split of the Massachusetts Roads Dataset as ``size`` x ``size`` patches.

    Images and labels are paired by file stem (``10078660_15.tiff`` <-> ``10078660_15.tif``).

    Args:
        root: the dataset folder (containing ``tiff/`` or the split folders directly).
        split: ``train``, ``valid`` (alias ``val``) or ``test``.
        size: side of the returned patches.
        mode: ``"tiles"`` (default): each image is cut into non-overlapping ``tile`` x ``tile``
            crops from the top-left corner (a remainder narrower than ``tile`` is dropped; the
            default 300 divides MRD's 1500 exactly: 25 tiles per image), each resized to
            ``size`` (bilinear; 300 -> 224 shrinks roads by 0.75, keeping them a few pixels
            wide). ``"resize"``: the whole image resized to ``size`` (MRD roads become ~1 px).
        tile: crop side for ``mode="tiles"``.
        max_blank: skip a tile (or, with ``mode="resize"``, an image) when more than this fraction
            of its pixels is white no-data (all channels >= :data:`BLANK_LEVEL`); 1.0 keeps all.
        max_images: read only the first ``max_images`` images (sorted by stem).
        max_items: stop after this many tiles.

    Labels are binarised (> 127, or > 0 for 0/1 maps) before resizing; a resized label pixel is
    structure when at least half of it was (bilinear, threshold 128). Returns a
    :class:`DelineationSet` (masks in {0, 255}).

    Raises:
        FileNotFoundError: root, the split folder or its ``_labels`` folder is missing.
        ValueError: bad arguments, an image without a label (or vice versa), image/label sizes
            differ, or no usable tile.
    """
    root = Path(root).expanduser()
    if not root.is_dir():
        raise FileNotFoundError(f"Massachusetts Roads root {root} does not exist or is not a directory")
    if mode not in ("tiles", "resize"):
        raise ValueError(f"mode must be 'tiles' or 'resize', got {mode!r}")
    if int(size) < 1 or (mode == "tiles" and int(tile) < 1):
        raise ValueError(f"size and tile must be >= 1, got size={size}, tile={tile}")
    if not 0.0 <= float(max_blank) <= 1.0:
        raise ValueError(f"max_blank must be a fraction in [0, 1], got {max_blank}")
    img_dir, lab_dir = _find_split_dirs(root, split)
    images, labels = _files_by_stem(img_dir), _files_by_stem(lab_dir)
    if not images:
        raise ValueError(f"no images ({', '.join(IMAGE_SUFFIXES)}) in {img_dir}")
    missing = sorted(set(images) - set(labels))
    if missing:
        raise ValueError(f"{len(missing)} image(s) in {img_dir} have no label in {lab_dir} "
                         f"(paired by file stem), e.g. {missing[:3]}; restore the labels or remove those images")
    orphans = sorted(set(labels) - set(images))
    if orphans:
        raise ValueError(f"{len(orphans)} label(s) in {lab_dir} have no image in {img_dir}, e.g. {orphans[:3]}")
    stems = sorted(images)[: max_images if max_images is not None else None]
    out_img, out_mask, sources, skipped = [], [], [], 0
    it = stems
    if progress:
        from tqdm.auto import tqdm

        it = tqdm(stems, desc=f"MRD {split}", leave=False)
    for stem in it:
        if max_items is not None and len(out_img) >= max_items:
            break
        a, m = _read_rgb(images[stem]), _read_label(labels[stem])
        if a.shape[:2] != m.shape:
            raise ValueError(f"{images[stem].name} is {a.shape[1]}x{a.shape[0]} but its label {labels[stem].name} is "
                             f"{m.shape[1]}x{m.shape[0]}")
        if mode == "resize":
            crops = [(0, 0, a, m)]
        else:
            if a.shape[0] < tile or a.shape[1] < tile:
                raise ValueError(f"tile={tile} is larger than image {images[stem].name} "
                                 f"({a.shape[1]}x{a.shape[0]}); pass a smaller tile")
            crops = [(r, c, a[r:r + tile, c:c + tile], m[r:r + tile, c:c + tile])
                     for r in range(0, a.shape[0] - tile + 1, tile) for c in range(0, a.shape[1] - tile + 1, tile)]
        for r, c, ca, cm in crops:
            if max_items is not None and len(out_img) >= max_items:
                break
            if (ca >= BLANK_LEVEL).all(-1).mean() > max_blank:
                skipped += 1
                continue
            out_img.append(_resize_rgb(np.ascontiguousarray(ca), size).transpose(2, 0, 1))
            out_mask.append(_resize_mask(cm, size)[None])
            sources.append(f"{stem}@{r},{c}")
    if not out_img:
        raise ValueError(f"no usable {'tile' if mode == 'tiles' else 'image'} in {img_dir}: all {skipped} were more "
                         f"than {max_blank:.0%} blank; raise max_blank")
    return DelineationSet(torch.from_numpy(np.stack(out_img)).contiguous(),
                          torch.from_numpy(np.stack(out_mask).astype(np.uint8) * 255).contiguous(),
                          "massachusetts_roads", _split_key(split), sources, skipped)


# =============================================================================================
# Synthetic curvilinear structures
# =============================================================================================


def _smooth_noise(rng: np.random.Generator, size: int, cells: int, channels: int = 1) -> np.ndarray:
    """Smooth noise (channels, size, size) in about [-1, 1]: a random ``cells`` x ``cells`` grid
    upsampled bilinearly."""
    g = torch.from_numpy(rng.standard_normal((1, channels, cells + 1, cells + 1)).astype(np.float32))
    up = torch.nn.functional.interpolate(g, size=(size, size), mode="bilinear", align_corners=True)
    return up[0].numpy() / 1.2


def _walk(rng: np.random.Generator, size: int, start: np.ndarray, heading: float, length: int, turn_sd: float,
          smooth: float, jitter: float = 0.0) -> np.ndarray:
    """Points (L, 2) of a curve: unit steps, heading driven by a damped random turn rate."""
    turns = rng.normal(0.0, turn_sd, length)
    rate = np.empty(length)
    acc = 0.0
    for i in range(length):  # AR(1) turn rate: smooth curvature for roads, rough for cracks
        acc = smooth * acc + turns[i]
        rate[i] = acc
    ang = heading + np.cumsum(rate)
    if jitter:
        ang = ang + rng.normal(0.0, jitter, length)
    steps = np.stack([np.cos(ang), np.sin(ang)], 1)  # heading 0 = +row (down)
    pts = start[None] + np.cumsum(steps, 0)
    inside = ((pts >= -2) & (pts <= size + 1)).all(1)
    if not inside.all():  # stop where the curve leaves the image
        pts = pts[: int(np.argmin(inside)) or 1]
    return pts


def _distance(pts: np.ndarray, size: int, margin: int) -> tuple[slice, slice, np.ndarray]:
    """Distance to the centreline of a polyline of unit steps (points densified to half steps),
    on the curve's bounding box grown by ``margin``: (row slice, column slice, distances)."""
    from scipy.ndimage import distance_transform_edt

    mid = (pts[1:] + pts[:-1]) / 2 if len(pts) > 1 else pts[:0]
    allp = np.rint(np.concatenate([pts, mid])).astype(np.int64)
    allp = allp[((allp >= 0) & (allp < size)).all(1)]
    if not len(allp):
        return slice(0, 0), slice(0, 0), np.zeros((0, 0))
    (r0, c0), (r1, c1) = np.maximum(allp.min(0) - margin, 0), np.minimum(allp.max(0) + margin + 1, size)
    line = np.ones((r1 - r0, c1 - c0), bool)
    line[allp[:, 0] - r0, allp[:, 1] - c0] = False
    return slice(r0, r1), slice(c0, c1), distance_transform_edt(line)


def _border_start(rng: np.random.Generator, size: int) -> tuple[np.ndarray, float]:
    """A start point on a random border with a heading into the image."""
    side = int(rng.integers(4))
    t = rng.uniform(0.1, 0.9) * size
    spread = rng.uniform(-0.6, 0.6)
    if side == 0:
        return np.array([0.0, t]), 0.0 + spread  # top, heading down (+row)
    if side == 1:
        return np.array([size - 1.0, t]), np.pi + spread
    if side == 2:
        return np.array([t, 0.0]), np.pi / 2 + spread  # left, heading right (+col)
    return np.array([t, size - 1.0]), -np.pi / 2 + spread


def _blobs(rng: np.random.Generator, size: int, n: int, rmin: float, rmax: float,
           centres: np.ndarray | None = None) -> list[tuple[slice, slice, np.ndarray]]:
    """Soft elliptic blobs: (row slice, column slice, alpha map in [0, 1] on that box)."""
    out = []
    for k in range(n):
        cy, cx = centres[k] if centres is not None else rng.uniform(0, size, 2)
        ry, rx = rng.uniform(rmin, rmax, 2)
        r0, r1 = max(0, int(cy - 1.3 * ry)), min(size, int(cy + 1.3 * ry) + 2)
        c0, c1 = max(0, int(cx - 1.3 * rx)), min(size, int(cx + 1.3 * rx) + 2)
        if r0 >= r1 or c0 >= c1:
            continue
        yy, xx = np.mgrid[r0:r1, c0:c1].astype(np.float32)
        d = ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2
        out.append((slice(r0, r1), slice(c0, c1), np.clip(1.5 - d, 0, 1).astype(np.float32)))
    return out


def _paint(img: np.ndarray, alpha: np.ndarray, colour: np.ndarray, box=(slice(None), slice(None))) -> None:
    """Alpha-blend ``colour`` into ``img[:, box]``."""
    sub = img[:, box[0], box[1]]
    sub *= 1 - alpha[None]
    sub += alpha[None] * colour[:, None, None]


def _roads(rng: np.random.Generator, size: int) -> tuple[np.ndarray, np.ndarray]:
    s = size / 224.0
    hue = rng.uniform(0, 1)
    base = np.array([0.30 + 0.15 * hue, 0.38 + 0.10 * rng.uniform(), 0.22 + 0.12 * (1 - hue)], np.float32)
    img = base[:, None, None] + 0.10 * _smooth_noise(rng, size, 4, 3) + 0.06 * _smooth_noise(rng, size, 16, 1)
    img = img.astype(np.float32)
    for rs, cs, a in _blobs(rng, size, int(rng.integers(2, 6)), 20 * s, 70 * s):  # fields
        _paint(img, 0.8 * a, np.clip(base + rng.normal(0, 0.12, 3), 0, 1).astype(np.float32), (rs, cs))
    mask = np.zeros((size, size), bool)
    for _ in range(int(rng.integers(1, 5))):
        start, heading = _border_start(rng, size)
        straight = rng.uniform() < 0.4
        pts = _walk(rng, size, start, heading, int(3 * size), 0.0 if straight else 0.0015, 0.97)
        if len(pts) < 8:
            continue
        half = rng.uniform(1.2, 3.2) * max(s, 0.5)
        rs, cs, d = _distance(pts, size, int(half) + 2)
        mask[rs, cs] |= d <= half
        grey = rng.uniform(0.35, 0.8)
        colour = np.clip(grey + rng.normal(0, 0.04, 3), 0, 1).astype(np.float32)
        contrast = rng.uniform(0.35, 1.0)  # some roads barely differ from the background
        # contrast fades along the road in places (shadows, worn asphalt)
        fade = np.clip(0.5 + _smooth_noise(rng, size, 6, 1)[0], 0.15, 1.0)
        soft = np.clip(half + 0.5 - d, 0, 1).astype(np.float32)
        _paint(img, contrast * fade[rs, cs] * soft, colour, (rs, cs))
    # distractors: buildings and parking lots in road colours, dark tree blobs
    for _ in range(int(rng.integers(3, 10))):
        h, w = (rng.uniform(4, 16, 2) * s).astype(int) + 2
        r0, c0 = rng.integers(0, size - h), rng.integers(0, size - w)
        img[:, r0:r0 + h, c0:c0 + w] = np.clip(rng.uniform(0.35, 0.85) + rng.normal(0, 0.04, 3), 0, 1)[:, None, None]
    road_pts = np.argwhere(mask)
    n_occ = int(rng.integers(2, 9)) if len(road_pts) else 0
    centres = road_pts[rng.integers(0, len(road_pts), n_occ)] if n_occ else None
    tree = np.array([0.12, 0.25, 0.10], np.float32)
    for rs, cs, a in _blobs(rng, size, n_occ, 3 * s, 8 * s, centres) + _blobs(rng, size, int(rng.integers(3, 12)),
                                                                             3 * s, 9 * s):
        _paint(img, 0.9 * a, np.clip(tree + rng.normal(0, 0.03, 3), 0, 1).astype(np.float32), (rs, cs))
    img += rng.normal(0, 0.03, img.shape).astype(np.float32)
    return img, mask


def _cracks(rng: np.random.Generator, size: int) -> tuple[np.ndarray, np.ndarray]:
    s = size / 224.0
    grey = rng.uniform(0.4, 0.7)
    tint = rng.normal(0, 0.02, 3).astype(np.float32)
    img = (grey + tint[:, None, None] + 0.07 * _smooth_noise(rng, size, 5, 1) +
           0.05 * _smooth_noise(rng, size, size // 4, 1)).astype(np.float32)
    for rs, cs, a in _blobs(rng, size, int(rng.integers(2, 8)), 3 * s, 14 * s):  # stains
        _paint(img, rng.uniform(0.3, 0.7) * a, np.full(3, grey - rng.uniform(0.1, 0.3), np.float32), (rs, cs))
    mask = np.zeros((size, size), bool)
    for _ in range(int(rng.integers(1, 4))):
        start, heading = _border_start(rng, size)
        trunk = _walk(rng, size, start, heading, int(2 * size), 0.02, 0.8, jitter=0.35)
        paths = [trunk]
        for _ in range(int(rng.integers(0, 4))):  # branches
            if len(trunk) < 20:
                break
            at = trunk[int(rng.integers(5, len(trunk) - 5))]
            paths.append(_walk(rng, size, at, heading + rng.choice([-1, 1]) * rng.uniform(0.5, 1.3),
                               int(rng.integers(size // 6, size // 2)), 0.03, 0.8, jitter=0.35))
        for pts in paths:
            if len(pts) < 4:
                continue
            half = rng.uniform(0.5, 1.3) * max(s, 0.5)
            rs, cs, d = _distance(pts, size, int(half) + 2)
            mask[rs, cs] |= d <= half
            soft = np.clip(half + 0.5 - d, 0, 1).astype(np.float32)
            depth = rng.uniform(0.12, 0.35) * np.clip(0.6 + _smooth_noise(rng, size, 6, 1)[0], 0.2, 1.0)
            img[:, rs, cs] -= (depth[rs, cs] * soft)[None]
    img += rng.normal(0, 0.035, img.shape).astype(np.float32)
    return img, mask


_KINDS = {"roads": (_roads, 1), "cracks": (_cracks, 2)}


def synthetic_curvilinear(n: int, size: int = 224, seed: int = 0, kind: str = "roads") -> DelineationSet:
    """``n`` synthetic delineation images with their exact ground truth.

    ``kind="roads"``: 1-4 smooth curves (40% straight) entering from the image border, 2.4-6.4
    px wide (at size 224; widths scale with size), grey with varying contrast that fades along
    the road, on a smooth-noise background with fields of other colours, road-coloured
    rectangles (buildings, parking lots) as distractors and dark tree blobs, some placed on
    roads as occluders (the occluded road stays in the ground truth, as in MRD), plus pixel
    noise. ``kind="cracks"``: 1-3 jagged dark lines (1-2.6 px wide) with 0-3 branches each, of
    varying depth, on a textured grey surface with dark stains.

    The ground truth is the drawn structure: pixels within the half width of the centreline.
    Image ``i`` depends only on (seed, i, kind): the first k images of ``n`` are those of
    ``k``. About 3-4 ms per 224 x 224 image. Returns a :class:`DelineationSet` (masks {0, 255}).
    """
    if kind not in _KINDS:
        raise ValueError(f"kind must be one of {', '.join(_KINDS)}, got {kind!r}")
    if int(n) < 0 or int(size) < 16:
        raise ValueError(f"need n >= 0 and size >= 16, got n={n}, size={size}")
    fn, kid = _KINDS[kind]
    images = np.zeros((int(n), 3, size, size), np.uint8)
    masks = np.zeros((int(n), 1, size, size), np.uint8)
    for i in range(int(n)):
        rng = np.random.default_rng([int(seed), i, kid])
        img, mask = fn(rng, size)
        images[i] = np.clip(img * 255 + 0.5, 0, 255).astype(np.uint8)
        masks[i, 0] = mask.astype(np.uint8) * 255
    return DelineationSet(torch.from_numpy(images), torch.from_numpy(masks), f"synthetic_{kind}", f"seed{seed}",
                          [f"{seed}:{i}" for i in range(int(n))])
