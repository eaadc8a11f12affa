"""Super-resolution VAEs of the perceptual-loss SR-VAE paper: the paper's model and one that works.

* :class:`GlobalSRVAE` (``model.kind=dfc``, the paper's): a DFC-VAE-like VAE (Hou et al.) with one
  global latent vector, ImageNet-normalised input and a fixed input size (docs/sr_vae.md lists
  which parts the paper states and which come from DFC-VAE).
* :class:`SRVAE` (``model.kind=residual``, the named improvement): fully convolutional, spatial
  latent, residual over bicubic upsampling.

The paper ("Perceptual Loss in (Variational) Autoencoder", Wickramasurendra) maps a degraded
low-resolution image to the high-resolution one with a VAE "similar to Hou et al.'s" DFC-VAE,
whose latent is one global vector (:class:`GlobalSRVAE`). A global vector cannot carry the detail
of a whole image, so :class:`SRVAE` keeps the VAE (encoder -> ``mu``, ``logvar`` -> reparameterised ``z`` -> decoder) but
makes the latent *spatial*: one ``z_channels``-vector per low-resolution pixel (or per
``2^down`` pixels, see ``down``).

:class:`SRVAE` layout (``c`` = ``channels``, every convolution 3x3 with zero padding, ReLU after all but the
outputs)::

    encoder  LR (N, 3, h, w) -> conv(3, c) -> [conv(c, c, stride 2)] x down -> ResBlock x blocks
             -> conv(c, 2 z) -> mu, logvar (N, z_channels, h / 2^down, w / 2^down)
    sample   z = mu + exp(logvar / 2) * eps  (training);  z = mu  (eval mode / upscale())
    decoder  z -> conv(z, c) -> ResBlock x blocks -> [conv(c, 4c) + PixelShuffle(2)] x (down + log2 factor)
             -> conv(c, 3) -> residual (N, 3, h f, w f)
    output   clamp(bicubic_upsample(LR) + residual, 0, 1)   (residual=True, default)
             clamp(residual, 0, 1) read as the image           (residual=False)

The last convolution starts at zero, so an untrained ``residual=True`` model returns bicubic
upsampling exactly. Residual blocks have no batch norm (conv-ReLU-conv + identity), so the model
behaves the same in train and eval mode apart from the sampling. Input and output images are
float in [0, 1]; input height/width must be multiples of ``2^down``.
"""

from __future__ import annotations

import math

import torch
from torch import nn

__all__ = ["SRVAE", "GlobalSRVAE", "INPUT_NORMS"]

INPUT_NORMS = ("none", "imagenet")
"""Input normalisations: ``none`` ([0, 1] images) or ``imagenet`` ((x - mean) / std, the paper's)."""


def _conv(cin: int, cout: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, 3, stride=stride, padding=1)


class _ResBlock(nn.Module):
    """conv3-ReLU-conv3 + identity."""

    def __init__(self, c: int) -> None:
        super().__init__()
        self.body = nn.Sequential(_conv(c, c), nn.ReLU(inplace=True), _conv(c, c))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


class SRVAE(nn.Module):
    """Super-resolution VAE with a spatial latent and (default) residual learning over bicubic.

    Args:
        factor: upscaling factor, a power of two >= 2 (x2, x4, x8).
        channels: feature channels of encoder and decoder.
        z_channels: latent channels (the latent is (N, z_channels, h / 2^down, w / 2^down)).
        blocks: residual blocks in the encoder and in the decoder (each).
        down: stride-2 convolutions in the encoder (0: the latent has the LR resolution).
        residual: output = bicubic(LR) + decoder output (True) or the decoder output alone.
        logvar_init: initial bias of the ``logvar`` maps. The default -6 (posterior std 0.05) lets the
            latent carry the image from the first step; with 0 (std 1) ``z`` starts as pure noise, the
            decoder learns to ignore it and even a small KL weight collapses the posterior.
        normalize: the encoder's input: ``none`` ([0, 1]) or ``imagenet`` (the bicubic base always uses [0, 1]).

    ``forward(lr)`` -> ``(sr, mu, logvar)``: ``sr`` (N, 3, h f, w f) in [0, 1]; ``mu`` and
    ``logvar`` (N, z_channels, h', w'). In training mode ``z`` is sampled, in eval mode ``z = mu``.
    ``upscale(lr)`` -> ``sr`` with ``z = mu`` whatever the mode (deterministic; used for evaluation).
    """

    def __init__(self, factor: int = 2, channels: int = 48, z_channels: int = 16, blocks: int = 2, down: int = 0,
                 residual: bool = True, logvar_init: float = -6.0, normalize: str = "none") -> None:
        super().__init__()
        ups = math.log2(factor) if factor >= 2 else -1
        if ups != int(ups) or ups < 1:
            raise ValueError(f"factor must be a power of two >= 2 (x2, x4, x8), got {factor}")
        if channels < 1 or z_channels < 1 or blocks < 0 or down < 0:
            raise ValueError(f"need channels, z_channels >= 1 and blocks, down >= 0, got {channels}, {z_channels}, "
                             f"{blocks}, {down}")
        self.factor, self.channels, self.z_channels = int(factor), int(channels), int(z_channels)
        self.blocks, self.down, self.residual = int(blocks), int(down), bool(residual)
        self.normalize = _InputNorm(normalize)
        c = channels
        enc = [_conv(3, c), nn.ReLU(inplace=True)]
        for _ in range(down):
            enc += [_conv(c, c, stride=2), nn.ReLU(inplace=True)]
        enc += [_ResBlock(c) for _ in range(blocks)]
        self.encoder = nn.Sequential(*enc)
        self.to_latent = _conv(c, 2 * z_channels)
        with torch.no_grad():
            self.to_latent.bias[z_channels:].fill_(float(logvar_init))
        dec = [_conv(z_channels, c), nn.ReLU(inplace=True)]
        dec += [_ResBlock(c) for _ in range(blocks)]
        for _ in range(int(ups) + down):
            dec += [_conv(c, 4 * c), nn.PixelShuffle(2), nn.ReLU(inplace=True)]
        self.decoder = nn.Sequential(*dec)
        self.tail = _conv(c, 3)
        nn.init.zeros_(self.tail.weight)
        nn.init.zeros_(self.tail.bias)

    def _check(self, lr: torch.Tensor) -> None:
        if not isinstance(lr, torch.Tensor) or lr.ndim != 4 or lr.shape[1] != 3:
            shape = tuple(lr.shape) if isinstance(lr, torch.Tensor) else type(lr).__name__
            raise ValueError(f"expected low-resolution images (N, 3, h, w) in [0, 1], got {shape}")
        m = 2 ** self.down
        if lr.shape[-2] % m or lr.shape[-1] % m:
            raise ValueError(f"with down={self.down} the input size must be a multiple of {m}, got "
                             f"{tuple(lr.shape[-2:])}")

    def encode(self, lr: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(mu, logvar)``, each (N, z_channels, h / 2^down, w / 2^down)."""
        self._check(lr)
        mu, logvar = self.to_latent(self.encoder(self.normalize(lr))).chunk(2, dim=1)
        return mu, logvar

    def decode(self, z: torch.Tensor, lr: torch.Tensor) -> torch.Tensor:
        """The super-resolved image (N, 3, h f, w f) in [0, 1] from latent ``z`` (and ``lr`` for the bicubic base)."""
        out = self.tail(self.decoder(z))
        if self.residual:
            from lossnet.data.sr import bicubic_upsample

            out = bicubic_upsample(lr, self.factor) + out
        return out.clamp(0, 1)

    def forward(self, lr: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        mu, logvar = self.encode(lr)
        z = mu + torch.randn_like(mu) * (0.5 * logvar).exp() if self.training else mu
        return self.decode(z, lr), mu, logvar

    @torch.no_grad()
    def upscale(self, lr: torch.Tensor) -> torch.Tensor:
        """Deterministic super-resolution (``z = mu``): (N, 3, h, w) -> (N, 3, h f, w f) in [0, 1]."""
        mu, _ = self.encode(lr)
        return self.decode(mu, lr)


class _InputNorm(nn.Module):
    """[0, 1] images -> the model's input space: identity (``none``) or ImageNet's ``(x - mean) / std``."""

    def __init__(self, kind: str) -> None:
        super().__init__()
        if kind not in INPUT_NORMS:
            raise ValueError(f"normalize must be one of {INPUT_NORMS}, got {kind!r}")
        from lossnet.zoo.registry import IMAGENET_MEAN, IMAGENET_STD

        self.kind = kind
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std if self.kind == "imagenet" else x

    def extra_repr(self) -> str:
        return self.kind


class GlobalSRVAE(nn.Module):
    """The paper's SR-VAE: a DFC-VAE-like VAE with one global latent vector (Hou et al.).

    Layout for ``widths`` (32, 64, 128, 256), ``s`` = ``lr_size``, ``f`` = ``factor``::

        input    LR (N, 3, s, s) in [0, 1] -> ImageNet normalisation (normalize="imagenet")
        encoder  [conv 4x4 stride 2 pad 1 -> BatchNorm -> LeakyReLU(slope)] x 4: 32, 64, 128, 256 channels
                 -> flatten (256 (s/16)^2) -> linear -> mu, linear -> logvar   (N, latent) each
        sample   z = mu + exp(logvar / 2) * eps  (training);  z = mu  (eval mode / upscale())
        decoder  linear z -> 256 x g x g, g = s f / 16 (the x f of super-resolution lives here)
                 [nearest upsample x2 -> replication pad 1 -> conv 3x3] x 4: 128, 64, 32, 3 channels,
                 BatchNorm + LeakyReLU(slope) after the first three, a sigmoid after the last
        output   (N, 3, s f, s f) in [0, 1]

    The latent is one ``latent``-vector per image, so the input size is fixed (``lr_size``, a
    multiple of 2^len(widths)). :meth:`upscale` takes any size: it cuts the (replication-padded)
    image into ``lr_size`` tiles, upscales them as one batch and stitches the outputs (used to
    score full test images).

    ``forward(lr)`` -> ``(sr, mu, logvar)``; ``upscale(lr)`` -> ``sr`` with ``z = mu``.
    """

    def __init__(self, factor: int = 2, lr_size: int = 64, latent: int = 100,
                 widths: tuple[int, ...] | list[int] = (32, 64, 128, 256), normalize: str = "imagenet",
                 slope: float = 0.2) -> None:
        super().__init__()
        ups = math.log2(factor) if factor >= 2 else -1
        if ups != int(ups) or ups < 1:
            raise ValueError(f"factor must be a power of two >= 2 (x2, x4, x8), got {factor}")
        widths = [int(w) for w in widths]
        m = 2 ** len(widths)
        if not widths or min(widths) < 1 or latent < 1:
            raise ValueError(f"need at least one width, all widths and latent >= 1, got {widths}, {latent}")
        if lr_size < m or lr_size % m:
            raise ValueError(f"lr_size must be a positive multiple of 2^{len(widths)} = {m}, got {lr_size}")
        self.factor, self.lr_size, self.latent, self.widths = int(factor), int(lr_size), int(latent), widths
        self.normalize = _InputNorm(normalize)
        enc, cin = [], 3
        for c in widths:
            enc += [nn.Conv2d(cin, c, 4, stride=2, padding=1), nn.BatchNorm2d(c), nn.LeakyReLU(slope, inplace=True)]
            cin = c
        self.encoder = nn.Sequential(*enc)
        flat = widths[-1] * (lr_size // m) ** 2
        self.fc_mu, self.fc_logvar = nn.Linear(flat, latent), nn.Linear(flat, latent)
        self.grid = lr_size * factor // m
        self.fc_decode = nn.Linear(latent, widths[-1] * self.grid ** 2)
        dec, outs = [], widths[-2::-1] + [3]
        cin = widths[-1]
        for i, c in enumerate(outs):
            dec += [nn.Upsample(scale_factor=2, mode="nearest"), nn.ReplicationPad2d(1), nn.Conv2d(cin, c, 3)]
            dec += [nn.BatchNorm2d(c), nn.LeakyReLU(slope, inplace=True)] if i < len(outs) - 1 else [nn.Sigmoid()]
            cin = c
        self.decoder = nn.Sequential(*dec)

    def _check(self, lr: torch.Tensor, fixed: bool = True) -> None:
        if not isinstance(lr, torch.Tensor) or lr.ndim != 4 or lr.shape[1] != 3:
            shape = tuple(lr.shape) if isinstance(lr, torch.Tensor) else type(lr).__name__
            raise ValueError(f"expected low-resolution images (N, 3, h, w) in [0, 1], got {shape}")
        if fixed and tuple(lr.shape[-2:]) != (self.lr_size, self.lr_size):
            raise ValueError(f"this model's latent is one global vector: the input must be "
                             f"{self.lr_size}x{self.lr_size} (lr_size), got {tuple(lr.shape[-2:])}; upscale() tiles larger images")

    def encode(self, lr: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(mu, logvar)``, each (N, latent), of (N, 3, lr_size, lr_size) images in [0, 1]."""
        self._check(lr)
        h = self.encoder(self.normalize(lr)).flatten(1)
        return self.fc_mu(h), self.fc_logvar(h)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """(N, latent) -> images (N, 3, lr_size f, lr_size f) in [0, 1]."""
        return self.decoder(self.fc_decode(z).view(len(z), self.widths[-1], self.grid, self.grid))

    def forward(self, lr: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        mu, logvar = self.encode(lr)
        z = mu + torch.randn_like(mu) * (0.5 * logvar).exp() if self.training else mu
        return self.decode(z), mu, logvar

    @torch.no_grad()
    def upscale(self, lr: torch.Tensor, batch: int = 64) -> torch.Tensor:
        """Deterministic super-resolution (``z = mu``) of (N, 3, h, w) of any size -> (N, 3, h f, w f) in [0, 1],
        tile by tile (``lr_size`` tiles, the last row/column replication-padded). Always runs in eval mode
        (BatchNorm's running statistics, no update of them), whatever the module's mode."""
        self._check(lr, fixed=False)
        was = self.training
        self.eval()
        try:
            return self._tiled(lr, batch)
        finally:
            self.train(was)

    def _tiled(self, lr: torch.Tensor, batch: int) -> torch.Tensor:
        s, f = self.lr_size, self.factor
        n, _, h, w = lr.shape
        th, tw = -(-h // s), -(-w // s)
        x = nn.functional.pad(lr, (0, tw * s - w, 0, th * s - h), mode="replicate") if (h % s or w % s) else lr
        tiles = x.unfold(2, s, s).unfold(3, s, s).permute(0, 2, 3, 1, 4, 5).reshape(-1, 3, s, s)
        out = torch.cat([self.decode(self.encode(tiles[i:i + batch])[0]) for i in range(0, len(tiles), batch)])
        out = out.view(n, th, tw, 3, s * f, s * f).permute(0, 3, 1, 4, 2, 5).reshape(n, 3, th * s * f, tw * s * f)
        return out[..., : h * f, : w * f]
