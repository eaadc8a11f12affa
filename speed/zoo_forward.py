"""Forward time per 64x64 image and FLOPs of every offline-available loss network and layer.

Prints one row per (architecture, layer): batch forward time per image (ms, median of repeats),
its ratio to AlexNet-E measured in the same run, the FLOPs of the truncated forward pass
(torch.utils.flop_counter, 2 per multiply-add) and parameters/depth up to the layer. With
--json FILE also writes the rows (the data the cross-analysis needs).

    python speed/zoo_forward.py [--size 64] [--batch 64] [--repeats 5] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
import warnings

import torch

from lossnet.zoo import LossNetwork, describe, list_archs, status
from lossnet.zoo.layers import LAYER_KEYS


def time_forward(net: LossNetwork, x: torch.Tensor, repeats: int) -> float:
    with torch.no_grad():
        net(x)  # warm-up
        ts = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            net(x)
            ts.append(time.perf_counter() - t0)
    return statistics.median(ts) / len(x)


def main() -> None:
    warnings.filterwarnings("ignore")
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--json")
    args = ap.parse_args()
    torch.manual_seed(0)
    x = torch.rand(args.batch, 3, args.size, args.size)
    rows = []
    archs = [a for a in list_archs() if status(a).available]
    print(f"offline-available: {', '.join(archs)}; input {args.batch}x3x{args.size}x{args.size}, "
          f"{torch.get_num_threads()} threads")
    for arch in archs:
        for layer in LAYER_KEYS:
            net = LossNetwork(arch, layers=[layer])
            info = describe(arch, layer, args.size)
            rows.append({**info.as_dict(), "ms_per_image": 1e3 * time_forward(net, x, args.repeats)})
    ref = rows[0]["ms_per_image"]
    print(f"{'arch':<20}{'layer':<7}{'node':<14}{'ms/img':>9}{'x alexnet-E':>13}{'MFLOPs':>10}{'params':>12}{'depth':>7}")
    for r in rows:
        print(f"{r['arch']:<20}{r['layer']:<7}{r['node']:<14}{r['ms_per_image']:>9.3f}{r['ms_per_image'] / ref:>13.2f}"
              f"{r['flops'] / 1e6:>10.1f}{r['params']:>12,}{r['depth']:>7}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=2)


if __name__ == "__main__":
    main()
