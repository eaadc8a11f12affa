"""LunarLander collection: frames of gymnasium's ``LunarLander-v3`` under a random policy,
labelled with the lander's position in pixels (the object-positioning task of Paper A and
the thesis, where a downstream model predicts the lander position from an image embedding).

The papers used ``LunarLander-v2`` of OpenAI Gym: three runs of 700 rollouts x 150 timesteps,
frames scaled to 64 x 64; run 1 trains the encoder (all frames kept), runs 2 and 3 train and
test the position probe, with frames where the lander is off screen removed ("roughly 10 %").
``generate_collection(out, n_rollouts=(700, 700, 700), rollout="authors")`` reproduces it (10.45 %
removed; docs/experiments.md); the default here (20 10 10, ``reset_on_done``) is quick and small.

Rollouts (``rollout``, :data:`ROLLOUT_MODES`)
    A rollout records exactly ``steps`` frames. Frame 0 is the state after ``env.reset``; every
    later frame is the state after one ``env.step`` with an action drawn uniformly from the 4
    discrete actions. An episode ends when it is terminated (crash, landing at rest or leaving
    the screen sideways) or truncated. ``"authors"`` (the authors' ``gym_datagenerator.py``):
    the environment is reset once per rollout and a finished episode keeps being stepped for
    the rest of the rollout (a crashed lander is pushed around by the engines, one that left the
    screen keeps flying off it). ``"reset_on_done"``: a finished episode's final frame is kept
    and the next frame is the reset state of a fresh episode with the next derived seed, so a
    rollout may span several episodes. Seeds: for base ``seed`` and rollout ``i``, actions come
    from ``default_rng(SeedSequence(seed, spawn_key=(i, 0)))`` and episode ``k`` of the rollout
    is reset with ``SeedSequence(seed, spawn_key=(i, 1, k)).generate_state(1)[0]``; results
    depend only on ``(seed, i, steps, size, rollout)``, never on ``workers``.

Frames
    ``env.render()`` gives a 400 x 600 x 3 uint8 frame (H x W), resized to ``size x size``
    with PIL ``BILINEAR`` (antialiased when shrinking, i.e. area-like); aspect is not kept,
    as in the papers (x is squeezed by size/600, y by size/400).

Position convention (checked against gymnasium 1.x ``lunar_lander.py``)
    ``render`` draws each Box2D fixture at world point ``p`` (metres) at surface pixel
    ``p * SCALE`` (SCALE = 30 px/m) on a VIEWPORT_W x VIEWPORT_H = 600 x 400 surface whose
    y axis points up, then ``pygame.transform.flip(surf, False, True)`` flips it vertically
    so row 0 is the top. With continuous pixel coordinates (pixel ``(col, row)`` covers
    ``[col, col+1) x [row, row+1)``, its centre is ``(col + 0.5, row + 0.5)``), the lander
    body origin ``pos = env.unwrapped.lander.position`` lands at::

        x = pos.x * SCALE * size / VIEWPORT_W
        y = (VIEWPORT_H - pos.y * SCALE) * size / VIEWPORT_H

    in the ``size x size`` image; the stored ``positions`` are ``(x, y)`` (column, row) in
    these units, float32. PIL's resize maps these continuous coordinates linearly, so the
    formula is exact after resizing. ``pos`` is the body *origin* (the (0, 0) of
    ``LANDER_POLY``), not the hull centroid, which is ~3 px (full resolution) above it; with
    the purple legs included, the drawn lander's centroid is ~1 px (at most ~3 px) from
    ``pos`` at full resolution, at most ~0.5 px at 64 x 64.

Off-screen frames
    ``onscreen`` is "the lander body origin lies within the image, with a tolerance of
    ``offscreen_tolerance`` render pixels (of the 600 x 400 frame) on every edge":
    ``-t_x <= x <= size + t_x and -t_y <= y <= size + t_y`` with ``t_x = tol * size / 600``,
    ``t_y = tol * size / 400``. The papers remove "images where the lander is outside the
    screen" (~10 %); the authors' code (guspih/Perceptual-Autoencoders,
    ``dataset_loader.load_lunarlander_data``) keeps frames with observation ``-1 <= x <= 1`` and
    ``-0.5 <= y <= 1.5``, i.e. the screen width exactly and up to 0.6 m (18 render px) above the
    top edge (the lander spawns at the top edge and often rises just above it while part of its
    hull still shows). :data:`PAPER_OFFSCREEN_TOLERANCE` = 18 reproduces that box on every frame
    except terminal frames of a lander leaving sideways; the removed fractions measured for both
    rollout modes are in docs/experiments.md. The removed fraction of every run is written to
    ``meta.json`` (``offscreen_fraction``, ``offscreen_removed``). The authors' pickle pairs the
    image before step ``t`` with the observation after it (a one-step offset in their labels and
    filter); here every frame carries the position of the state it shows.
"""

from __future__ import annotations

import json
import numbers
import os
import shutil
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np

from lossnet.types import PathLike
from lossnet.errors import InputError

if TYPE_CHECKING:  # torch is imported lazily: spawn workers and ``--help`` stay light
    import torch

__all__ = ["ENV_ID", "LunarLanderRun", "generate_collection", "generate_run", "load_run", "onscreen_mask",
           "pixel_position"]

ENV_ID = "LunarLander-v3"
FORMAT_VERSION = 1
DEFAULT_ROLLOUTS = (20, 10, 10)
PAPER_ROLLOUTS = (700, 700, 700)
PAPER_A_ROLLOUTS = (700, 700)
#: Rollout semantics (module docstring): the papers' data (``authors``) or fresh episodes.
ROLLOUT_MODES = ("authors", "reset_on_done")
DEFAULT_ROLLOUT = "reset_on_done"
#: Tolerance (render pixels of the 600 x 400 frame, = 0.6 m) of the on-screen test that matches
#: the authors' observation box (module docstring).
PAPER_OFFSCREEN_TOLERANCE = 18.0
#: Body colour (``color1``) of the lander hull and legs in gymnasium's renderer.
LANDER_RGB = (128, 102, 230)
POSITION_CONVENTION = (
    "positions[:, 0] = x = pos.x*SCALE*size/VIEWPORT_W (column), "
    "positions[:, 1] = y = (VIEWPORT_H - pos.y*SCALE)*size/VIEWPORT_H (row, down); "
    "pos = env.unwrapped.lander.position (Box2D body origin, metres), SCALE=30, "
    "VIEWPORT_W=600, VIEWPORT_H=400; continuous pixel coordinates, pixel (c, r) centre at "
    "(c+0.5, r+0.5); onscreen = -t_x <= x <= size + t_x and -t_y <= y <= size + t_y with "
    "t_x = offscreen_tolerance*size/VIEWPORT_W, t_y = offscreen_tolerance*size/VIEWPORT_H"
)
_KEYS = ("images", "positions", "obs", "rollout", "onscreen")


# --------------------------------------------------------------------------- validation


def _check_int(name: str, value: Any, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
        raise ValueError(f"{name} must be an int >= {minimum}, got {value!r}")
    return int(value)


def _check_rollouts(n_rollouts: Any) -> tuple[int, ...]:
    is_seq = isinstance(n_rollouts, Sequence) and not isinstance(n_rollouts, (str, bytes))
    if not is_seq or len(n_rollouts) not in (2, 3):
        raise ValueError(
            f"n_rollouts must be two or three ints >= 1 (runs 1, 2[, 3]), got {n_rollouts!r}"
        )
    return tuple(_check_int(f"n_rollouts[{i}]", n, 1) for i, n in enumerate(n_rollouts))


def _check_tolerance(tol: Any) -> float:
    if isinstance(tol, bool) or not isinstance(tol, numbers.Real) or not (0 <= tol < float("inf")):
        raise ValueError(
            f"offscreen_tolerance must be a finite number >= 0 (render pixels of the 600 x 400 "
            f"frame; {PAPER_OFFSCREEN_TOLERANCE:g} matches the papers), got {tol!r}"
        )
    return float(tol)


def _check_rollout_mode(mode: Any) -> str:
    if mode not in ROLLOUT_MODES:
        raise ValueError(f"rollout must be one of {', '.join(ROLLOUT_MODES)} (authors: the papers' data), "
                         f"got {mode!r}")
    return str(mode)


# --------------------------------------------------------------------------- generation


def pixel_position(pos_x: float, pos_y: float, width: int, height: int) -> tuple[float, float]:
    """Box2D world point (metres) -> continuous ``(x, y)`` pixel coordinates in a
    ``width x height`` resize of the 600 x 400 render (y down; see the module docstring)."""
    from gymnasium.envs.box2d.lunar_lander import SCALE, VIEWPORT_H, VIEWPORT_W

    return (
        pos_x * SCALE * width / VIEWPORT_W,
        (VIEWPORT_H - pos_y * SCALE) * height / VIEWPORT_H,
    )


def onscreen_mask(positions: np.ndarray, size: int, tolerance: float) -> np.ndarray:
    """Bool (N,): the lander origin ``positions`` (N, 2) pixels of a ``size x size`` frame lies
    within the image extended by ``tolerance`` render pixels on every edge (module docstring)."""
    from gymnasium.envs.box2d.lunar_lander import VIEWPORT_H, VIEWPORT_W

    tol = np.array([tolerance * size / VIEWPORT_W, tolerance * size / VIEWPORT_H], np.float64)
    p = np.asarray(positions, np.float64)
    if tolerance == 0:  # the original criterion: origin in [0, size)
        return np.all((p >= 0) & (p < size), axis=1)
    return np.all((p >= -tol) & (p <= size + tol), axis=1)


def _episode_seed(seed: int, rollout: int, episode: int) -> int:
    return int(np.random.SeedSequence(seed, spawn_key=(rollout, 1, episode)).generate_state(1)[0])


def _rollout_worker(task: tuple) -> dict[str, np.ndarray]:
    """One rollout (top level so ``spawn`` pools can pickle it). ``task`` is
    ``(seed, rollout_index, steps, size, offscreen_tolerance, rollout)``; returns per-frame arrays
    (see ``generate_run``)."""
    import gymnasium as gym
    from PIL import Image

    seed, index, steps, size, tolerance, mode = task
    keep_stepping = mode == "authors"  # else reset_on_done
    rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(index, 0)))
    images = np.empty((steps, size, size, 3), np.uint8)
    positions = np.empty((steps, 2), np.float32)
    obs_out = np.empty((steps, 8), np.float32)
    env = gym.make(ENV_ID, render_mode="rgb_array")
    try:
        episode = 0
        obs, _ = env.reset(seed=_episode_seed(seed, index, episode))
        done = False
        for t in range(steps):
            if t > 0:
                if done and not keep_stepping:
                    episode += 1
                    obs, _ = env.reset(seed=_episode_seed(seed, index, episode))
                    done = False
                else:
                    obs, _, terminated, truncated, _ = env.step(int(rng.integers(4)))
                    done = done or bool(terminated or truncated)
            frame = env.render()
            images[t] = np.asarray(
                Image.fromarray(frame).resize((size, size), Image.Resampling.BILINEAR)
            )
            pos = env.unwrapped.lander.position
            positions[t] = pixel_position(float(pos[0]), float(pos[1]), size, size)
            obs_out[t] = obs
    finally:
        env.close()
    onscreen = onscreen_mask(positions, size, tolerance)
    return {
        "images": images,
        "positions": positions,
        "obs": obs_out,
        "rollout": np.full(steps, index, np.int32),
        "onscreen": onscreen,
    }


def _spawn_pool(workers: int):
    import multiprocessing as mp

    return mp.get_context("spawn").Pool(workers)


def _generate_run(
    n_rollouts: int, seed: int, steps: int, size: int, pool, progress: bool, desc: str,
    tolerance: float = PAPER_OFFSCREEN_TOLERANCE, rollout: str = DEFAULT_ROLLOUT,
) -> dict[str, Any]:
    from tqdm.auto import tqdm

    tasks = [(seed, i, steps, size, tolerance, rollout) for i in range(n_rollouts)]
    start = time.perf_counter()
    results = pool.imap(_rollout_worker, tasks) if pool is not None else map(_rollout_worker, tasks)
    run: dict[str, Any] = {}
    bar = tqdm(results, total=n_rollouts, desc=desc, unit="rollout", disable=not progress)
    for i, part in enumerate(bar):  # imap keeps rollout order; fill preallocated arrays
        if not run:
            n = n_rollouts * steps
            run = {k: np.empty((n, *v.shape[1:]), v.dtype) for k, v in part.items()}
        for k in _KEYS:
            run[k][i * steps : (i + 1) * steps] = part[k]
    seconds = time.perf_counter() - start
    run["seconds"] = seconds
    run["frames_per_s"] = len(run["images"]) / seconds if seconds > 0 else float("inf")
    return run


def generate_run(
    n_rollouts: int,
    seed: int,
    steps: int = 150,
    size: int = 64,
    workers: int = 1,
    progress: bool = True,
    offscreen_tolerance: float = PAPER_OFFSCREEN_TOLERANCE,
    rollout: str = DEFAULT_ROLLOUT,
) -> dict[str, Any]:
    """Render ``n_rollouts`` random-policy rollouts of ``steps`` frames each (``rollout``: one of
    :data:`ROLLOUT_MODES`, module docstring).

    Returns a dict over ``N = n_rollouts * steps`` frames, in rollout then time order:
    ``images`` uint8 (N, size, size, 3) RGB; ``positions`` float32 (N, 2) lander ``(x, y)``
    in pixels of the ``size x size`` image (module docstring); ``obs`` float32 (N, 8) the raw
    gymnasium observation; ``rollout`` int32 (N,); ``onscreen`` bool (N,) (:func:`onscreen_mask`
    with ``offscreen_tolerance`` render pixels); plus ``seconds``
    (float, wall time) and ``frames_per_s`` (float). Deterministic in ``seed`` (an int >= 0)
    and independent of ``workers`` (> 1 uses a ``spawn`` multiprocessing pool).
    """
    n_rollouts = _check_int("n_rollouts", n_rollouts, 1)
    seed = _check_int("seed", seed, 0)
    steps = _check_int("steps", steps, 1)
    size = _check_int("size", size, 16)
    workers = min(_check_int("workers", workers, 1), n_rollouts)
    tol, mode = _check_tolerance(offscreen_tolerance), _check_rollout_mode(rollout)
    if workers == 1:
        return _generate_run(n_rollouts, seed, steps, size, None, progress, "LunarLander", tol, mode)
    with _spawn_pool(workers) as pool:
        return _generate_run(n_rollouts, seed, steps, size, pool, progress, "LunarLander", tol, mode)


# --------------------------------------------------------------------------- collection


def _settings(
    seed: int, n_rollouts: Sequence[int], steps: int, size: int, tolerance: float, rollout: str
) -> dict[str, Any]:
    return {
        "rollout": rollout,
        "format_version": FORMAT_VERSION,
        "env_id": ENV_ID,
        "seed": seed,
        "n_rollouts": list(n_rollouts),
        "steps": steps,
        "size": size,
        "offscreen_tolerance": tolerance,
    }


def _check_existing(out: Path, settings: dict[str, Any]) -> bool:
    """True if ``out`` is a complete collection with ``settings``; False if it is absent
    (or an empty directory); ValueError otherwise."""
    if not out.exists():
        return False
    if out.is_dir() and not any(out.iterdir()):
        return False
    meta_path = out / "meta.json"
    if not meta_path.is_file():
        raise InputError(
            f"{out} exists but is not a LunarLander collection (no meta.json); "
            "choose another --out directory or delete it"
        )
    from ..utils import read_json

    meta = read_json(meta_path, "delete the folder or choose another --out directory to regenerate the collection")
    meta.setdefault("offscreen_tolerance", 0.0)  # collections written before the tolerance
    meta.setdefault("rollout", "reset_on_done")  # ... and before the rollout modes
    diff = {k: (meta.get(k), v) for k, v in settings.items() if meta.get(k) != v}
    if diff:
        details = ", ".join(
            f"{k}: existing {old!r} != requested {new!r}" for k, (old, new) in diff.items()
        )
        raise InputError(
            f"{out} already holds a LunarLander collection with different settings ({details}); "
            "choose another output directory or delete it"
        )
    runs = range(1, len(settings["n_rollouts"]) + 1)
    missing = [f"run{r}.npz" for r in runs if not (out / f"run{r}.npz").is_file()]
    if missing:
        raise InputError(f"{out} is an incomplete collection (missing {missing}); delete it")
    return True


def generate_collection(
    out_dir: PathLike,
    n_rollouts: Sequence[int] = DEFAULT_ROLLOUTS,
    seed: int = 0,
    steps: int = 150,
    size: int = 64,
    workers: int | None = None,
    progress: bool = True,
    offscreen_tolerance: float = PAPER_OFFSCREEN_TOLERANCE,
    rollout: str = DEFAULT_ROLLOUT,
) -> Path:
    """Generate the collection (two or three runs) into ``out_dir`` and return it as a ``Path``.

    Run ``r`` (1, 2[, 3]) has ``n_rollouts[r-1]`` rollouts with base seed ``seed*3 + r - 1``
    (disjoint across runs and collection seeds). Run 1 (encoder training) keeps all
    ``n_rollouts[0]*steps`` frames; the later runs (probe training / testing) keep only
    on-screen frames (:func:`onscreen_mask` with ``offscreen_tolerance`` render pixels).
    ``rollout`` (:data:`ROLLOUT_MODES`): ``"authors"`` keeps stepping finished episodes as the
    papers' data did; ``"reset_on_done"`` starts a fresh episode (module docstring).
    Three runs are paper B's layout (700, 700, 700); two are paper A's (700, 700: run 2 is split
    80/20 into probe training and test by :func:`lossnet.data.parts.load_data`). Writes
    ``run{1,2[,3]}.npz`` (``images`` uint8 N x size x size x 3, ``positions`` float32 N x 2
    pixels, ``obs`` float32 N x 8, ``rollout`` int32 N, ``onscreen`` bool N; compressed) and
    ``meta.json`` (with ``offscreen_fraction``: the fraction of each run's generated frames
    that are off screen, and ``offscreen_removed``: whether they were removed).

    Written into a temporary sibling directory and renamed into place, so an interrupted
    call leaves no partial ``out_dir`` (a hard kill may leave a ``.NAME.tmp-*`` sibling to
    delete). If ``out_dir`` already holds a collection with the same settings it is returned
    as is; different settings raise ``ValueError``. ``workers=None`` uses all CPU cores.
    Under ``torchrun`` rank 0 generates and the other ranks wait, then read it.
    """
    n_rollouts = _check_rollouts(n_rollouts)
    seed = _check_int("seed", seed, 0)
    steps = _check_int("steps", steps, 1)
    size = _check_int("size", size, 16)
    if workers is None:
        workers = os.cpu_count() or 1
    workers = _check_int("workers", workers, 1)
    workers = min(workers, max(n_rollouts))
    tol, mode = _check_tolerance(offscreen_tolerance), _check_rollout_mode(rollout)
    out = Path(out_dir)
    settings = _settings(seed, n_rollouts, steps, size, tol, mode)
    from lossnet import distributed  # imports torch: not at module level (light spawn workers)

    with distributed.main_first():  # under torchrun rank 0 generates, the others then find it complete
        if _check_existing(out, settings):
            return out
        return _generate(out, n_rollouts, seed, steps, size, workers, progress, tol, settings)


def _generate(out: Path, n_rollouts, seed: int, steps: int, size: int, workers: int, progress: bool, tol: float,
              settings: dict) -> Path:
    """The body of :func:`generate_collection` (arguments checked, ``out`` not yet complete)."""
    import gymnasium

    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.parent / f".{out.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    tmp.mkdir()  # unlike mkdtemp, honours the umask
    try:
        start = time.perf_counter()
        pool = _spawn_pool(workers) if workers > 1 else None
        try:
            frames, kept, run_seconds, off = {}, {}, {}, {}
            n_runs = len(n_rollouts)
            for r, n in enumerate(n_rollouts, start=1):
                run = _generate_run(n, seed * 3 + r - 1, steps, size, pool, progress, f"run {r}/{n_runs}", tol,
                                    settings["rollout"])
                frames[f"run{r}"] = len(run["images"])
                off[f"run{r}"] = round(1.0 - float(run["onscreen"].mean()), 6)
                run_seconds[f"run{r}"] = round(run["seconds"], 3)
                keep = slice(None) if r == 1 else run["onscreen"]
                arrays = {k: run[k][keep] for k in _KEYS}
                kept[f"run{r}"] = len(arrays["images"])
                np.savez_compressed(tmp / f"run{r}.npz", **arrays)
                del run, arrays
        finally:
            if pool is not None:
                pool.terminate()
                pool.join()
        seconds = time.perf_counter() - start
        meta = {
            **settings,
            "run_seeds": [seed * 3 + r for r in range(len(n_rollouts))],
            "gymnasium_version": gymnasium.__version__,
            "numpy_version": np.__version__,
            "policy": "uniform random over the 4 discrete actions",
            "episodes": "each rollout records exactly `steps` frames; " + (
                "one reset per rollout, finished episodes keep being stepped (the authors' data)"
                if settings["rollout"] == "authors" else "terminated/truncated episodes keep "
                "their last frame and continue from a reset with the next seed"),
            "resize": "PIL BILINEAR (antialiased), aspect not kept",
            "position_convention": POSITION_CONVENTION,
            "offscreen_criterion": "lander body origin within the image extended by "
            "offscreen_tolerance render pixels (600 x 400 frame) on every edge",
            "offscreen_fraction": off,
            "offscreen_removed": {f"run{r}": r > 1 for r in range(1, len(n_rollouts) + 1)},
            "frames_generated": frames,
            "frames": kept,
            "workers": workers,
            "seconds": round(seconds, 3),
            "run_seconds": run_seconds,
            "frames_per_s": round(sum(frames.values()) / seconds, 1),
            "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        }
        (tmp / "meta.json").write_text(json.dumps(meta, indent=2) + "\n")
        try:
            os.rename(tmp, out)  # atomic; replaces only an absent or empty out_dir
        except OSError:
            if _check_existing(out, settings):  # a concurrent call finished first
                shutil.rmtree(tmp, ignore_errors=True)
                return out
            raise
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out


# --------------------------------------------------------------------------- loading


@dataclass
class LunarLanderRun:
    """One run of a collection as tensors (N frames).

    ``images`` torch.uint8 (N, 3, H, W) RGB channels-first; ``positions`` torch.float32
    (N, 2) lander ``(x, y)`` in pixels of the H x W image (x = column, y = row, down);
    ``obs`` torch.float32 (N, 8) raw gymnasium observation; ``rollout`` torch.int32 (N,);
    ``onscreen`` torch.bool (N,).
    """

    images: "torch.Tensor"
    positions: "torch.Tensor"
    obs: "torch.Tensor"
    rollout: "torch.Tensor"
    onscreen: "torch.Tensor"

    def __len__(self) -> int:
        return int(self.images.shape[0])


def load_run(collection_dir: PathLike, run: int) -> LunarLanderRun:
    """Load ``run{run}.npz`` (run in 1, 2, 3) of a collection made by ``generate_collection``."""
    import torch

    if isinstance(run, bool) or run not in (1, 2, 3):
        raise ValueError(f"run must be 1, 2 or 3, got {run!r}")
    path = Path(collection_dir) / f"run{run}.npz"
    if not path.is_file():
        raise FileNotFoundError(
            f"LunarLander collection run {run} not found at {path}; generate it with "
            f"`lossnet data lunarlander --out {collection_dir}`"
        )
    with np.load(path) as data:
        arrays = {k: data[k] for k in _KEYS}
    return LunarLanderRun(
        images=torch.from_numpy(arrays["images"]).permute(0, 3, 1, 2).contiguous(),
        positions=torch.from_numpy(arrays["positions"]),
        obs=torch.from_numpy(arrays["obs"]),
        rollout=torch.from_numpy(arrays["rollout"]),
        onscreen=torch.from_numpy(arrays["onscreen"]),
    )
