"""Cost of each loss network in super-resolution training (benchmark 2), relative to pixel loss.

All timings in ONE run, on the same patches, batch and threads: a training step of the
transformation network (forward, loss, backward, Adam) with pixel loss (MSE), then with the
feature reconstruction loss (Eq. 3) of each requested loss network at each layer, with the
target patches' features computed on every step (online) and computed once beforehand (cached,
what benchmark 2 does when they fit in ``feature_cache_gb``). Prints milliseconds per step and
the ratios to pixel loss, i.e. how much a loss network multiplies the cost of a run. Also times full-image inference in both memory formats (the network runs
channels-last).

    python speed/sr_step_time.py [--archs alexnet,vgg16,efficientnet_lite0] [--layers E,L]
        [--patch 64] [--batch 8] [--steps 6] [--channels 32] [--threads 2] [--random-weights]
        [--repeats 3]

``--repeats R`` measures every row R times, interleaved (all rows, then all rows again ...), and
prints the median of the R per-repeat medians with their range; ratios are taken within each
repeat and summarised the same way (``make results`` uses 3: docs/super_resolution.md).
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from lossnet.losses import FeatureReconstructionLoss
from lossnet.models.transformer import TransformerNet
from lossnet.zoo import LossNetwork


def step_ms(net: TransformerNet, criterion, lr: torch.Tensor, hr: torch.Tensor, steps: int, feats=None) -> float:
    opt = torch.optim.Adam(net.parameters(), 1e-4)
    times = []
    for _ in range(steps + 1):  # the first step warms up
        t0 = time.perf_counter()
        out = net(lr)
        loss = criterion(out, hr, feats) if criterion is not None else (out - hr).pow(2).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        times.append(time.perf_counter() - t0)
    return 1000 * sorted(times[1:])[len(times[1:]) // 2]


@torch.no_grad()
def inference_ms(net: TransformerNet, shape: tuple[int, int], channels_last: bool) -> float:
    net.eval().to(memory_format=torch.channels_last if channels_last else torch.contiguous_format)
    x = torch.rand(1, 3, *shape)
    body = [net.head, net.body, net.up, net.tail]
    times = []
    for _ in range(3):
        t0 = time.perf_counter()
        h = x.contiguous(memory_format=torch.channels_last) if channels_last else x
        for m in body:
            h = m(h)
        times.append(time.perf_counter() - t0)
    net.to(memory_format=torch.channels_last).train()
    return 1000 * min(times)


def _fmt(values: list[float], spec: str, spread: bool) -> str:
    """The median of ``values``, with ``[min-max]`` when there are several."""
    med = statistics.median(values)
    return f"{med:{spec}} [{min(values):{spec}}-{max(values):{spec}}]" if spread else f"{med:{spec}}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--archs", default="alexnet,vgg16,efficientnet_lite0")
    ap.add_argument("--layers", default="E,L")
    ap.add_argument("--patch", type=int, default=64)
    ap.add_argument("--factor", type=int, default=4)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--steps", type=int, default=6)
    ap.add_argument("--channels", type=int, default=32)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--random-weights", action="store_true", help="no ImageNet weights needed (same cost)")
    ap.add_argument("--repeats", type=int, default=1, help="measure every row this many times, interleaved")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    hr = torch.rand(a.batch, 3, a.patch, a.patch)
    lr = torch.nn.functional.interpolate(hr, scale_factor=1 / a.factor, mode="bicubic", antialias=True).clamp(0, 1)
    net = TransformerNet(a.factor, 5, a.channels, residual=True)
    rows = [(arch, layer) for arch in a.archs.split(",") for layer in a.layers.split(",")]
    crits = {}
    for arch, layer in rows:
        ln = LossNetwork(arch, layers=[layer], weights=None if a.random_weights else "imagenet")
        with torch.no_grad():
            crits[arch, layer] = FeatureReconstructionLoss(ln), ln(hr)
    base, online, cached = [], {r: [] for r in rows}, {r: [] for r in rows}
    for _ in range(a.repeats):  # interleaved: load from other processes hits every row alike
        base.append(step_ms(net, None, lr, hr, a.steps))
        for r in rows:
            crit, feats = crits[r]
            online[r].append(step_ms(net, crit, lr, hr, a.steps))
            cached[r].append(step_ms(net, crit, lr, hr, a.steps, feats))
    spread = a.repeats > 1
    print(f"SR training step, x{a.factor}, {a.batch} patches of {a.patch} px, {a.channels} channels, "
          f"{a.threads} threads (median of {a.steps} steps" + (f"; median [range] of {a.repeats} repeats)\n" if spread else ")\n"))
    print("| loss | ms / step online | x pixel | ms / step cached | x pixel | cached speed-up |\n"
          f"| --- | ---: | ---: | ---: | ---: | ---: |\n| pixel (MSE) | {_fmt(base, '.0f', spread)} | 1.00 | | | |")
    for r in rows:
        on, ca = online[r], cached[r]
        print(f"| {r[0]}:{r[1]} | {_fmt(on, '.0f', spread)} | {_fmt([o / b for o, b in zip(on, base)], '.2f', spread)} | "
              f"{_fmt(ca, '.0f', spread)} | {_fmt([c / b for c, b in zip(ca, base)], '.2f', spread)} | "
              f"{_fmt([o / c for o, c in zip(on, ca)], '.2f', spread)} |")
    shape = (80, 120)  # a BSD100-sized input at x4 (320 x 480 output)
    nchw, cl = inference_ms(net, shape, False), inference_ms(net, shape, True)
    print(f"\nfull-image inference {shape[0]}x{shape[1]} -> x{a.factor}: contiguous {nchw:.0f} ms, "
          f"channels-last {cl:.0f} ms ({nchw / cl:.2f}x faster)")


if __name__ == "__main__":
    main()
