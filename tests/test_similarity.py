"""Benchmark 1: BAPPS reader, 2AFC/JND scoring (vs hand values and the lpips package), proxy."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from lossnet.testing.bapps import write_fake_bapps, write_scalar_npy
from lossnet.eval.similarity import (
    FeatureDistance,
    distortion_proxy,
    evaluate_bapps,
    make_proxy_set,
    pixel_l2_distance,
    ref_distances,
    score_2afc,
    score_jnd,
    ssim_distance,
    twoafc_scores,
    voc_ap,
)
from lossnet.benchmarks.similarity import similarity_cell
from lossnet.data.bapps import load_bapps_2afc, load_bapps_jnd


# ------------------------------------------------------------------ scorers: hand-computed values


def test_score_2afc_hand_values_with_tie():
    d0 = [1.0, 2.0, 3.0, 3.0]
    d1 = [2.0, 1.0, 3.0, 5.0]
    j = [0.2, 0.6, 0.9, 1.0]
    # p0 closer -> 1-J; p1 closer -> J; tie -> 0.5
    np.testing.assert_allclose(twoafc_scores(d0, d1, j), [0.8, 0.6, 0.5, 0.0])
    assert score_2afc(d0, d1, j) == pytest.approx(1.9 / 4)


def test_score_jnd_hand_values():
    # sorted: same = 1,0,1,0 -> prec 1,.5,2/3,.5; rec .5,.5,1,1 -> AP = .5*1 + .5*2/3
    assert score_jnd([0.1, 0.2, 0.3, 0.4], [1, 0, 1, 0]) == pytest.approx(0.5 + 0.5 * 2 / 3)
    assert score_jnd([0.1, 0.2, 0.3, 0.4], [1, 1, 0, 0]) == pytest.approx(1.0)
    # soft labels: TPs .5,1.5 FPs .5,.5 -> prec .5,.75 rec 1/3,1 -> envelope .75 -> AP .75
    assert score_jnd([0.1, 0.2], [0.5, 1.0]) == pytest.approx(0.75)
    assert score_jnd([0.2, 0.1], [0.5, 1.0]) == pytest.approx(2 / 3 + 1 / 3 * 0.75)


def test_scorers_reject_bad_input():
    with pytest.raises(ValueError, match="lengths differ"):
        score_2afc([1, 2], [1], [0, 0])
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        score_2afc([1], [2], [1.5])
    with pytest.raises(ValueError, match="non-finite"):
        score_2afc([np.nan], [2], [0.5])
    with pytest.raises(ValueError, match="same > 0"):
        score_jnd([0.1, 0.2], [0, 0])


# ------------------------------------------------------------------ scorers vs the lpips package


class _Loader:
    """Stands in for lpips' data loader: batches of dicts of tensors."""

    def __init__(self, batches):
        self.batches = batches

    def load_data(self):
        return self.batches


def _batches(n, bs, **arrays):
    return [{k: torch.as_tensor(v[s:s + bs]) for k, v in arrays.items()} for s in range(0, n, bs)]


@pytest.fixture(scope="module")
def lpips_pkg():
    return pytest.importorskip("lpips")


def test_score_2afc_matches_lpips(lpips_pkg):
    rng = np.random.default_rng(0)
    n = 300
    d0 = rng.integers(0, 6, n).astype(np.float64)  # small integers: many exact ties
    d1 = rng.integers(0, 6, n).astype(np.float64)
    judge = rng.integers(0, 6, n) / 5.0
    ref = np.zeros(n)
    # lpips calls func(ref, p0) and func(ref, p1): feed the distances as "images"
    loader = _Loader(_batches(n, 64, ref=ref, p0=d0, p1=d1, judge=judge))
    expected, _ = lpips_pkg.score_2afc_dataset(loader, lambda a, b: b)
    assert score_2afc(d0, d1, judge) == pytest.approx(expected, abs=1e-12)


def test_score_jnd_matches_lpips(lpips_pkg):
    rng = np.random.default_rng(1)
    for trial in range(5):
        n = 200
        d = rng.random(n) if trial % 2 else rng.integers(0, 8, n).astype(np.float64)  # with/without ties
        same = rng.integers(0, 4, n) / 3.0
        loader = _Loader(_batches(n, 50, p0=np.zeros(n), p1=d, same=same))
        expected, _ = lpips_pkg.score_jnd_dataset(loader, lambda a, b: b)
        assert score_jnd(d, same) == pytest.approx(expected, abs=1e-12)


def test_voc_ap_matches_lpips(lpips_pkg):
    rng = np.random.default_rng(2)
    rec = np.sort(rng.random(50))
    prec = rng.random(50)
    assert voc_ap(rec, prec) == pytest.approx(lpips_pkg.voc_ap(rec, prec), abs=1e-12)


# ------------------------------------------------------------------ BAPPS reader on fabricated folders


def test_reader_returns_written_data(tmp_path):
    written = write_fake_bapps(tmp_path, n=3, categories_2afc=("traditional", "cnn"), categories_jnd=("cnn",))
    afc = load_bapps_2afc(tmp_path, "val", ["traditional", "cnn"])
    assert list(afc) == ["traditional", "cnn"]
    for cat, (ref, p0, p1, judge) in afc.items():
        w = written["2afc"][cat]
        assert ref.dtype == torch.uint8 and ref.shape == (3, 3, 64, 64)
        for name, t in (("ref", ref), ("p0", p0), ("p1", p1)):
            np.testing.assert_array_equal(t.numpy(), w[name])
        assert judge.dtype == torch.float32 and judge.shape == (3,)
        np.testing.assert_array_equal(judge.numpy(), w["judge"])
    jnd = load_bapps_jnd(tmp_path, ["cnn"])
    p0, p1, same = jnd["cnn"]
    np.testing.assert_array_equal(p0.numpy(), written["jnd"]["cnn"]["p0"])
    np.testing.assert_array_equal(p1.numpy(), written["jnd"]["cnn"]["p1"])
    np.testing.assert_array_equal(same.numpy(), written["jnd"]["cnn"]["same"])


def test_reader_file_counts_must_match(tmp_path):
    write_fake_bapps(tmp_path, n=2, categories_2afc=("cnn",), categories_jnd=None)
    (tmp_path / "2afc" / "val" / "cnn" / "judge" / "000001.npy").unlink()
    with pytest.raises(ValueError, match="counts differ"):
        load_bapps_2afc(tmp_path, "val", ["cnn"])


def test_evaluate_bapps_known_scores(tmp_path):
    write_fake_bapps(tmp_path / "dataset", n=4, categories_2afc=("traditional", "cnn"),
                     categories_jnd=("traditional", "cnn"), p0_is_ref=True,
                     judge={"traditional": 0.0, "cnn": 1.0})
    # JND pairs 0 and 2 are identical (d = 0); label them same = 1/0 as below
    for cat, labels in (("traditional", [1, 0, 1, 0]), ("cnn", [0, 1, 0, 1])):
        for i, v in enumerate(labels):
            write_scalar_npy(tmp_path / "dataset" / "jnd" / "val" / cat / "same" / f"{i:06d}.npy", v)
    # root may be the `dataset` folder or its parent
    rows = evaluate_bapps(pixel_l2_distance, tmp_path, categories_2afc=("traditional", "cnn"), batch_size=3)
    got = {(r["task"], r["category"]): (r["score"], r["n"]) for r in rows}
    # p0 == ref so d0 = 0 < d1: judge 0 -> 1.0, judge 1 -> 0.0; the mean is over categories
    assert got[("2afc", "traditional")] == (1.0, 4)
    assert got[("2afc", "cnn")] == (0.0, 4)
    assert got[("2afc", "mean")] == (0.5, 8)
    # traditional: identical pairs ranked first are "same" -> 1.0; cnn: they are "different":
    # same sorted 0,0,1,1 -> prec 0,0,1/3,1/2, rec 0,0,1/2,1 -> AP = .5*.5 + .5*.5
    assert got[("jnd", "traditional")][0] == pytest.approx(1.0)
    assert got[("jnd", "cnn")][0] == pytest.approx(0.5)
    assert got[("jnd", "mean")][0] == pytest.approx(0.75)
    assert all(r["data"] == "bapps" for r in rows)


def test_missing_bapps_clear_error(tmp_path):
    for call in (lambda: load_bapps_2afc(tmp_path), lambda: load_bapps_jnd(tmp_path),
                 lambda: evaluate_bapps(pixel_l2_distance, tmp_path),
                 lambda: similarity_cell("alexnet", "E", data="bapps", root=tmp_path, weights=None)):
        with pytest.raises(FileNotFoundError) as e:
            call()
        msg = str(e.value)
        assert "BAPPS" in msg and "download_dataset.sh" in msg and "never downloaded" in msg
        assert "ROOT/2afc/{train,val}/{category}" in msg and "judge" in msg


# ------------------------------------------------------------------ distortion proxy


def _write_fake_images(folder, n=3, seed=0):
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        small = rng.integers(0, 256, (12, 14, 3)).astype(np.uint8)  # smooth-ish: upsampled noise
        Image.fromarray(small).resize((140, 120), Image.BILINEAR).save(folder / f"img{i}.png")
    Image.fromarray(small[:5, :5]).save(folder / "too_small.png")  # skipped: smaller than a context crop


def test_proxy_pixel_l2_orders_noise(tmp_path):
    _write_fake_images(tmp_path / "imgs")
    rows = distortion_proxy(pixel_l2_distance, tmp_path / "imgs", n_patches=4, seed=0)
    got = {(r["task"], r["category"]): r for r in rows}
    assert got[("2afc", "noise")]["score"] == 1.0  # same noise field, scaled: monotone in strength
    assert got[("jnd", "noise")]["score"] == pytest.approx(1.0)
    assert got[("2afc", "noise")]["n"] == 4 * 10  # C(5, 2) level pairs per patch
    for key in (("2afc", "mean"), ("2afc", "cross"), ("jnd", "mean"), ("jnd", "pooled")):
        assert key in got
    assert all(0.0 <= r["score"] <= 1.0 and r["data"] == "proxy" for r in rows)


def test_proxy_set_deterministic(tmp_path):
    _write_fake_images(tmp_path / "imgs")
    a = make_proxy_set(tmp_path / "imgs", n_patches=3, seed=5, distortions=["blur", "jpeg", "shift"])
    b = make_proxy_set(tmp_path / "imgs", n_patches=3, seed=5, distortions=["blur", "jpeg", "shift"])
    c = make_proxy_set(tmp_path / "imgs", n_patches=3, seed=6, distortions=["blur", "jpeg", "shift"])
    assert a.sources == b.sources and torch.equal(a.ref, b.ref)
    assert all(torch.equal(a.distorted[k], b.distorted[k]) for k in a.distorted)
    assert a.distorted["blur"].shape == (3, 5, 3, 64, 64) and a.ref.dtype == torch.uint8
    assert not torch.equal(a.ref, c.ref)
    assert all("too_small" not in s[0] for s in a.sources)


def test_ref_distances_cached_features_match(sr_dir):
    from lossnet.zoo import LossNetwork

    torch.manual_seed(0)
    fd = FeatureDistance(LossNetwork("alexnet", layers=["S"], weights=None))
    ps = make_proxy_set(sr_dir, n_patches=3, seed=0, distortions=["noise"])
    others = [ps.distorted["noise"][:, k] for k in range(2)]
    cached = ref_distances(fd, ps.ref, others, batch_size=2)
    plain = ref_distances(lambda a, b: fd(a, b), ps.ref, others, batch_size=2)
    for x, y in zip(cached, plain):
        np.testing.assert_allclose(x, y, rtol=1e-5)
    s = ssim_distance(ps.ref.float() / 255, others[0].float() / 255)
    assert s.shape == (3,) and bool((s >= 0).all())


def test_similarity_cell_proxy_real_patches(sr_dir):
    torch.manual_seed(0)
    out = similarity_cell("alexnet", "M", data="proxy", root=sr_dir, weights=None, n_patches=2, seed=0)
    assert out["arch"] == "alexnet" and out["layer"] == "M" and out["weights"] == "random"
    assert 0.0 <= out["2afc"] <= 1.0 and 0.0 <= out["jnd"] <= 1.0
    assert all(0.0 <= r["score"] <= 1.0 for r in out["rows"])


def test_similarity_cell_skips_without_weights(monkeypatch, tmp_path):
    import lossnet.zoo as zoo

    class _St:
        available, reason = False, "not fetched (test)"

    monkeypatch.setattr(zoo, "status", lambda arch: _St())
    with pytest.raises(zoo.WeightsUnavailableError, match="not fetched"):
        similarity_cell("vgg16", "L", data="proxy", root=tmp_path)
