"""U-Net (Ronneberger et al. 2015) and its iterative use for delineation (Mosinska et al. 2018).

:class:`UNet`: per level two (3x3 conv, batch norm, ReLU) blocks with padding 1 (output size =
input size, unlike the original's valid convolutions), 2x2 max-pooling down, 2x2 transposed
convolutions (``up="transpose"``, the original) or bilinear upsampling followed by a 1x1
convolution (``up="bilinear"``) up, skip connections by concatenation, a final 1x1 convolution
to ``out_channels`` logits. ``base`` channels at the first level, doubled per level; ``depth``
poolings. ``UNet(base=64, depth=4)`` is Ronneberger's width and depth (64 ... 1024 channels).

:class:`IterativeUNet`: the U-Net applied ``iterations`` times with shared weights; iteration
``k`` gets ``concat(image, sigmoid(logits of iteration k-1))``, iteration 1 a blank (zero)
extra channel. By default the previous output is *not* detached: the whole chain is trained
end-to-end (a recurrent network unrolled ``iterations`` times), which is how Mosinska et al.
describe the refinement; ``detach=True`` cuts the gradient between iterations (each iteration then
learns to refine a fixed input, cheaper in memory).
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["IterativeUNet", "UNet"]


def _block(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True),
        nn.Conv2d(cout, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True),
    )


class _Up(nn.Module):
    def __init__(self, cin: int, cout: int, mode: str) -> None:
        super().__init__()
        if mode == "transpose":
            self.up = nn.ConvTranspose2d(cin, cout, 2, stride=2)
        else:
            self.up = nn.Sequential(nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False),
                                    nn.Conv2d(cin, cout, 1))
        self.conv = _block(2 * cout, cout)

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        return self.conv(torch.cat([skip, self.up(x)], 1))


class UNet(nn.Module):
    """U-Net returning logits (N, out_channels, H, W) for input (N, in_channels, H, W).

    Args:
        in_channels: input channels (4 for RGB + the previous iteration's map).
        out_channels: output maps (1 for delineation).
        base: channels of the first level (64 in Ronneberger et al.).
        depth: number of 2x2 poolings (4 in Ronneberger et al.); H and W must be divisible by
            ``2 ** depth``.
        up: ``"transpose"`` (2x2 transposed convolution) or ``"bilinear"``.
    """

    def __init__(self, in_channels: int = 4, out_channels: int = 1, base: int = 64, depth: int = 4,
                 up: str = "transpose") -> None:
        super().__init__()
        for name, v in (("in_channels", in_channels), ("out_channels", out_channels), ("base", base)):
            if not isinstance(v, int) or v < 1:
                raise ValueError(f"{name} must be a positive int, got {v!r}")
        if not isinstance(depth, int) or not 1 <= depth <= 6:
            raise ValueError(f"depth must be an int in 1..6, got {depth!r}")
        if up not in ("transpose", "bilinear"):
            raise ValueError(f"up must be 'transpose' or 'bilinear', got {up!r}")
        self.in_channels, self.out_channels = in_channels, out_channels
        self.base, self.depth, self.up_mode = base, depth, up
        widths = [base * 2 ** i for i in range(depth + 1)]
        self.down = nn.ModuleList([_block(in_channels, widths[0])] +
                                  [_block(widths[i], widths[i + 1]) for i in range(depth)])
        self.pool = nn.MaxPool2d(2)
        self.ups = nn.ModuleList([_Up(widths[i + 1], widths[i], up) for i in reversed(range(depth))])
        self.head = nn.Conv2d(widths[0], out_channels, 1)

    def check_input(self, x: torch.Tensor) -> None:
        if not isinstance(x, torch.Tensor) or x.ndim != 4 or x.shape[1] != self.in_channels:
            shape = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
            raise ValueError(f"UNet expects input (N, {self.in_channels}, H, W), got {shape}")
        m = 2 ** self.depth
        if x.shape[2] % m or x.shape[3] % m:
            raise ValueError(f"UNet of depth {self.depth} needs H and W divisible by {m}, "
                             f"got {x.shape[2]}x{x.shape[3]}; "
                             f"resize or crop the input, or lower depth")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.check_input(x)
        skips = []
        for i, block in enumerate(self.down):
            x = block(x if i == 0 else self.pool(x))
            skips.append(x)
        x = skips.pop()
        for up in self.ups:
            x = up(x, skips.pop())
        return self.head(x)


class IterativeUNet(nn.Module):
    """A :class:`UNet` applied ``iterations`` times; ``forward(image)`` returns the list of the
    iterations' logits (each (N, out_channels, H, W)), the last one being the prediction.

    ``unet.in_channels`` must equal image channels + ``unet.out_channels``. Iteration 1 gets a
    zero map as the previous output; iteration k > 1 gets ``sigmoid(logits_{k-1})``, detached when
    ``detach=True`` (default False: gradients flow through all iterations).
    """

    def __init__(self, unet: UNet, iterations: int = 3, detach: bool = False) -> None:
        super().__init__()
        if not isinstance(iterations, int) or iterations < 1:
            raise ValueError(f"iterations must be an int >= 1, got {iterations!r}")
        self.unet, self.iterations, self.detach = unet, iterations, bool(detach)

    @property
    def image_channels(self) -> int:
        return self.unet.in_channels - self.unet.out_channels

    def forward(self, image: torch.Tensor, iterations: int | None = None) -> list[torch.Tensor]:
        c = self.image_channels
        if not isinstance(image, torch.Tensor) or image.ndim != 4 or image.shape[1] != c:
            shape = tuple(image.shape) if isinstance(image, torch.Tensor) else type(image).__name__
            raise ValueError(f"IterativeUNet expects images (N, {c}, H, W), got {shape}")
        n, _, h, w = image.shape
        prev = image.new_zeros(n, self.unet.out_channels, h, w)
        outs = []
        for _ in range(self.iterations if iterations is None else int(iterations)):
            logits = self.unet(torch.cat([image, prev], 1))
            outs.append(logits)
            prev = torch.sigmoid(logits)
            if self.detach:
                prev = prev.detach()
        return outs
