"""Does ``torch.compile`` speed up a perceptual-loss training step on CPU? (docs/losses.md)

One step = ``PerceptualLoss("paper")`` (AlexNet to the 2nd ReLU + sigmoid) forward and backward
w.r.t. a (B, 3, S, S) batch, eager vs ``torch.compile(loss)`` (inductor, default mode; compile
time reported separately, not in the step). The two are interleaved (A B A B ...) so load from
other processes hits both alike; printed: median and min ms per step, and eager / compiled.

    python tools/compile_step_time.py --batch 8 --size 64 --repeats 20
"""

from __future__ import annotations

import argparse
import statistics
import time
import warnings

import torch

from lossnet.losses import PerceptualLoss


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch", type=int, default=8, help="images per step")
    ap.add_argument("--size", type=int, default=64, help="image side, pixels")
    ap.add_argument("--repeats", type=int, default=20, help="timed steps per contender")
    a = ap.parse_args()
    torch.manual_seed(0)
    loss = PerceptualLoss("paper")
    target = torch.rand(a.batch, 3, a.size, a.size)
    x = torch.rand(a.batch, 3, a.size, a.size, requires_grad=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        compiled = torch.compile(loss)
        t0 = time.perf_counter()
        compiled(x, target).backward()
        compiled(x, target).backward()
    compile_s = time.perf_counter() - t0
    times = {"eager": [], "compiled": []}
    fns = {"eager": loss, "compiled": compiled}
    for _ in range(3):
        loss(x, target).backward()
    for _ in range(a.repeats):
        for name, fn in fns.items():
            x.grad = None
            t = time.perf_counter()
            fn(x, target).backward()
            times[name].append((time.perf_counter() - t) * 1e3)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, batch {a.batch} x 3 x {a.size} x {a.size}, "
          f"{a.repeats} steps each; first compiled steps {compile_s:.1f} s")
    for name, ts in times.items():
        print(f"{name:9s} median {statistics.median(ts):7.2f} ms  min {min(ts):7.2f} ms")
    e, c = (statistics.median(times[k]) for k in ("eager", "compiled"))
    print(f"eager / compiled (median): {e / c:.2f}")


if __name__ == "__main__":
    main()
