"""Encoders and decoders of papers A and B.

Image encoder/decoder: the world-models VAE of Ha and Schmidhuber as the papers use it. Images
are (N, 3, S, S) in [0, 1] with S = 64 + 16 n (64 for LunarLander/SVHN, 96 for STL-10).

* :class:`ImageEncoder`: four convolutions (kernel 4, stride 2; 32, 64, 128, 256 channels), each
  followed by BatchNorm and ReLU, then linear layers to ``mu`` (and ``logvar`` for a VAE).
* :class:`ImageDecoder`: linear z -> 1024 x g x g with ReLU (g = (S - 48) / 16), then
  deconvolutions (stride 2, kernels 5, 5, 6, 6; 128, 64, 32, 3 channels), BatchNorm + ReLU on the
  first three, a sigmoid on the last.
* :class:`FeatureEncoder` / :class:`FeatureDecoder`: MLPs with one hidden layer of 2048 between the
  loss network's flattened features (D = C H W) and the latent z.
"""

from __future__ import annotations

import torch
from torch import nn


def _check_size(size: int) -> int:
    if size < 64 or (size - 64) % 16:
        raise ValueError(f"image size must be 64 + 16n (64, 80, 96, ...), got {size}")
    return (size - 48) // 16


def _conv_out(size: int) -> int:
    for _ in range(4):
        size = (size - 4) // 2 + 1
    return size


class ImageEncoder(nn.Module):
    """Convolutional encoder: images (N, 3, S, S) in [0, 1] -> ``mu`` (N, z) [, ``logvar`` (N, z)]."""

    def __init__(self, z: int, size: int = 64, variational: bool = False) -> None:
        super().__init__()
        _check_size(size)
        layers, c_in = [], 3
        for c in (32, 64, 128, 256):
            layers += [nn.Conv2d(c_in, c, 4, stride=2), nn.BatchNorm2d(c), nn.ReLU(inplace=True)]
            c_in = c
        self.conv = nn.Sequential(*layers)
        flat = 256 * _conv_out(size) ** 2
        self.mu = nn.Linear(flat, z)
        self.logvar = nn.Linear(flat, z) if variational else None
        self.z, self.size, self.variational = z, size, variational

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        h = self.conv(x).flatten(1)
        return self.mu(h), (self.logvar(h) if self.logvar is not None else None)


class ImageDecoder(nn.Module):
    """Deconvolutional decoder: z (N, z) -> images (N, 3, S, S) in [0, 1]."""

    def __init__(self, z: int, size: int = 64) -> None:
        super().__init__()
        self.g = _check_size(size)
        self.fc = nn.Sequential(nn.Linear(z, 1024 * self.g * self.g), nn.ReLU(inplace=True))
        layers, c_in = [], 1024
        for c, k in zip((128, 64, 32), (5, 5, 6)):
            layers += [nn.ConvTranspose2d(c_in, c, k, stride=2), nn.BatchNorm2d(c), nn.ReLU(inplace=True)]
            c_in = c
        layers += [nn.ConvTranspose2d(c_in, 3, 6, stride=2), nn.Sigmoid()]
        self.deconv = nn.Sequential(*layers)
        self.size = size

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.deconv(self.fc(z).view(-1, 1024, self.g, self.g))


class FeatureEncoder(nn.Module):
    """MLP encoder: flattened loss-network features (N, D) -> ``mu`` (N, z) [, ``logvar``]."""

    def __init__(self, in_dim: int, z: int, hidden: int = 2048, variational: bool = False) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Linear(in_dim, hidden), nn.ReLU(inplace=True))
        self.mu = nn.Linear(hidden, z)
        self.logvar = nn.Linear(hidden, z) if variational else None
        self.z, self.variational = z, variational

    def forward(self, f: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        h = self.body(f.flatten(1))
        return self.mu(h), (self.logvar(h) if self.logvar is not None else None)


class FeatureDecoder(nn.Module):
    """MLP decoder: z (N, z) -> predicted loss-network features (N, D).

    ``output="sigmoid"`` (default) matches sigmoid-normalised loss networks (papers A/B); use
    ``"linear"`` for unbounded features.
    """

    def __init__(self, z: int, out_dim: int, hidden: int = 2048, output: str = "sigmoid") -> None:
        super().__init__()
        if output not in ("sigmoid", "linear"):
            raise ValueError(f"output must be 'sigmoid' or 'linear', got {output!r}")
        self.body = nn.Sequential(nn.Linear(z, hidden), nn.ReLU(inplace=True), nn.Linear(hidden, out_dim))
        self.act = nn.Sigmoid() if output == "sigmoid" else nn.Identity()

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.act(self.body(z))


class Autoencoder(nn.Module):
    """An encoder and a decoder; a VAE when the encoder is variational.

    ``forward(x)`` returns ``(output, mu, logvar)``; in training mode a VAE decodes the
    reparameterised sample ``mu + eps * exp(logvar / 2)``, in eval mode ``mu``. The embedding used
    downstream is always ``mu`` (:meth:`embed`).
    """

    def __init__(self, encoder: nn.Module, decoder: nn.Module) -> None:
        super().__init__()
        self.encoder, self.decoder = encoder, decoder

    @property
    def variational(self) -> bool:
        return bool(getattr(self.encoder, "variational", False))

    def forward(self, x: torch.Tensor):
        mu, logvar = self.encoder(x)
        z = mu
        if self.training and logvar is not None:
            z = mu + torch.randn_like(mu) * torch.exp(0.5 * logvar)
        return self.decoder(z), mu, logvar

    @torch.no_grad()
    def embed(self, x: torch.Tensor) -> torch.Tensor:
        return self.encoder(x)[0]
