"""The one image-file reader behind every lossnet reader (image folders, SR sets, BAPPS).

:func:`open_rgb` returns an 8-bit RGB PIL image by one rule set:

* EXIF orientation is applied.
* 16-bit files (PIL modes ``I;16*``, and ``I`` as PIL opens 16-bit PNGs) are scaled to 8 bits by
  ``round(v / 257)`` (65535 -> 255), not clipped (clipping made them all white).
* Transparency (RGBA, LA, palette with a transparent colour) is composited onto a white
  background (:data:`BACKGROUND`), as image viewers show it; an image whose every pixel is fully
  transparent carries no content and is refused.
* Unreadable files (missing, empty, truncated, not an image), images over PIL's decompression-bomb
  limit (``Image.MAX_IMAGE_PIXELS`` x 2, e.g. a PNG header claiming 20000x20000) and unsupported
  modes (32-bit float) raise one :class:`ImageFileError` (a ``UserError`` and ``ValueError``)
  naming the file.

Every ``Image.open`` of a file in lossnet goes through :func:`open_image` (or :func:`image_size`
for the header only), so these rules and messages hold in every loader.
"""

from __future__ import annotations


import numpy as np

from lossnet.types import PathLike
from ..utils import CorruptFileError

__all__ = ["BACKGROUND", "ImageFileError", "image_size", "open_image", "open_rgb", "read_rgb_array"]


class ImageFileError(CorruptFileError):
    """An image file that cannot be used; the message names the file and what to do."""

BACKGROUND = (255, 255, 255)
"""RGB background that transparent pixels are composited onto."""

_SIXTEEN_BIT = ("I;16", "I;16L", "I;16B", "I;16N", "I")


def _to_8bit(im, path):
    from PIL import Image

    a = np.asarray(im)
    if im.mode == "I" and a.size and (a.min() < 0 or a.max() > 65535):
        raise ImageFileError(f"image {path}: 32-bit integer values outside 0..65535; save it as 8- or 16-bit")
    a8 = np.clip(np.rint(a.astype(np.float64) / 257.0), 0, 255).astype(np.uint8)
    return Image.fromarray(a8, mode="L")


def _opened(path, load: bool):
    from PIL import Image, UnidentifiedImageError

    try:
        im = Image.open(path)
        try:
            if load:
                im.load()
        except BaseException:
            im.close()
            raise
        return im
    except Image.DecompressionBombError as err:
        raise ImageFileError(f"image {path} is too large to decode safely ({err}); downscale it or remove it "
                             "from the folder") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, EOFError) as err:
        why = "it is truncated" if "truncated" in str(err) else (str(err) or type(err).__name__)
        raise ImageFileError(f"cannot read image {path}: {why}; replace or remove the file") from None


def open_image(path: PathLike):
    """``path`` opened and fully decoded by PIL, as it is stored (any mode; see :func:`open_rgb`
    for 8-bit RGB); unreadable, truncated or too-large files raise one :class:`ImageFileError`
    naming the file."""
    return _opened(path, load=True)


def image_size(path: PathLike) -> tuple[int, int]:
    """(width, height) from the file's header only, with :func:`open_image`'s errors."""
    with _opened(path, load=False) as im:
        return im.size


def open_rgb(path: PathLike):
    """Read ``path`` as an 8-bit RGB ``PIL.Image`` (rules in the module docstring).

    Raises:
        ImageFileError: unreadable, truncated or too large a file, a fully transparent image, or
            an unsupported mode; the message names the file.
    """
    from PIL import Image, ImageOps

    im = open_image(path)
    try:
        im = ImageOps.exif_transpose(im)
    except Exception as err:  # noqa: BLE001 - a malformed EXIF block
        raise ImageFileError(f"cannot read image {path}: bad EXIF data ({err}); re-save the file") from None
    if im.mode in _SIXTEEN_BIT:
        im = _to_8bit(im, path)
    elif im.mode == "F":
        raise ImageFileError(f"image {path}: 32-bit float images are not supported; save it as 8- or 16-bit")
    if im.mode == "P" and "transparency" in im.info:
        im = im.convert("RGBA")
    if im.mode in ("RGBA", "LA", "La", "RGBa", "PA"):
        im = im.convert("RGBA")
        alpha = np.asarray(im.getchannel("A"))
        if alpha.size and alpha.max() == 0:
            raise ImageFileError(f"image {path} is fully transparent (alpha 0 everywhere): it has no visible content; "
                             "remove it or save it without an alpha channel")
        bg = Image.new("RGBA", im.size, BACKGROUND + (255,))
        im = Image.alpha_composite(bg, im)
    return im.convert("RGB")


def read_rgb_array(path: PathLike) -> np.ndarray:
    """``path`` as uint8 (H, W, 3) by :func:`open_rgb`'s rules."""
    return np.asarray(open_rgb(path), dtype=np.uint8)
