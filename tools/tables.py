#!/usr/bin/env python3
"""Multi-seed results tables for the docs (called by ``tools/results.py``; usable alone).

Each subcommand runs a lossnet command once per seed (or with ``repeats=N``) in a work directory,
then prints progress on stderr and, after a blank line, one markdown table on stdout with the
spread over seeds: ``mean ± std`` (uncorrected std, dividing by n, as the thesis' figures and
``lossnet report`` use) and ``min – max``.

    python tools/tables.py demo --seeds 0 1 2        # README: `lossnet demo seed=S`
    python tools/tables.py paper_b --repeats 3       # docs/experiments.md: `lossnet run paper_b repeats=3`

The work directory (default ``runs/results/NAME-<inputs digest>``) is kept: a rerun with the same
inputs resumes from the rows already written (both commands skip finished cells), a changed
input starts afresh in a new directory.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path
from typing import Iterable, Sequence

REPO = Path(__file__).resolve().parents[1]


def spread(values: Sequence[float], digits: int = 2) -> tuple[str, str]:
    """``("mean ± std", "min – max")`` of ``values`` (uncorrected std) with ``digits`` decimals."""
    n = len(values)
    mean = sum(values) / n
    std = math.sqrt(sum((v - mean) ** 2 for v in values) / n)
    return f"{mean:.{digits}f} ± {std:.{digits}f}", f"{min(values):.{digits}f} – {max(values):.{digits}f}"


def by_seed(keyed: Iterable[tuple[object, int, dict]], seeds: Sequence[int], what: str,
            expected: Iterable | None = None) -> dict:
    """``{key: {seed: row}}`` of ``(key, seed, row)`` triples; a ``SystemExit`` ("``what`` lack ...")
    naming every (key, seed) of the ``expected`` keys (default: the keys present) without a row, or
    "every cell" when there are no rows at all."""
    by: dict = defaultdict(dict)
    for key, seed, r in keyed:
        by[key][seed] = r
    keys = list(by) if expected is None else list(expected)
    missing = [(k, s) for k in keys for s in seeds if s not in by.get(k, {})]
    if not by or missing:
        raise SystemExit(f"{what} lack {missing or 'every cell'}")
    return by


def read_rows(path: Path) -> list[dict]:
    """The rows of a ``results.jsonl`` (a torn last line, from an interrupted run, is ignored)."""
    rows = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return rows


def _lossnet(args: Iterable[str]) -> float:
    """Run ``python -m lossnet.cli ARGS`` with this checkout's sources (its output goes to stderr);
    its wall time in seconds (a resumed run's time counts only what it still did)."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO / "src"), os.environ.get("PYTHONPATH", "")])}
    cmd = [sys.executable, "-m", "lossnet.cli", *args]
    print("tables: " + " ".join(cmd[1:]), file=sys.stderr, flush=True)
    t0 = time.perf_counter()
    done = subprocess.run(cmd, cwd=REPO, env=env, stdout=sys.stderr, stderr=sys.stderr)
    if done.returncode:
        raise SystemExit(f"tables: `{' '.join(cmd[1:])}` failed (exit {done.returncode})")
    wall = time.perf_counter() - t0
    print(f"tables: {wall:.0f} s", file=sys.stderr, flush=True)
    return wall


def demo_table(rows: list[dict], seeds: Sequence[int]) -> str:
    """One line per procedure: test error (px) over ``seeds``, encoder seconds per epoch."""
    by = by_seed(((r["procedure"], r["seed"], r) for r in rows), seeds, "tables: the demo rows")
    out = [f"| procedure | test error (px), mean ± std over {len(seeds)} seeds | min – max | encoder s / epoch |",
           "| --- | ---: | ---: | ---: |"]
    for proc, per_seed in by.items():
        err = [per_seed[s]["test_error_px"] for s in seeds]
        epoch_s = sum(per_seed[s]["epoch_seconds"] for s in seeds) / len(seeds)
        out.append(f"| {proc} | {' | '.join(spread(err))} | {epoch_s:.1f} |")
    return "\n".join(out)


def paper_b_table(rows: list[dict]) -> str:
    """One line per procedure (and the Simple CNN): test score over repeats."""
    by = defaultdict(list)
    metric = None
    for r in rows:
        if r.get("status", "ok") != "ok" or "test_score" not in r:
            continue
        by[r["procedure"]].append(r["test_score"])
        metric = r.get("metric", metric)
    if not by:
        raise SystemExit("tables: paper B wrote no rows")
    n = {len(v) for v in by.values()}
    unit = "position error (px)" if metric in (None, "position_error") else metric
    out = [f"| procedure | test {unit}, mean ± std over {max(n)} repeats | min – max |", "| --- | ---: | ---: |"]
    for proc, scores in by.items():
        out.append(f"| {proc} | {' | '.join(spread(scores))} |")
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    d = sub.add_parser("demo", help="`lossnet demo seed=S` for each seed")
    d.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p = sub.add_parser("paper_b", help="`lossnet run paper_b repeats=N` (quick scale)")
    p.add_argument("--repeats", type=int, default=3)
    for s in (d, p):
        s.add_argument("--workdir", type=Path, default=None, help="default runs/results/NAME-<inputs digest>")
        s.add_argument("overrides", nargs="*", help="extra key=value settings for the command")
    args = ap.parse_args(argv)
    work = args.workdir or REPO / "runs" / "results" / f"{args.cmd}-{os.environ.get('LOSSNET_TABLE_DIGEST', 'adhoc')}"
    work.mkdir(parents=True, exist_ok=True)
    if args.cmd == "demo":
        walls = [_lossnet(["demo", f"seed={s}", f"out={work / f'seed{s}'}", "progress=false", *args.overrides])
                 for s in args.seeds]
        rows = [r for s in args.seeds for r in read_rows(work / f"seed{s}" / "results.jsonl")]
        table = demo_table(rows, args.seeds)
        note = "Wall time of `lossnet demo`, seed " + ", ".join(f"{s}: {w / 60:.1f} min" for s, w in zip(args.seeds, walls))
    else:
        wall = _lossnet(["run", "paper_b", f"repeats={args.repeats}", f"out={work}", "progress=false", *args.overrides])
        table = paper_b_table(read_rows(work / "results.jsonl"))
        note = f"Wall time of `lossnet run paper_b repeats={args.repeats}`: {wall / 60:.1f} min"
    print(f"\n{table}\n\n{note} (0 for a fully resumed run).")
    return 0


if __name__ == "__main__":
    sys.exit(main())
