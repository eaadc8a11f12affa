#!/usr/bin/env python3
"""Multi-seed benchmark-sweep tables for the docs (called by ``tools/results.py``; usable alone).

    python tools/sweep_tables.py autoencoding --seeds 0 1 2 --loss-nets alexnet,efficientnet_lite0
    python tools/sweep_tables.py delineation --seeds 0 1 2 --loss-nets alexnet --layers E,L

run ``lossnet sweep BENCHMARK loss_net=... seed=S`` once per seed (quick scale) in
``runs/results/BENCHMARK-<inputs digest>/seedS`` (a rerun resumes: finished cells are skipped) and
print one markdown table with mean ± std over the seeds (uncorrected std) and the mean cell time:
``autoencoding`` (LunarLander): per loss network and extraction layer, the test position error of
the selected probe; ``delineation`` (synthetic roads): per loss (the BCE-only reference, then BCE +
mu L_top per loss network and layer, best quality first), completeness / correctness / quality in
percent, the quality after each U-Net iteration and mu L_top / L_bce at initialisation.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from tables import REPO, _lossnet, by_seed, read_rows, spread  # noqa: E402

LAYERS = ("E", "S", "M", "L")


def autoencoding_table(rows: list[dict], seeds: list[int], score: str = "lunarlander_error_px") -> str:
    """``| loss network | E | S | M | L | cell s |`` with ``mean ± std`` over ``seeds`` per layer."""
    ok = [r for r in rows if r.get("status", "ok") == "ok" and score in r]
    archs = list(dict.fromkeys(r["arch"] for r in ok))
    by = by_seed((((r["arch"], r["layer"]), r["seed"], r) for r in ok), seeds, "sweep_tables: the sweep rows",
                 expected=[(a, layer) for a in archs for layer in LAYERS])
    out = [f"| loss network | {' | '.join(LAYERS)} | cell s, {' / '.join(LAYERS)} |",
           "| --- | " + " | ".join("---:" for _ in LAYERS) + " | --- |"]
    for a in archs:
        cells = [spread([by[(a, layer)][s][score] for s in seeds])[0] for layer in LAYERS]
        secs = [sum(by[(a, layer)][s]["seconds"] for s in seeds) / len(seeds) for layer in LAYERS]
        out.append(f"| {a} | {' | '.join(cells)} | {' / '.join(f'{x:.0f}' for x in secs)} |")
    return "\n".join(out)


DELINEATION_SCORES = ("completeness", "correctness", "quality")


def delineation_table(rows: list[dict], refs: list[dict], seeds: list[int]) -> str:
    """Sweep rows and BCE reference rows -> ``| loss | completeness | correctness | quality |
    quality after iteration 1 / 2 / 3 | mu L_top / L_bce (init) | cell s |`` (percent, mean ± std)."""
    keyed = [("BCE only (no topology loss)", r["seed"], r) for r in refs] + [
        (f"BCE + {r['details']['mu']:g} L_top, {r['arch']}:{r['layer']}", r["seed"], r)
        for r in rows if r.get("status", "ok") == "ok" and "quality" in r]
    by = by_seed(keyed, seeds, "sweep_tables: the delineation rows")
    pct = lambda vs: spread([100 * v for v in vs], 1)[0]  # noqa: E731
    order = sorted(by, key=lambda k: (not k.startswith("BCE only"), -sum(by[k][s]["quality"] for s in seeds)))
    iters = len(by[order[0]][seeds[0]]["details"]["per_iteration"])
    out = [f"| loss | {' | '.join(DELINEATION_SCORES)} | quality after iteration {' / '.join(map(str, range(1, iters + 1)))} "
           "| mu L_top / L_bce (init) | cell s |", "| --- | " + "---: | " * 5 + "---: |"]
    for k in order:
        per = [by[k][s] for s in seeds]
        scores = [pct([r[name] for r in per]) for name in DELINEATION_SCORES]
        it = " / ".join(f"{100 * sum(r['details']['per_iteration'][i]['quality'] for r in per) / len(per):.1f}"
                        for i in range(iters))
        terms = [((r["details"].get("loss_terms") or {}).get("init") or {}).get("ratio_mu_top_to_bce") for r in per]
        ratio = "-" if k.startswith("BCE only") or None in terms else spread(terms, 2)[0]
        secs = sum(r["seconds"] for r in per) / len(per)
        out.append(f"| {k} | {' | '.join(scores)} | {it} | {ratio} | {secs:.0f} |")
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    a = sub.add_parser("autoencoding", help="`lossnet sweep autoencoding seed=S` for each seed")
    a.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    a.add_argument("--loss-nets", default="alexnet,efficientnet_lite0")
    a.add_argument("--workdir", type=Path, default=None, help="default runs/results/autoencoding-<inputs digest>")
    a.add_argument("overrides", nargs="*", help="extra key=value settings for the sweep")
    d = sub.add_parser("delineation", help="`lossnet sweep delineation seed=S` for each seed (synthetic roads)")
    d.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    d.add_argument("--loss-nets", default="alexnet")
    d.add_argument("--layers", default="E,L")
    d.add_argument("--threads", type=int, default=2)
    d.add_argument("--workdir", type=Path, default=None, help="default runs/results/delineation-<inputs digest>")
    d.add_argument("overrides", nargs="*", help="extra key=value settings for the sweep")
    args = ap.parse_args(argv)
    work = args.workdir or REPO / "runs" / "results" / f"{args.cmd}-{os.environ.get('LOSSNET_TABLE_DIGEST', 'adhoc')}"
    extra = [f"layer={args.layers}", f"threads={args.threads}"] if args.cmd == "delineation" else []
    walls = []
    for s in args.seeds:
        walls.append(_lossnet(["sweep", args.cmd, f"loss_net={args.loss_nets}", *extra, f"seed={s}",
                               f"out={work / f'seed{s}'}", "report=false", "progress=false", *args.overrides]))
    rows = [r for s in args.seeds for r in read_rows(work / f"seed{s}" / "results.jsonl")]
    if args.cmd == "autoencoding":
        table = autoencoding_table(rows, args.seeds)
    else:
        refs = [r for s in args.seeds for r in read_rows(work / f"seed{s}" / "reference" / "results.jsonl")]
        table = delineation_table(rows, refs, args.seeds) + f"\n\nQuick scale (synthetic roads, {args.threads} threads)."
    print(f"\n{table}\n\nWall time of the sweep, seed "
          + ", ".join(f"{s}: {w / 60:.1f} min" for s, w in zip(args.seeds, walls)) + " (0 for a fully resumed run).")
    return 0


if __name__ == "__main__":
    sys.exit(main())
