"""lossnet.eval.torchmetrics: torchmetrics Metrics equal to the functional forms, reference values, reset, DDP sync."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from lossnet.eval.torchmetrics import (SRPSNR, SRSSIM, DeepPerceptualSimilarity, DelineationScores,
                                      PerceptualDistanceMetric, SuperResolutionScores)


def _rand(n, seed, size=32):
    return torch.rand(n, 3, size, size, generator=torch.Generator().manual_seed(seed))


def _no_net_keys(m):
    return not any(k.startswith(("_frozen", "net")) for k in m.state_dict())


def test_perceptual_distance_matches_functional_and_lpips_package(offline_weights):
    lpips = pytest.importorskip("lpips")
    from lossnet.losses import PerceptualDistance
    from lossnet.zoo import weights as W

    m = PerceptualDistanceMetric("alexnet", lpips_weights=True)
    batches = [(_rand(n, 2 * i), _rand(n, 2 * i + 1)) for i, n in enumerate((2, 3, 1))]
    for a, b in batches:
        m.update(a, b)
    x0, x1 = torch.cat([a for a, _ in batches]), torch.cat([b for _, b in batches])
    with torch.no_grad():
        per = PerceptualDistance("alexnet", lpips_weights=True)(x0, x1)
    got = m.compute()
    assert got.dtype == torch.float64
    assert float(got) == pytest.approx(float(per.double().mean()), rel=1e-6)
    # LPIPS(alex) v0.1 of the lpips package, given the same ImageNet trunk
    ref = lpips.LPIPS(pretrained=True, net="alex", pnet_rand=True, verbose=False).eval()
    sd, _ = W.load_state_dict("alexnet")
    tv = {k.replace("features.", ""): v for k, v in sd.items()}
    for s in (ref.net.slice1, ref.net.slice2, ref.net.slice3, ref.net.slice4, ref.net.slice5):
        for name, mod in s.named_children():
            if isinstance(mod, torch.nn.Conv2d):
                mod.weight.data.copy_(tv[f"{name}.weight"])
                mod.bias.data.copy_(tv[f"{name}.bias"])
    with torch.no_grad():
        theirs = ref(x0 * 2 - 1, x1 * 2 - 1).flatten().double().mean()
    assert float(got) == pytest.approx(float(theirs), abs=1e-6)
    assert _no_net_keys(m) and set(m.state_dict()) <= {"total", "count"}
    assert not any(p.requires_grad for p in m.net.parameters())
    m.reset()
    assert int(m.count) == 0 and torch.isnan(m.compute())
    m.update(x0[:1], x0[:1])
    assert float(m.compute()) == pytest.approx(0.0, abs=1e-7)


def test_deep_perceptual_similarity_matches_perceptual_loss():
    from lossnet.losses import perceptual_loss
    from lossnet.zoo import LossNetwork

    torch.manual_seed(0)
    net = LossNetwork("alexnet", layers=["E", "M"], weights=None)
    m = DeepPerceptualSimilarity(net)
    xs, ts = [_rand(2, i) for i in range(3)], [_rand(2, 10 + i) for i in range(3)]
    for x, t in zip(xs, ts):
        m.update(x, t)
    with torch.no_grad():
        ref = perceptual_loss(net, torch.cat(xs), torch.cat(ts))
    assert float(m.compute()) == pytest.approx(float(ref), rel=1e-5)
    assert _no_net_keys(m)
    m.train()
    assert not m.net.training
    with pytest.raises(ValueError):
        DeepPerceptualSimilarity(net, layers=["L"])
    with pytest.raises(ValueError):
        m.update(xs[0], ts[0][:, :, :16])
    m.reset()
    m.update(xs[0], ts[0])
    with torch.no_grad():
        assert float(m.compute()) == pytest.approx(float(perceptual_loss(net, xs[0], ts[0])), rel=1e-5)


def test_sr_scores_match_skimage_on_y():
    pytest.importorskip("skimage")
    from skimage.metrics import peak_signal_noise_ratio, structural_similarity

    from lossnet.eval.sr import rgb_to_y

    g = torch.Generator().manual_seed(3)
    hrs = [torch.rand(n, 3, 40, 40, generator=g) for n in (2, 1, 2)]
    srs = [(h + 0.05 * torch.randn(h.shape, generator=g)).clamp(0, 1).mul(255).round().div(255) for h in hrs]
    m, p, s = SuperResolutionScores(border=4), SRPSNR(border=4), SRSSIM(border=4)
    for sr, hr in zip(srs, hrs):
        for metric in (m, p, s):
            metric.update(sr, hr)
    hr_all = torch.cat(hrs)  # sr is 8-bit already: the quantisation is a no-op
    sr_all = torch.cat(srs)
    ref_p, ref_s = [], []
    for i in range(len(hr_all)):
        a = rgb_to_y(sr_all[i:i + 1, :, 4:-4, 4:-4])[0, 0].double().numpy()
        b = rgb_to_y(hr_all[i:i + 1, :, 4:-4, 4:-4])[0, 0].double().numpy()
        ref_p.append(peak_signal_noise_ratio(b, a, data_range=1.0))
        ref_s.append(structural_similarity(b, a, data_range=1.0, gaussian_weights=True, sigma=1.5,
                                           use_sample_covariance=False))
    out = m.compute()
    assert float(out["psnr"]) == pytest.approx(np.mean(ref_p), abs=1e-3)
    assert float(out["ssim"]) == pytest.approx(np.mean(ref_s), abs=1e-4)
    assert float(p.compute()) == float(out["psnr"]) and float(s.compute()) == float(out["ssim"])
    m.reset()
    assert int(m.count) == 0 and torch.isnan(m.compute()["psnr"])
    with pytest.raises(ValueError, match="colour"):
        SuperResolutionScores(colour="lab")


def test_psnr_only_scoring_gives_the_same_psnr_and_no_ssim():
    """``psnr_ssim(ssim=False)`` (validation PSNR during training) skips SSIM, nothing else; the
    colour and border conventions apply alike, rgb SSIM averages the three channels."""
    from skimage.metrics import structural_similarity

    from lossnet.eval.sr import psnr_ssim

    g = torch.Generator().manual_seed(5)
    hr = torch.rand(3, 3, 32, 40, generator=g)
    sr = (hr + 0.1 * torch.randn(hr.shape, generator=g)).clamp(0, 1)
    for colour in ("y", "rgb"):
        full = psnr_ssim(sr, hr, border=2, colour=colour)
        fast = psnr_ssim(sr, hr, border=2, colour=colour, ssim=False)
        assert [r["psnr"] for r in fast] == [r["psnr"] for r in full] and all(set(r) == {"psnr"} for r in fast)
    q = sr.mul(255).round().div(255)[0, :, 2:-2, 2:-2].double().numpy()
    ref = structural_similarity(hr[0, :, 2:-2, 2:-2].double().numpy(), q, data_range=1.0, gaussian_weights=True,
                                sigma=1.5, use_sample_covariance=False, channel_axis=0)
    assert full[0]["ssim"] == pytest.approx(ref, abs=1e-12)


def _lines(n, seed, size=48):
    rng = np.random.default_rng(seed)
    t = np.zeros((n, size, size), np.float32)
    for i in range(n):
        t[i, :, rng.integers(5, size - 5)] = 1
        t[i, rng.integers(5, size - 5), :] = 1
    p = np.clip(np.roll(t, rng.integers(-2, 3), axis=2) * 0.9 + 0.9 * rng.random(t.shape) * (rng.random(t.shape) > 0.97),
                0, 1)
    return p, t


def test_delineation_scores_accumulate_like_the_functional_form():
    from lossnet.eval.delineation import delineation_scores

    parts = [_lines(n, s) for s, n in ((0, 2), (1, 3), (2, 1))]
    parts.append((np.zeros((1, 48, 48), np.float32), np.zeros((1, 48, 48), np.float32)))  # 0/0: undefined ratios
    m = DelineationScores(tolerance=2)
    for p, t in parts:
        m.update(torch.from_numpy(p), t)
    ref = delineation_scores(np.concatenate([p for p, _ in parts]), np.concatenate([t for _, t in parts]), 2)
    got = m.compute()
    assert set(got) == set(ref)
    for k, v in ref.items():
        assert float(got[k]) == pytest.approx(v, abs=1e-12), k
    assert 0 < ref["quality"] < 1 and ref["n_defined_completeness"] == 6
    m.reset()
    assert int(m.n_images) == 0


def _ddp_worker(rank, world, port, shards, out):
    import torch.distributed as dist

    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world)
    try:
        m = DelineationScores(tolerance=2)
        for p, t in shards[rank]:
            m.update(p, t)
        res = m.compute()
        torch.save({k: v for k, v in res.items()}, f"{out}/rank{rank}.pt")
    finally:
        dist.destroy_process_group()


def test_ddp_sync_equals_single_process_over_the_union(tmp_path):
    import socket

    import torch.multiprocessing as mp

    shards = [[_lines(2, 0), _lines(1, 1)], [_lines(3, 2)]]  # unequal batch counts per rank
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    mp.spawn(_ddp_worker, args=(2, port, shards, str(tmp_path)), nprocs=2, join=True)
    single = DelineationScores(tolerance=2)
    for p, t in shards[0] + shards[1]:
        single.update(p, t)
    ref = single.compute()
    for r in range(2):
        got = torch.load(tmp_path / f"rank{r}.pt", weights_only=True)
        for k, v in ref.items():
            assert float(got[k]) == pytest.approx(float(v), abs=1e-12), (r, k)
