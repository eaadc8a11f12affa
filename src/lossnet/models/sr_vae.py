"""A fully convolutional super-resolution VAE (the perceptual-loss SR-VAE paper, made to work).

The paper ("Perceptual Loss in (Variational) Autoencoder", Wickramasurendra) maps a degraded
low-resolution image to the high-resolution one with a VAE "similar to Hou et al.'s" DFC-VAE,
whose latent is one global vector. A global vector cannot carry the detail of a whole image, so
this model keeps the VAE (encoder -> ``mu``, ``logvar`` -> reparameterised ``z`` -> decoder) but
makes the latent *spatial*: one ``z_channels``-vector per low-resolution pixel (or per
``2^down`` pixels, see ``down``).

Layout (``c`` = ``channels``, every convolution 3x3 with zero padding, ReLU after all but the
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

__all__ = ["SRVAE"]


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

    ``forward(lr)`` -> ``(sr, mu, logvar)``: ``sr`` (N, 3, h f, w f) in [0, 1]; ``mu`` and
    ``logvar`` (N, z_channels, h', w'). In training mode ``z`` is sampled, in eval mode ``z = mu``.
    ``upscale(lr)`` -> ``sr`` with ``z = mu`` whatever the mode (deterministic; used for evaluation).
    """

    def __init__(self, factor: int = 2, channels: int = 48, z_channels: int = 16, blocks: int = 2, down: int = 0,
                 residual: bool = True, logvar_init: float = -6.0) -> None:
        super().__init__()
        ups = math.log2(factor) if factor >= 2 else -1
        if ups != int(ups) or ups < 1:
            raise ValueError(f"factor must be a power of two >= 2 (x2, x4, x8), got {factor}")
        if channels < 1 or z_channels < 1 or blocks < 0 or down < 0:
            raise ValueError(f"need channels, z_channels >= 1 and blocks, down >= 0, got {channels}, {z_channels}, "
                             f"{blocks}, {down}")
        self.factor, self.channels, self.z_channels = int(factor), int(channels), int(z_channels)
        self.blocks, self.down, self.residual = int(blocks), int(down), bool(residual)
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
        mu, logvar = self.to_latent(self.encoder(lr)).chunk(2, dim=1)
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
