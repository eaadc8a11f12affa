#!/usr/bin/env python3
"""Fraction of LunarLander frames the off-screen filter removes, per rollout mode (a script).

Replays the rollouts of a collection (``lossnet.data.lunarlander``'s own worker, so the same
seeds, actions and episode handling) *without drawing the frames*: ``gymnasium.make`` is called
without ``render_mode`` and ``render`` returns a 1 x 1 black image. Rendering does not touch the
lander's physics (particles are drawn only in render mode and never collide with the lander), so
positions, and with them the filter, are those of the rendered collection; ``--check N`` verifies
that on the first N rollouts of every run against a rendered :func:`generate_run`. Without
rendering the papers' full 3 x 700 rollouts take well under a minute per mode on one core.

    .venv/bin/python tools/lunarlander_offscreen.py --rollouts 700 700 700 --check 5

Prints one line per mode and run: frames, removed frames, removed fraction (runs 2 and 3 are the
filtered ones; run 1 is kept whole and shown for reference).
"""

from __future__ import annotations

import argparse

import numpy as np


def _render_free(make):
    def make_env(env_id, render_mode=None, **kwargs):
        env = make(env_id, **kwargs)
        env.unwrapped.render = lambda: np.zeros((1, 1, 3), np.uint8)
        return env

    return make_env


def main(argv=None) -> None:
    import gymnasium as gym

    from lossnet.data.lunarlander import PAPER_OFFSCREEN_TOLERANCE, ROLLOUT_MODES, generate_run

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rollouts", type=int, nargs="+", default=[700, 700, 700], help="rollouts per run")
    ap.add_argument("--seed", type=int, default=0, help="collection seed (run r uses seed*3 + r - 1)")
    ap.add_argument("--steps", type=int, default=150)
    ap.add_argument("--tolerance", type=float, default=PAPER_OFFSCREEN_TOLERANCE)
    ap.add_argument("--modes", nargs="+", default=list(ROLLOUT_MODES), choices=ROLLOUT_MODES)
    ap.add_argument("--check", type=int, default=0, help="compare N rollouts per run with rendered ones")
    ap.add_argument("--markdown", action="store_true", help="print one markdown table (the docs' form) at the end")
    args = ap.parse_args(argv)
    make = gym.make
    table = []
    for mode in args.modes:
        total = removed_total = 0
        cells = []
        for r, n in enumerate(args.rollouts, start=1):
            seed = args.seed * 3 + r - 1
            gym.make = _render_free(make)
            try:
                run = generate_run(n, seed, steps=args.steps, progress=False, offscreen_tolerance=args.tolerance,
                                   rollout=mode)
            finally:
                gym.make = make
            if args.check:
                ref = generate_run(min(args.check, n), seed, steps=args.steps, progress=False,
                                   offscreen_tolerance=args.tolerance, rollout=mode)
                k = len(ref["positions"])
                assert np.array_equal(ref["positions"], run["positions"][:k]), "render-free positions differ"
                assert np.array_equal(ref["onscreen"], run["onscreen"][:k])
            removed = int((~run["onscreen"]).sum())
            frames = len(run["onscreen"])
            if r > 1:
                total, removed_total = total + frames, removed_total + removed
            cells.append(f"{100 * removed / frames:.2f} %")
            print(f"{mode:>13}  run {r} (seed {seed}): {frames} frames, {removed} off screen "
                  f"({100 * removed / frames:.2f} %){'' if r > 1 else '  [kept whole]'}")
        if total:
            print(f"{mode:>13}  filtered runs together: {removed_total}/{total} removed "
                  f"({100 * removed_total / total:.2f} %)")
            cells.append(f"**{100 * removed_total / total:.2f} %** ({removed_total:,} / {total:,})".replace(",", " "))
        table.append((mode, cells))
    if args.markdown:
        runs = len(args.rollouts)
        print()
        print("| `rollout` | run 1 (kept whole) | " + " | ".join(f"run {r}" for r in range(2, runs + 1))
              + " | runs " + " + ".join(str(r) for r in range(2, runs + 1)) + " |")
        print("| --- " * (runs + 2) + "|")
        for mode, cells in table:
            name = f"`{mode}`" + (" (`scale=paper`)" if mode == "authors" else "")
            print(f"| {name} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
