"""Johnson et al.'s image transformation network for super-resolution (ECCV 2016, supp. Table 2).

``c9s1-C, R x blocks, (u3-C) x log2(factor), c9s1-3``: a 9x9 convolution, residual blocks at the
low resolution (two 3x3 convolutions with batch norm, ReLU between, identity skip and no ReLU
after the sum, as Gross & Wilber's "modified" blocks), one stride-1/2 (transposed, 3x3)
convolution per factor of two, and a 9x9 convolution to RGB. Every convolution but the last is
followed by batch norm and ReLU; the output is a scaled tanh, ``(tanh(x) + 1) / 2`` in [0, 1].
The systematic-analysis paper uses five residual blocks (Johnson et al. four); 64 channels.

``residual=True`` (not in the paper; lossnet's quick scale) predicts a correction to bicubic
upsampling instead: ``clamp(bicubic(x) + c9s1-3(...), 0, 1)`` with the last convolution
initialised to zero, so training starts from bicubic quality. Johnson et al.'s network has to
learn the whole image from scratch, which takes far more iterations than a 2-core CPU affords
(about 21 dB against bicubic's 29 dB on held-out images after 400 iterations).

Input (N, 3, h, w) in [0, 1] -> output (N, 3, h * factor, w * factor) in [0, 1]; fully
convolutional, so it is applied to whole test images.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


def _conv(cin: int, cout: int, k: int) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, k, padding=k // 2)


class ResidualBlock(nn.Module):
    """conv3-BN-ReLU-conv3-BN + identity (no ReLU after the sum)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.body = nn.Sequential(_conv(channels, channels, 3), nn.BatchNorm2d(channels), nn.ReLU(inplace=True),
                                  _conv(channels, channels, 3), nn.BatchNorm2d(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


class TransformerNet(nn.Module):
    """Super-resolution transformation network (x2, x4, x8, ...: powers of two).

    Args:
        factor: upscaling factor, a power of two >= 2.
        blocks: residual blocks (the systematic analysis: 5; Johnson et al.: 4).
        channels: feature channels (64 in both papers).
        residual: predict a correction to bicubic upsampling (see the module docstring).
    """

    def __init__(self, factor: int = 4, blocks: int = 5, channels: int = 64, residual: bool = False) -> None:
        super().__init__()
        ups = math.log2(factor) if factor >= 2 else -1
        if ups != int(ups) or ups < 1:
            raise ValueError(f"factor must be a power of two >= 2 (x2, x4, x8), got {factor}")
        if blocks < 0 or channels < 1:
            raise ValueError(f"blocks must be >= 0 and channels >= 1, got {blocks}, {channels}")
        self.factor, self.blocks, self.channels, self.residual = int(factor), int(blocks), int(channels), bool(residual)
        c = channels
        self.head = nn.Sequential(_conv(3, c, 9), nn.BatchNorm2d(c), nn.ReLU(inplace=True))
        self.body = nn.Sequential(*[ResidualBlock(c) for _ in range(blocks)])
        up = []
        for _ in range(int(ups)):
            up += [nn.ConvTranspose2d(c, c, 3, stride=2, padding=1, output_padding=1), nn.BatchNorm2d(c),
                   nn.ReLU(inplace=True)]
        self.up = nn.Sequential(*up)
        self.tail = _conv(c, 3, 9)
        if self.residual:
            nn.init.zeros_(self.tail.weight)
            nn.init.zeros_(self.tail.bias)
        # channels-last: 2-3x faster convolutions on CPU (the 9x9 output convolution at full
        # resolution dominates); same results
        self.to(memory_format=torch.channels_last)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 4 or x.shape[1] != 3:
            raise ValueError(f"expected images (N, 3, h, w), got {tuple(x.shape)}")
        y = self.tail(self.up(self.body(self.head(x.contiguous(memory_format=torch.channels_last)))))
        if self.residual:
            base = F.interpolate(x, scale_factor=self.factor, mode="bicubic", align_corners=False)
            return (base + y).clamp(0, 1).contiguous()
        return ((torch.tanh(y) + 1) / 2).contiguous()
