"""The one image-file reader behind every lossnet reader (image folders, SR sets, BAPPS).

:func:`open_rgb` returns an 8-bit RGB PIL image by one rule set:

* EXIF orientation is applied.
* 16-bit files (PIL modes ``I;16*``, and ``I`` as PIL opens 16-bit PNGs) are scaled to 8 bits by
  ``round(v / 257)`` (65535 -> 255), not clipped (clipping made them all white).
* Transparency (RGBA, LA, palette with a transparent colour) is composited onto a white
  background (:data:`BACKGROUND`), as image viewers show it; an image whose every pixel is fully
  transparent carries no content and is refused.
* Unreadable files and unsupported modes (32-bit float) raise ValueError naming the file.
"""

from __future__ import annotations

import os

import numpy as np

BACKGROUND = (255, 255, 255)
"""RGB background that transparent pixels are composited onto."""

_SIXTEEN_BIT = ("I;16", "I;16L", "I;16B", "I;16N", "I")


def _to_8bit(im, path):
    from PIL import Image

    a = np.asarray(im)
    if im.mode == "I" and a.size and (a.min() < 0 or a.max() > 65535):
        raise ValueError(f"image {path}: 32-bit integer values outside 0..65535; save it as 8- or 16-bit")
    a8 = np.clip(np.rint(a.astype(np.float64) / 257.0), 0, 255).astype(np.uint8)
    return Image.fromarray(a8, mode="L")


def open_rgb(path: str | os.PathLike):
    """Read ``path`` as an 8-bit RGB ``PIL.Image`` (rules in the module docstring).

    Raises:
        ValueError: unreadable file, fully transparent image, or an unsupported mode; the message
            names the file.
    """
    from PIL import Image, ImageOps, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            im = ImageOps.exif_transpose(im)
            im.load()
    except (UnidentifiedImageError, OSError, SyntaxError) as err:
        raise ValueError(f"cannot read image {path}: {err}") from err
    if im.mode in _SIXTEEN_BIT:
        im = _to_8bit(im, path)
    elif im.mode == "F":
        raise ValueError(f"image {path}: 32-bit float images are not supported; save it as 8- or 16-bit")
    if im.mode == "P" and "transparency" in im.info:
        im = im.convert("RGBA")
    if im.mode in ("RGBA", "LA", "La", "RGBa", "PA"):
        im = im.convert("RGBA")
        alpha = np.asarray(im.getchannel("A"))
        if alpha.size and alpha.max() == 0:
            raise ValueError(f"image {path} is fully transparent (alpha 0 everywhere): it has no visible content; "
                             "remove it or save it without an alpha channel")
        bg = Image.new("RGBA", im.size, BACKGROUND + (255,))
        im = Image.alpha_composite(bg, im)
    return im.convert("RGB")


def read_rgb_array(path: str | os.PathLike) -> np.ndarray:
    """``path`` as uint8 (H, W, 3) by :func:`open_rgb`'s rules."""
    return np.asarray(open_rgb(path), dtype=np.uint8)
