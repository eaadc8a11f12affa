"""Super-resolution scores: PSNR and SSIM (torchmetrics) under one stated convention.

The convention (the super-resolution literature's, SRCNN / Johnson et al.; configurable):

* ``colour="y"`` (default): both images are converted to the luma channel Y of ITU-R BT.601
  (MATLAB ``rgb2ycbcr``: ``Y = 16/255 + (65.481 R + 128.553 G + 24.966 B) / 255`` for R, G, B in
  [0, 1]) and scored there; ``colour="rgb"`` scores the three channels.
* ``border``: ``factor`` pixels are removed on every side before scoring (default; ``0`` keeps
  the whole image).
* ``quantize=True``: the output is rounded to 8 bits first, as a saved image would be.
* PSNR with peak 1.0 (= 255 on 8-bit images; torchmetrics); SSIM of Wang et al. (Gaussian window
  11 px, sigma 1.5, K1 0.01, K2 0.03, data range 1), the mean over the window positions inside
  the image: scikit-image's ``structural_similarity(gaussian_weights=True, sigma=1.5,
  use_sample_covariance=False)``, in float64. Both are computed per image and averaged over a
  test set.

scikit-image computes SSIM rather than torchmetrics: same values (within 1e-6 in float64), but
torchmetrics' float64 11 x 11 convolution takes ~0.3 s per 480 x 320 image on the CPU (30x
scikit-image's separable filter; 66 % of a quick benchmark-2 sweep, docs/super_resolution.md),
and in float32 it is ~4e-5 off.
"""

from __future__ import annotations

from typing import Callable, Sequence

import torch

__all__ = ["rgb_to_y", "prepare_for_scoring", "psnr_ssim", "evaluate_sr", "SRScore"]

SRScore = dict  # {"psnr": float, "ssim": float}


def rgb_to_y(x: torch.Tensor) -> torch.Tensor:
    """BT.601 luma of (N, 3, H, W) RGB in [0, 1] -> (N, 1, H, W) in [16/255, 235/255]."""
    w = x.new_tensor([65.481, 128.553, 24.966]).view(1, 3, 1, 1) / 255.0
    return (x * w).sum(1, keepdim=True) + 16.0 / 255.0


def prepare_for_scoring(sr: torch.Tensor, hr: torch.Tensor, *, border: int = 0, colour: str = "y",
                        quantize: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """Apply the convention (quantise, crop ``border``, colour space) to a pair of (N, 3, H, W)."""
    if sr.shape != hr.shape or sr.ndim != 4 or sr.shape[1] != 3:
        raise ValueError(f"sr and hr must be (N, 3, H, W) of the same shape, got {tuple(sr.shape)} and {tuple(hr.shape)}")
    if colour not in ("y", "rgb"):
        raise ValueError(f"colour must be 'y' or 'rgb', got {colour!r}")
    h, w = sr.shape[-2:]
    if border < 0 or 2 * border >= min(h, w) - 10:
        raise ValueError(f"border {border} leaves too little of a {h}x{w} image to score (SSIM needs 11x11)")
    sr, hr = sr.float().clamp(0, 1), hr.float()
    if quantize:
        sr = sr.mul(255).round().div(255)
    if border:
        sr, hr = sr[..., border:-border, border:-border], hr[..., border:-border, border:-border]
    if colour == "y":
        sr, hr = rgb_to_y(sr), rgb_to_y(hr)
    return sr, hr


def psnr_ssim(sr: torch.Tensor, hr: torch.Tensor, *, border: int = 0, colour: str = "y",
              quantize: bool = True, ssim: bool = True) -> list[SRScore]:
    """Per-image ``{"psnr": dB, "ssim": [-1, 1]}`` of (N, 3, H, W) images in [0, 1], in float64
    (``ssim=False``: ``{"psnr": dB}`` only)."""
    from torchmetrics.functional.image import peak_signal_noise_ratio

    a, b = prepare_for_scoring(sr, hr, border=border, colour=colour, quantize=quantize)
    a, b = a.double(), b.double()
    psnr = peak_signal_noise_ratio(a, b, data_range=1.0, reduction="none", dim=(1, 2, 3)).tolist()
    if not ssim:
        return [{"psnr": float(p)} for p in psnr]
    from skimage.metrics import structural_similarity

    a, b = a.cpu().numpy(), b.cpu().numpy()
    return [{"psnr": float(p), "ssim": float(structural_similarity(
        y, x, data_range=1.0, gaussian_weights=True, sigma=1.5, use_sample_covariance=False, channel_axis=0))}
        for p, x, y in zip(psnr, a, b)]


@torch.no_grad()
def evaluate_sr(upscale: Callable[[torch.Tensor], torch.Tensor], images: Sequence[tuple[str, torch.Tensor]], factor: int,
                *, sigma: float = 1.0, antialias: bool = True, border: int | None = None, colour: str = "y",
                quantize: bool = True, device: torch.device | str = "cpu", keep: Sequence[str] = ()) -> dict:
    """Score ``upscale`` (float (1, 3, h, w) -> (1, 3, h f, w f)) on full test images.

    Each uint8 (3, H, W) image is modcropped to a multiple of ``factor``, degraded by
    :func:`lossnet.data.sr.degrade` and upscaled; ``border`` defaults to ``factor``.
    Returns ``{"psnr", "ssim" (means), "images": [{"name", "psnr", "ssim"}], "outputs": {name: uint8 SR}}``
    (``outputs`` only for the names in ``keep``).
    """
    from ..data.sr import degrade, modcrop

    border = factor if border is None else int(border)
    rows, outputs = [], {}
    for name, img in images:
        hr = modcrop(img, factor).float().div(255).unsqueeze(0).to(device)
        lr = degrade(hr, factor, sigma, antialias=antialias)
        sr = upscale(lr)
        if sr.shape != hr.shape:
            raise ValueError(f"the model turned a {tuple(lr.shape)} input into {tuple(sr.shape)}; expected "
                             f"{tuple(hr.shape)} (x{factor})")
        score = psnr_ssim(sr, hr, border=border, colour=colour, quantize=quantize)[0]
        rows.append({"name": name, **score})
        if name in keep:
            outputs[name] = sr[0].clamp(0, 1).mul(255).round().to(torch.uint8).cpu()
    n = max(len(rows), 1)
    return {"psnr": sum(r["psnr"] for r in rows) / n, "ssim": sum(r["ssim"] for r in rows) / n, "images": rows,
            "outputs": outputs}
