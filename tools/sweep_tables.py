#!/usr/bin/env python3
"""Multi-seed benchmark-sweep tables for the docs (called by ``tools/results.py``; usable alone).

    python tools/sweep_tables.py autoencoding --seeds 0 1 2 --loss-nets alexnet,efficientnet_lite0

runs ``lossnet sweep autoencoding loss_net=... seed=S`` once per seed (quick scale, LunarLander)
in ``runs/results/autoencoding-<inputs digest>/seedS`` (a rerun resumes: finished cells are
skipped) and prints one markdown table: per loss network and extraction layer, the test position
error of the selected probe as mean ± std over the seeds (uncorrected std) and the mean cell time.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections import defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from tables import REPO, _lossnet, read_rows, spread  # noqa: E402

LAYERS = ("E", "S", "M", "L")


def autoencoding_table(rows: list[dict], seeds: list[int], score: str = "lunarlander_error_px") -> str:
    """``| loss network | E | S | M | L | cell s |`` with ``mean ± std`` over ``seeds`` per layer."""
    by: dict[tuple[str, str], dict[int, dict]] = defaultdict(dict)
    for r in rows:
        if r.get("status", "ok") == "ok" and score in r:
            by[(r["arch"], r["layer"])][r["seed"]] = r
    archs = list(dict.fromkeys(a for a, _ in by))
    missing = [(a, layer, s) for a in archs for layer in LAYERS for s in seeds if s not in by.get((a, layer), {})]
    if not archs or missing:
        raise SystemExit(f"sweep_tables: the sweep rows lack {missing or 'every cell'}")
    out = [f"| loss network | {' | '.join(LAYERS)} | cell s, {' / '.join(LAYERS)} |",
           "| --- | " + " | ".join("---:" for _ in LAYERS) + " | --- |"]
    for a in archs:
        cells = [spread([by[(a, layer)][s][score] for s in seeds])[0] for layer in LAYERS]
        secs = [sum(by[(a, layer)][s]["seconds"] for s in seeds) / len(seeds) for layer in LAYERS]
        out.append(f"| {a} | {' | '.join(cells)} | {' / '.join(f'{x:.0f}' for x in secs)} |")
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    a = sub.add_parser("autoencoding", help="`lossnet sweep autoencoding seed=S` for each seed")
    a.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    a.add_argument("--loss-nets", default="alexnet,efficientnet_lite0")
    a.add_argument("--workdir", type=Path, default=None, help="default runs/results/autoencoding-<inputs digest>")
    a.add_argument("overrides", nargs="*", help="extra key=value settings for the sweep")
    args = ap.parse_args(argv)
    work = args.workdir or REPO / "runs" / "results" / f"autoencoding-{os.environ.get('LOSSNET_TABLE_DIGEST', 'adhoc')}"
    walls = []
    for s in args.seeds:
        walls.append(_lossnet(["sweep", "autoencoding", f"loss_net={args.loss_nets}", f"seed={s}",
                               f"out={work / f'seed{s}'}", "report=false", *args.overrides]))
    rows = [r for s in args.seeds for r in read_rows(work / f"seed{s}" / "results.jsonl")]
    print(f"\n{autoencoding_table(rows, args.seeds)}\n\nWall time of the sweep, seed "
          + ", ".join(f"{s}: {w / 60:.1f} min" for s, w in zip(args.seeds, walls)) + " (0 for a fully resumed run).")
    return 0


if __name__ == "__main__":
    sys.exit(main())
