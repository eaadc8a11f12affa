"""LunarLander collection generator: determinism, position convention, collection layout,
atomic/idempotent writes, loading and the CLI. Small rollouts only (a few seconds on 2 cores)."""

import argparse
import json

import numpy as np
import pytest
import torch

from lossnet.data import lunarlander as ll
from lossnet.data.lunarlander import generate_collection, generate_run, load_run

STEPS = 60


@pytest.fixture(scope="module")
def run64():
    return generate_run(3, seed=0, steps=STEPS, size=64, progress=False)


@pytest.fixture(scope="module")
def collection(tmp_path_factory):
    out = tmp_path_factory.mktemp("ll") / "coll"
    return generate_collection(
        out, n_rollouts=(2, 2, 2), seed=0, steps=STEPS, workers=1, progress=False
    )


def _lander_centroid(img):
    """(x, y) centroid, in continuous pixel coordinates, of the lander's purple paint.

    Weight = max(0, B - max(R, G)): the lander colour (128, 102, 230) gives 102, and a pixel
    mixing it with the grey-level background (black sky / white ground) gives 102 * coverage,
    so this is the area centroid of the drawn lander. Particles (R >= G = B), flags
    (yellow) and background all weigh 0.
    """
    img = np.asarray(img, dtype=np.int32)
    w = np.clip(img[..., 2] - np.maximum(img[..., 0], img[..., 1]), 0, None).astype(np.float64)
    rows, cols = np.indices(w.shape)
    return np.array([(w * (cols + 0.5)).sum(), (w * (rows + 0.5)).sum()]) / w.sum()


def _well_inside(positions, size, margin):
    p = positions
    return np.flatnonzero(np.all((p > margin) & (p < size - margin), axis=1))


def _check_positions(run, size, tol):
    idx = _well_inside(run["positions"], size, margin=size * 45 / 400)  # lander fully visible
    assert len(idx) >= 10
    idx = idx[np.linspace(0, len(idx) - 1, 12).astype(int)]
    errors = [np.linalg.norm(_lander_centroid(run["images"][i]) - run["positions"][i]) for i in idx]
    assert max(errors) < tol, errors


def test_shapes_dtypes(run64):
    n = 3 * STEPS
    assert run64["images"].shape == (n, 64, 64, 3) and run64["images"].dtype == np.uint8
    assert run64["positions"].shape == (n, 2) and run64["positions"].dtype == np.float32
    assert run64["obs"].shape == (n, 8) and run64["obs"].dtype == np.float32
    assert run64["rollout"].dtype == np.int32
    np.testing.assert_array_equal(run64["rollout"], np.repeat(np.arange(3), STEPS))
    p = run64["positions"]
    t = ll.PAPER_OFFSCREEN_TOLERANCE * 64 / np.array([600, 400])
    np.testing.assert_array_equal(run64["onscreen"], np.all((p >= -t) & (p <= 64 + t), axis=1))
    assert run64["frames_per_s"] > 0


def test_determinism(run64):
    # Same seed: identical. Rollouts depend only on (seed, index), so 2 rollouts reproduce
    # the first two of the 3-rollout run.
    again = generate_run(2, seed=0, steps=STEPS, size=64, progress=False)
    for k in ("images", "positions", "obs", "rollout", "onscreen"):
        np.testing.assert_array_equal(again[k], run64[k][: 2 * STEPS])
    other = generate_run(1, seed=1, steps=STEPS, size=64, progress=False)
    assert not np.array_equal(other["images"], run64["images"][:STEPS])
    assert not np.array_equal(other["obs"], run64["obs"][:STEPS])


def test_workers_do_not_change_results(run64):
    par = generate_run(3, seed=0, steps=STEPS, size=64, workers=2, progress=False)
    for k in ("images", "positions", "obs", "rollout", "onscreen"):
        np.testing.assert_array_equal(par[k], run64[k])


def test_parallel_collection_equals_serial(collection, tmp_path):
    """generate_collection over a 2-process pool writes the serial collection's arrays exactly."""
    par = generate_collection(tmp_path / "par", n_rollouts=(2, 2, 2), seed=0, steps=STEPS, workers=2,
                              progress=False)
    assert json.loads((par / "meta.json").read_text())["workers"] == 2
    for r in (1, 2, 3):
        with np.load(collection / f"run{r}.npz") as a, np.load(par / f"run{r}.npz") as b:
            assert sorted(a.files) == sorted(b.files)
            for k in a.files:
                np.testing.assert_array_equal(a[k], b[k], err_msg=f"run{r} {k}")


def test_positions_match_lander_pixels_64(run64):
    _check_positions(run64, 64, tol=1.0)


def test_positions_match_lander_pixels_128():
    run = generate_run(2, seed=5, steps=STEPS, size=128, progress=False)
    _check_positions(run, 128, tol=1.5)


def test_position_convention_full_resolution():
    """The conversion on the unresized 600 x 400 render (checks SCALE and the y flip)."""
    import gymnasium as gym

    env = gym.make(ll.ENV_ID, render_mode="rgb_array")
    env.reset(seed=3)
    rng = np.random.default_rng(0)
    errors = []
    for i in range(120):
        _, _, terminated, truncated, _ = env.step(int(rng.integers(4)))
        if terminated or truncated:
            env.reset(seed=100 + i)
        pos = env.unwrapped.lander.position
        xy = np.array(ll.pixel_position(pos[0], pos[1], 600, 400))
        if 45 < xy[0] < 555 and 45 < xy[1] < 355:
            errors.append(np.linalg.norm(_lander_centroid(env.render()) - xy))
    env.close()
    assert len(errors) >= 10
    assert max(errors) < 4.0, errors  # body origin vs painted area centroid: ~1-3 px


def test_positions_agree_with_observation(run64):
    # obs[0] = (pos.x - W/2) / (W/2), obs[1] = (pos.y - (H/4 + LEG_DOWN/SCALE)) / (H/2),
    # with W = 600/30 and H = 400/30 metres.
    W, H = 600 / 30, 400 / 30
    pos_x = run64["obs"][:, 0].astype(np.float64) * W / 2 + W / 2
    pos_y = run64["obs"][:, 1].astype(np.float64) * H / 2 + H / 4 + 18 / 30
    expected = np.stack([pos_x * 30 * 64 / 600, (400 - pos_y * 30) * 64 / 400], axis=1)
    np.testing.assert_allclose(run64["positions"], expected, atol=1e-3)


def test_collection_layout(collection, run64):
    meta = json.loads((collection / "meta.json").read_text())
    assert meta["n_rollouts"] == [2, 2, 2] and meta["steps"] == STEPS and meta["size"] == 64
    assert meta["frames_generated"] == {"run1": 2 * STEPS, "run2": 2 * STEPS, "run3": 2 * STEPS}
    assert "gymnasium_version" in meta and "position_convention" in meta and meta["seconds"] > 0
    r1 = load_run(collection, 1)
    assert len(r1) == 2 * STEPS == meta["frames"]["run1"]
    assert r1.images.dtype == torch.uint8 and r1.images.shape == (2 * STEPS, 3, 64, 64)
    assert r1.positions.dtype == torch.float32 and r1.positions.shape == (2 * STEPS, 2)
    assert r1.obs.dtype == torch.float32 and r1.obs.shape == (2 * STEPS, 8)
    # run 1 has base seed seed*3 + 0 = 0: the first two rollouts of run64, channels-first
    hwc = r1.images.permute(0, 2, 3, 1).numpy()
    np.testing.assert_array_equal(hwc, run64["images"][: 2 * STEPS])
    np.testing.assert_array_equal(r1.positions.numpy(), run64["positions"][: 2 * STEPS])
    assert meta["offscreen_tolerance"] == ll.PAPER_OFFSCREEN_TOLERANCE
    assert meta["offscreen_removed"] == {"run1": False, "run2": True, "run3": True}
    assert meta["offscreen_fraction"]["run1"] == pytest.approx(1 - float(r1.onscreen.float().mean()), abs=1e-6)
    t = ll.PAPER_OFFSCREEN_TOLERANCE * 64 / torch.tensor([600.0, 400.0])
    for r in (2, 3):
        run = load_run(collection, r)
        assert len(run) == meta["frames"][f"run{r}"] <= 2 * STEPS
        removed = 1 - meta["frames"][f"run{r}"] / meta["frames_generated"][f"run{r}"]
        assert meta["offscreen_fraction"][f"run{r}"] == pytest.approx(removed, abs=1e-6)
        assert bool(run.onscreen.all())
        assert bool(((run.positions >= -t) & (run.positions <= 64 + t)).all())
    # disjoint seeds: runs differ from run 1
    r2 = load_run(collection, 2)
    assert not torch.equal(r2.obs[:5], r1.obs[:5])
    assert [p.name for p in collection.parent.iterdir()] == ["coll"]


@pytest.fixture(scope="module")
def long_rollouts():
    # 6 rollouts x 150 frames, the papers' rollout length (~4 s on 2 cores)
    return generate_run(6, seed=1, steps=150, size=64, progress=False)


def test_offscreen_fraction_matches_papers(long_rollouts):
    """The papers remove "roughly 10 %" of the frames (lander outside the screen). Measured
    (``rollout="reset_on_done"``) on 20 rollouts x 150 frames: 10.5 % (seed 1) and 6.3 % (seed 2) with the default tolerance,
    24.7 % / 20.0 % with the old strict criterion. On these 6 rollouts the episodes' first
    frames (spawn at the top edge) dominate the variance, so the band asserted is 4-16 %: the old
    criterion (>= 20 % on every sample measured) fails it."""
    run = long_rollouts
    removed = 1 - float(run["onscreen"].mean())
    assert 0.04 <= removed <= 0.16, removed
    strict = 1 - float(ll.onscreen_mask(run["positions"], 64, 0.0).mean())
    assert strict > removed + 0.05, (strict, removed)


def test_offscreen_criterion_is_the_authors_observation_box(long_rollouts):
    """guspih/Perceptual-Autoencoders keeps frames with observation -1 <= x <= 1 and
    -0.5 <= y <= 1.5; the default tolerance agrees with it except on terminal frames of a lander
    leaving sideways (|x| > 1 ends the episode)."""
    o = long_rollouts["obs"]
    box = (o[:, 0] >= -1) & (o[:, 0] <= 1) & (o[:, 1] >= -0.5) & (o[:, 1] <= 1.5)
    differ = np.flatnonzero(box != long_rollouts["onscreen"])
    assert len(differ) <= 3, differ
    assert np.all(np.abs(o[differ, 0]) > 1)


def test_offscreen_tolerance_setting(tmp_path):
    out = generate_collection(tmp_path / "c", (1, 1), steps=5, workers=1, progress=False,
                              offscreen_tolerance=0.0)
    meta = json.loads((out / "meta.json").read_text())
    assert meta["offscreen_tolerance"] == 0.0 and meta["n_rollouts"] == [1, 1]
    assert sorted(p.name for p in out.iterdir()) == ["meta.json", "run1.npz", "run2.npz"]
    with pytest.raises(ValueError, match="different settings.*offscreen_tolerance"):
        generate_collection(out, (1, 1), steps=5, progress=False)
    for bad in (-1.0, float("nan"), "18", True):
        with pytest.raises(ValueError, match="offscreen_tolerance"):
            generate_run(1, seed=0, steps=2, progress=False, offscreen_tolerance=bad)


def test_collection_is_cached_and_settings_checked(collection, monkeypatch):
    mtime = (collection / "meta.json").stat().st_mtime_ns

    def boom(*a, **k):
        raise AssertionError("should not regenerate")

    monkeypatch.setattr(ll, "_generate_run", boom)
    same = generate_collection(collection, n_rollouts=[2, 2, 2], steps=STEPS, progress=False)
    assert same == collection
    assert (collection / "meta.json").stat().st_mtime_ns == mtime
    with pytest.raises(ValueError, match="different settings.*size"):
        generate_collection(collection, n_rollouts=(2, 2, 2), steps=STEPS, size=32, progress=False)
    with pytest.raises(ValueError, match="different settings"):
        generate_collection(collection, n_rollouts=(2, 2, 2), seed=1, steps=STEPS, progress=False)


def test_interrupted_collection_leaves_nothing(tmp_path, monkeypatch):
    real = ll._generate_run
    calls = []

    def fail_on_second(*a, **k):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(*a, **k)

    monkeypatch.setattr(ll, "_generate_run", fail_on_second)
    with pytest.raises(KeyboardInterrupt):
        generate_collection(tmp_path / "c", (1, 1, 1), steps=5, workers=1, progress=False)
    assert list(tmp_path.iterdir()) == []


def test_existing_directories(tmp_path):
    (tmp_path / "empty").mkdir()
    out = generate_collection(tmp_path / "empty", (1, 1, 1), steps=5, workers=1, progress=False)
    assert len(load_run(out, 1)) == 5
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "x.txt").write_text("x")
    with pytest.raises(ValueError, match="not a LunarLander collection"):
        generate_collection(tmp_path / "other", n_rollouts=(1, 1, 1), steps=5, progress=False)


def test_load_missing(tmp_path):
    with pytest.raises(FileNotFoundError, match="lossnet data lunarlander --out"):
        load_run(tmp_path / "nope", 1)
    with pytest.raises(ValueError):
        load_run(tmp_path, 4)


@pytest.mark.parametrize(
    "kwargs",
    [
        dict(n_rollouts=0),
        dict(n_rollouts=1.5),
        dict(n_rollouts=True),
        dict(steps=0),
        dict(size=15),
        dict(size=64.0),
        dict(seed=-1),
        dict(seed="0"),
        dict(workers=0),
    ],
)
def test_generate_run_validation(kwargs):
    args = dict(n_rollouts=1, seed=0, steps=5, size=64, workers=1, progress=False) | kwargs
    with pytest.raises(ValueError):
        generate_run(**args)


@pytest.mark.parametrize(
    "kwargs",
    [
        dict(n_rollouts=(1,)),
        dict(n_rollouts=(1, 2, 3, 4)),
        dict(n_rollouts=(1, 0, 1)),
        dict(n_rollouts=5),
        dict(workers=0),
        dict(steps=-3),
    ],
)
def test_generate_collection_validation(tmp_path, kwargs):
    args = dict(n_rollouts=(1, 1, 1), steps=5, progress=False) | kwargs
    with pytest.raises(ValueError):
        generate_collection(tmp_path / "c", **args)
    assert not (tmp_path / "c").exists()


def test_cli(tmp_path, capsys):
    from lossnet.cli import build_parser, main

    argv = ["data", "lunarlander", "--out", str(tmp_path / "c"), "--rollouts", "1", "1", "1",
            "--steps", "8", "--size", "32", "--workers", "1", "--no-progress"]
    args = build_parser().parse_args(argv)
    assert args.rollouts == [1, 1, 1] and args.seed == 0
    assert main(argv) == 0
    out = capsys.readouterr().out.strip().splitlines()
    assert len(out) == 1 and "run1=8" in out[0]
    assert load_run(tmp_path / "c", 1).images.shape == (8, 3, 32, 32)
    assert main(argv) == 0 and "cached" in capsys.readouterr().out
    assert main(["64" if a == "32" else a for a in argv]) == 2  # --size 64, was 32
    assert "different settings" in capsys.readouterr().err
    defaults = build_parser().parse_args(["data", "lunarlander", "--out", "d"])
    assert defaults.rollouts == [20, 10, 10] and defaults.steps == 150 and defaults.size == 64


class _EndsAt:
    """gymnasium.make stand-in whose episodes report ``terminated`` at step ``k`` (and after),
    counting resets: a forced early termination for the rollout-mode tests."""

    def __init__(self, make, k):
        self.make, self.k, self.resets = make, k, 0

    def __call__(self, *args, **kwargs):
        import gymnasium as gym

        outer = self

        class Wrapper(gym.Wrapper):
            def reset(self, **kw):
                outer.resets += 1
                self.t = 0
                return self.env.reset(**kw)

            def step(self, action):
                obs, r, term, trunc, info = self.env.step(action)
                self.t += 1
                return obs, r, term or self.t >= outer.k, trunc, info

        return Wrapper(self.make(*args, **kwargs))


@pytest.mark.parametrize("mode", ll.ROLLOUT_MODES)
def test_rollout_modes_after_a_forced_termination(monkeypatch, mode):
    """``authors`` (gym_datagenerator.py): one reset per rollout, the finished episode keeps being
    stepped; ``reset_on_done``: the frame after the terminal one is the reset state of a fresh
    episode (its own seed)."""
    import gymnasium as gym

    fake = _EndsAt(gym.make, 3)
    monkeypatch.setattr(gym, "make", fake)
    run = generate_run(1, seed=5, steps=8, progress=False, rollout=mode)
    obs = run["obs"]
    fresh = gym.make.make(ll.ENV_ID).reset(seed=ll._episode_seed(5, 0, 1))[0]
    if mode == "authors":
        assert fake.resets == 1
        assert not np.allclose(obs[4], fresh)
        # continuous flight: consecutive positions move by at most a few pixels per step
        assert np.abs(np.diff(run["positions"], axis=0)).max() < 3
    else:
        assert fake.resets == 2  # frames 0 and 4 start episodes (frame 3 is the terminal one)
        np.testing.assert_allclose(obs[4], fresh, atol=1e-6)
        assert np.abs(run["positions"][4] - run["positions"][3]).max() > 0
    # frames 0-3 (up to the terminal frame) are the same in both modes
    other = generate_run(1, seed=5, steps=4, progress=False,
                         rollout=[m for m in ll.ROLLOUT_MODES if m != mode][0])
    np.testing.assert_array_equal(obs[:4], other["obs"])


def test_rollout_mode_setting(tmp_path):
    out = generate_collection(tmp_path / "c", (1, 1), steps=5, workers=1, progress=False, rollout="authors")
    meta = json.loads((out / "meta.json").read_text())
    assert meta["rollout"] == "authors" and "one reset per rollout" in meta["episodes"]
    with pytest.raises(ValueError, match="different settings.*rollout"):
        generate_collection(out, (1, 1), steps=5, progress=False)
    with pytest.raises(ValueError, match="rollout must be one of"):
        generate_run(1, seed=0, steps=2, progress=False, rollout="gym")
