"""Wall time of a fused probe grid vs training its probes one after another.

Synthetic data shaped like the real use: N=4000 probe-training embeddings of size D=64 (80/20
train/val split inside the fit), 1000 test embeddings; 2-d regression targets in pixels
(LunarLander lander position) and a 10-class classification (STL-10 / SVHN). For each grid and
task the script times ``fit_probe_grid`` (all probes in one pass) and ``fit_probe_sequential``
(the naive baseline, same protocol) and prints the speed-up ratio. Both produce the same probes
(same init, split and batch order), which the script checks via the selected probe.
Each configuration is timed ``--repeats`` times, fused and sequential interleaved, and the
fastest time of each is reported (robust to other jobs on a shared machine; the load average is
printed too). On a busy 2-core machine ``--threads 1`` gives far steadier numbers: with 2
OpenMP threads a descheduled thread stalls every parallel matmul.

    python speed/probe_grid.py                 # paper_b and paper_a, 20 epochs
    python speed/probe_grid.py --epochs 500    # the papers' setting
"""

from __future__ import annotations

import argparse
import os
import platform
import time

import torch

from lossnet.eval.probes import fit_probe_grid, fit_probe_sequential, make_grid


def synthetic(n: int, n_test: int, d: int, task: str, seed: int = 0):
    """Embeddings (N, D) float32 and targets: pixels (N, 2) float32 or labels (N,) int64."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n + n_test, d, generator=g)
    if task == "regression":
        a = torch.randn(d, 2, generator=g) / d**0.5
        pos = torch.tanh(x @ a) * torch.tensor([250.0, 150.0]) + torch.tensor([300.0, 200.0])
        y = pos + 5.0 * torch.randn(pos.shape, generator=g)
    else:
        w = torch.randn(d, 10, generator=g)
        y = (x @ w + 2.0 * torch.randn(n + n_test, 10, generator=g)).argmax(1)
    return x[:n], y[:n], x[n:], y[n:]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", type=int, default=20)
    ap.add_argument("--n", type=int, default=4000, help="probe-training samples (train+val)")
    ap.add_argument("--n-test", type=int, default=1000)
    ap.add_argument("--dim", type=int, default=64)
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--grids", nargs="+", default=["paper_b", "paper_a"])
    ap.add_argument("--tasks", nargs="+", default=["regression", "classification"])
    ap.add_argument("--threads", type=int, default=None, help="torch.set_num_threads")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--repeats", type=int, default=3, help="best-of-k timing")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    print(
        f"torch {torch.__version__}, {platform.processor() or platform.machine()}, "
        f"threads={torch.get_num_threads()}, device={args.device}, N={args.n} "
        f"(train {args.n - round(0.2 * args.n)} / val {round(0.2 * args.n)}), D={args.dim}, "
        f"epochs={args.epochs}, batch={args.batch_size}, best of {args.repeats}"
    )
    if hasattr(os, "getloadavg"):
        print("load average before: %.2f %.2f %.2f" % os.getloadavg())
    # warm-up (first-call allocations, kernels, thread pool) so neither side pays for it
    x, y, xt, yt = synthetic(256, 64, args.dim, "classification")
    for fit in (fit_probe_grid, fit_probe_sequential):
        fit(x, y, xt, yt, task="classification", grid="paper_b", epochs=2, progress=False,
            device=args.device)

    header = f"{'grid':<8} {'task':<15} {'probes':>6} {'fused s':>9} {'sequential s':>13} " \
             f"{'speed-up':>9}  selected (fused / sequential), test metric"
    print(header)
    print("-" * len(header))
    for grid in args.grids:
        for task in args.tasks:
            x, y, xt, yt = synthetic(args.n, args.n_test, args.dim, task)
            kw = dict(task=task, grid=grid, epochs=args.epochs, batch_size=args.batch_size,
                      progress=False, device=args.device)
            t_fused = t_seq = float("inf")
            for _ in range(max(1, args.repeats)):
                t0 = time.perf_counter()
                fused = fit_probe_grid(x, y, xt, yt, **kw)
                t_fused = min(t_fused, time.perf_counter() - t0)
                t0 = time.perf_counter()
                seq = fit_probe_sequential(x, y, xt, yt, **kw)
                t_seq = min(t_seq, time.perf_counter() - t0)
            same = "same" if fused.selected_name == seq.selected_name else "DIFFERENT"
            print(
                f"{grid:<8} {task:<15} {len(make_grid(grid, task)):>6} {t_fused:>9.2f} "
                f"{t_seq:>13.2f} {t_seq / t_fused:>8.2f}x  {fused.selected_name} ({same}), "
                f"{fused.metric}={fused.test_metric:.4g} / {seq.test_metric:.4g}"
            )
    if hasattr(os, "getloadavg"):
        print("load average after:  %.2f %.2f %.2f" % os.getloadavg())


if __name__ == "__main__":
    main()
