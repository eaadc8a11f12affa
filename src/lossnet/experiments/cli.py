"""Sub-commands for experiments: ``demo``, ``run``, ``report``."""

from __future__ import annotations

import argparse
import time


def _demo(args) -> None:
    from .demo import DemoConfig, format_table, run_demo

    cfg = DemoConfig(out=args.out, scale=args.scale, z=args.z, seed=args.seed, epochs=args.epochs,
                     probe_epochs=args.probe_epochs, rollouts=tuple(args.rollouts) if args.rollouts else None,
                     procedures=tuple(args.procedures), device=args.device, workers=args.workers,
                     progress=not args.no_progress)
    t0 = time.perf_counter()
    rows = run_demo(cfg)
    print()
    print(format_table(rows))
    pw = next((r for r in rows if r["procedure"] == "I-I-PW"), None)
    if pw is not None:
        for r in rows:
            if r is not pw:
                print(f"{r['procedure']}: error {r['test_error_px'] / pw['test_error_px']:.2f} x I-I-PW's, "
                      f"epoch time {r['epoch_seconds'] / pw['epoch_seconds']:.2f} x I-I-PW's")
    print(f"\nwrote {args.out}/results.json, results.md, error_vs_time.png, reconstructions_*.png "
          f"({time.perf_counter() - t0:.0f} s)")


def add_commands(sub) -> None:
    """Register the experiment sub-commands on the top-level ``lossnet`` sub-parser."""
    d = sub.add_parser("demo", help="the main job: PW vs PS vs FP encoder pretraining on LunarLander",
                       description="Generate a LunarLander collection, train I-I-PW, I-I-PS and I-F-FP encoders "
                                   "(AlexNet 2nd ReLU + sigmoid loss network, z=64), fit the paper-B probe grid and "
                                   "report the test position error and training time of each. Reruns resume.",
                       formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    d.add_argument("--out", default="demo_out", help="output directory")
    d.add_argument("--scale", default="quick", choices=["quick", "paper"],
                   help="quick: minutes on a 2-core CPU; paper: 3x700 rollouts, 50 epochs (GPU)")
    d.add_argument("--procedures", nargs="+", default=["I-I-PW", "I-I-PS", "I-F-FP"],
                   help="procedures to compare (I-I-PW I-I-PS F-I-PW F-I-PS I-F-FP F-F-FP)")
    d.add_argument("--z", type=int, default=64, help="embedding size")
    d.add_argument("--seed", type=int, default=0)
    d.add_argument("--epochs", type=int, help="encoder epochs (default from --scale)")
    d.add_argument("--probe-epochs", type=int, help="probe epochs (default from --scale)")
    d.add_argument("--rollouts", type=int, nargs=3, metavar=("N1", "N2", "N3"),
                   help="rollouts of runs 1-3 (default from --scale)")
    d.add_argument("--workers", type=int, help="collection workers (default: all cores)")
    d.add_argument("--device", help="cpu or cuda (default: cuda when present)")
    d.add_argument("--no-progress", action="store_true", help="no progress bars")
    d.set_defaults(func=_demo)

    from . import runner

    runner.add_cli(sub)
