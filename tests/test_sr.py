"""Super-resolution data, metrics and transformation network (benchmark 2 foundations)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from lossnet.data.sr import (bicubic_upsample, degrade, load_images, make_pairs, modcrop, random_patches,
                             resolve_test_set, sr_training_data)
from lossnet.eval.sr import evaluate_sr, psnr_ssim, rgb_to_y
from lossnet.models.transformer import TransformerNet

skimage = pytest.importorskip("skimage")


def _img(seed=0, h=48, w=40):
    g = torch.Generator().manual_seed(seed)
    base = torch.rand(1, 3, h // 8, w // 8, generator=g)
    smooth = torch.nn.functional.interpolate(base, size=(h, w), mode="bilinear", align_corners=False)
    return (smooth + 0.05 * torch.rand(1, 3, h, w, generator=g)).clamp(0, 1)


def test_y_channel_matches_skimage():
    from skimage.color import rgb2ycbcr

    x = _img()
    ours = rgb_to_y(x)[0, 0].numpy() * 255
    ref = rgb2ycbcr(x[0].permute(1, 2, 0).numpy())[..., 0]  # Y in [16, 235]
    np.testing.assert_allclose(ours, ref, atol=1e-4)


@pytest.mark.parametrize("colour", ["y", "rgb"])
def test_psnr_ssim_match_skimage(colour):
    from skimage.metrics import peak_signal_noise_ratio, structural_similarity

    hr = _img(1)
    sr = (hr + 0.04 * torch.randn(hr.shape, generator=torch.Generator().manual_seed(2))).clamp(0, 1)
    sr = sr.mul(255).round().div(255)  # already 8-bit: quantisation is a no-op
    got = psnr_ssim(sr, hr, border=4, colour=colour)[0]
    a, b = sr[0, :, 4:-4, 4:-4], hr[0, :, 4:-4, 4:-4]
    if colour == "y":
        a, b = rgb_to_y(a[None])[0, 0].double().numpy(), rgb_to_y(b[None])[0, 0].double().numpy()
        kw = {}
    else:
        a, b = a.permute(1, 2, 0).double().numpy(), b.permute(1, 2, 0).double().numpy()
        kw = {"channel_axis": 2}
    assert got["psnr"] == pytest.approx(peak_signal_noise_ratio(b, a, data_range=1.0), abs=1e-4)
    ref = structural_similarity(b, a, data_range=1.0, gaussian_weights=True, sigma=1.5, use_sample_covariance=False,
                                **kw)
    assert got["ssim"] == pytest.approx(ref, abs=1e-6)


def test_psnr_known_value_and_bad_input():
    hr = torch.full((1, 3, 32, 32), 0.5)
    sr = hr + 0.1  # MSE 0.01 in every channel -> 20 dB (RGB)
    assert psnr_ssim(sr, hr, colour="rgb", quantize=False)[0]["psnr"] == pytest.approx(20.0, abs=1e-4)
    with pytest.raises(ValueError, match="same shape"):
        psnr_ssim(sr[..., :16], hr)
    with pytest.raises(ValueError, match="colour"):
        psnr_ssim(sr, hr, colour="lab")
    with pytest.raises(ValueError, match="border"):
        psnr_ssim(sr, hr, border=12)


def test_degrade_is_blur_then_pil_bicubic():
    from PIL import Image
    from scipy.ndimage import gaussian_filter

    hr = _img(3, 64, 64)
    # blur: sigma 1, 7-tap kernel, mirror padding (torch "reflect" = scipy "mirror")
    blurred = np.stack([gaussian_filter(c, 1.0, mode="mirror", truncate=3.0) for c in hr[0].double().numpy()])
    lr = degrade(hr, 4, sigma=1.0, quantize=False)
    assert lr.shape == (1, 3, 16, 16)
    # downsampling = PIL's bicubic resize (antialiased) of the blurred image, to within 8-bit rounding
    ref = []
    for c in blurred:
        im = Image.fromarray(c.astype(np.float32), mode="F").resize((16, 16), Image.Resampling.BICUBIC)
        ref.append(np.asarray(im))
    np.testing.assert_allclose(lr[0].numpy(), np.clip(np.stack(ref), 0, 1), atol=2e-3)
    q = degrade(hr, 4)
    assert torch.equal(q, q.mul(255).round().div(255))
    with pytest.raises(ValueError, match="multiple of the factor"):
        degrade(hr[..., :63], 4)
    with pytest.raises(ValueError, match=r"float images \(N, 3, H, W\)"):
        degrade((hr * 255).to(torch.uint8), 4)


def test_bicubic_and_modcrop():
    x = _img(4, 50, 43)
    assert modcrop(x, 4).shape[-2:] == (48, 40)
    up = bicubic_upsample(degrade(modcrop(x, 4), 4), 4)
    assert up.shape == modcrop(x, 4).shape and 0 <= up.min() and up.max() <= 1


def test_patches_and_training_pairs(tmp_path):
    from PIL import Image

    for i in range(5):
        arr = (np.random.default_rng(i).random((70 + i, 90, 3)) * 255).astype(np.uint8)
        Image.fromarray(arr).save(tmp_path / f"im{i}.png")
    imgs = [im for _, im in load_images(tmp_path)]
    p1, p2 = random_patches(imgs, 6, 32, seed=1), random_patches(imgs, 6, 32, seed=1)
    assert p1.shape == (6, 3, 32, 32) and p1.dtype == torch.uint8 and torch.equal(p1, p2)
    pairs = make_pairs(p1, 4)
    assert pairs["lr"].shape == (6, 3, 8, 8) and pairs["lr"].dtype == torch.uint8
    train, val, info = sr_training_data(tmp_path, factor=4, patch=32, n_patches=10, val_images=2, val_patch=40)
    assert train["hr"].shape == (10, 3, 32, 32) and val["hr"].shape == (2, 3, 40, 40) and info["train_images"] == 3
    with pytest.raises(ValueError, match="val_images"):
        sr_training_data(tmp_path, factor=4, patch=32, n_patches=4, val_images=5)
    with pytest.raises(ValueError, match="no training image"):
        random_patches(imgs, 2, 512)


def test_shared_test_sets_and_bicubic_reference(sr_full_dir):
    assert resolve_test_set(sr_full_dir, "set5").name == "CSet5"
    assert resolve_test_set(sr_full_dir, "cbsd68").name == "CBSD68"
    with pytest.raises(FileNotFoundError, match="set5"):
        resolve_test_set(sr_full_dir, "urban100")
    images = load_images(resolve_test_set(sr_full_dir, "set5"))
    assert len(images) == 5 and all(im.shape[0] == 3 for _, im in images)
    res = evaluate_sr(lambda lr: bicubic_upsample(lr, 4), images, 4, keep=["butterfly"])
    # bicubic x4 after a sigma-1 blur on Set5 (Y, 4-px border): well above noise, well below x2 levels
    assert 24.0 < res["psnr"] < 31.0 and 0.6 < res["ssim"] < 0.9
    assert res["outputs"]["butterfly"].dtype == torch.uint8
    nearest = evaluate_sr(lambda lr: torch.nn.functional.interpolate(lr, scale_factor=4), images, 4)
    assert nearest["psnr"] < res["psnr"]


@pytest.mark.parametrize("factor", [2, 4, 8])
def test_transformer_net_shapes(factor):
    net = TransformerNet(factor, blocks=2, channels=8)
    y = net(torch.rand(2, 3, 10, 12))
    assert y.shape == (2, 3, 10 * factor, 12 * factor) and 0 <= y.min() and y.max() <= 1
    assert sum(isinstance(m, torch.nn.ConvTranspose2d) for m in net.modules()) == {2: 1, 4: 2, 8: 3}[factor]


def test_transformer_net_rejects_bad_factor():
    with pytest.raises(ValueError, match="power of two"):
        TransformerNet(3)


def _fake_sr_root(root):
    """Tiny SR folders: a training folder and CSet5 / CSet14 stand-ins (smooth random images)."""
    from PIL import Image

    def write(folder, names, h, w, seed):
        folder.mkdir(parents=True, exist_ok=True)
        for i, n in enumerate(names):
            img = _img(seed + i, h, w)[0].permute(1, 2, 0).mul(255).round().byte().numpy()
            Image.fromarray(img).save(folder / f"{n}.png")

    write(root / "train", [f"t{i}" for i in range(6)], 64, 72, 10)
    write(root / "CSet5", ["butterfly", "bird"], 40, 48, 30)
    write(root / "CSet14", ["zebra"], 48, 40, 40)
    return root


def test_benchmark2_sweep_with_references_and_crops(tmp_path):
    from lossnet.runs.cells import reference_rows
    from lossnet.runs.table import ResultsTable
    from lossnet.benchmarks.sweep import run_sweep

    root = _fake_sr_root(tmp_path / "sr")
    args = ["loss_net=alexnet", "layer=E,L", "weights=random", f"sr_root={root}", f"train_root={root / 'train'}",
            "test_sets=[set5,set14]", "patch=32", "n_patches=8", "val_images=2", "val_patch=32", "train.epochs=2",
            "train.batch_size=4", "model.blocks=1", "model.channels=8", "crop=16", "threads=1",
            f"out={tmp_path / 'sw'}"]
    out = run_sweep("super_resolution", args)
    rows = [r for r in ResultsTable(out).rows() if r["status"] == "ok"]
    assert sorted(r["layer"] for r in rows) == ["E", "L"]
    for r in rows:
        for col in ("set5_psnr_x4", "set5_ssim_x4", "set14_psnr_x4", "set14_ssim_x4"):
            assert isinstance(r[col], float)
        hist = r["details"]["history"]
        assert len(hist) == 2 and r["details"]["best_val_psnr"] == max(h["val_psnr"] for h in hist)
    refs = {r["reference"]: r for r in reference_rows(out)}
    assert set(refs) == {"bicubic", "pixel"} and refs["bicubic"]["set5_psnr_x4"] > 15
    md = (out / "analysis.md").read_text()
    assert "Benchmark 2: super-resolution next to the references" in md and "| bicubic |" in md
    assert (out / "figures" / "super_resolution_crops_x4.png").exists()
    # a rerun computes nothing: cells and references are done
    n_ref = len(reference_rows(out))
    seen = []
    run_sweep("super_resolution", args, on_row=seen.append)
    assert seen == [] and len(ResultsTable(out / "reference").rows()) == n_ref


def test_bsd100_is_not_cbsd68(sr_dir, tmp_path):
    """CBSD68 (68 images) is named and labelled cbsd68; bsd100 reads a real BSD100 folder only."""
    from lossnet.benchmarks.super_resolution import score_name, scores, set_key
    from lossnet.benchmarks.sweep import load_sweep_config

    with pytest.raises(FileNotFoundError, match="use cbsd68"):  # the shared folder has no BSD100
        resolve_test_set(sr_dir, "bsd100")
    (tmp_path / "BSD100").mkdir()
    assert resolve_test_set(tmp_path, "bsd100") == tmp_path / "BSD100"
    assert [set_key(n) for n in ("bsd100", str(tmp_path / "BSD100"), "cbsd68", str(sr_dir / "CBSD68"), "CSet5")] == [
        "bsd100", "bsd100", "cbsd68", "cbsd68", "set5"]
    assert score_name(str(sr_dir / "CBSD68"), "psnr", 4) == "cbsd68_psnr_x4"
    quick = [s.name for s in scores(load_sweep_config("super_resolution"))]
    assert "cbsd68_psnr_x4" in quick and not any(c.startswith("bsd100") for c in quick)
    paper = [s.name for s in scores(load_sweep_config("super_resolution", ["scale=paper"]))]
    assert "bsd100_ssim_x8" in paper and not any(c.startswith("cbsd68") for c in paper)


def _flat_images(folder, values, h, w):
    """One constant-colour PNG per value (a crop of image i is all ``values[i]``: its source is known)."""
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    for v in values:
        Image.fromarray(np.full((h, w, 3), v, np.uint8)).save(folder / f"img{v:03d}.png")


def _sources(x):
    """The constant value of each (3, P, P) crop."""
    assert all(int(p.min()) == int(p.max()) for p in x)
    return [int(p[0, 0, 0]) for p in x]


def test_validation_from_val_root_and_seeded_training_subset(tmp_path):
    train = tmp_path / "train"
    _flat_images(train, range(10, 18), 40, 48)  # 8 usable training images
    _flat_images(train, [200], 20, 20)  # too small for 32 px crops: passed over
    _flat_images(train / "val", range(100, 105), 40, 40)  # val_root inside train_root: must not be trained on
    kw = dict(factor=4, patch=32, n_patches=8, val_images=3, val_patch=32, val_root=train / "val", seed=0)
    tr, va, info = sr_training_data(train, train_images=8, subset_seed=1, **kw)
    val_src = _sources(va["hr"])
    assert len(set(val_src)) == 3 and set(val_src) <= set(range(100, 105))  # 3 distinct val_root images
    assert info["val_source"] == "val_root" and all(f.startswith(str(train / "val")) for f in info["val_files"])
    src = _sources(tr["hr"])
    assert sorted(src) == list(range(10, 18))  # no validation image, no repeat, the small one passed over
    assert info["train_images"] == 8 and info["sampling"] == "subset without replacement"
    # the same subset_seed gives the same subset; another gives another; crops spread evenly over the images
    a = _sources(sr_training_data(train, train_images=4, subset_seed=1, **kw)[0]["hr"])
    b = _sources(sr_training_data(train, train_images=4, subset_seed=1, **kw)[0]["hr"])
    c = _sources(sr_training_data(train, train_images=4, subset_seed=2, **kw)[0]["hr"])
    assert a == b and len(set(a)) == 4 and all(a.count(v) == 2 for v in a) and set(c) != set(a)
    assert a[:4] == a[4:]  # crop i from image i mod 4
    with pytest.raises(ValueError, match="only 8 of"):
        sr_training_data(train, train_images=9, subset_seed=1, **kw)
    with pytest.raises(ValueError, match="val_images=6"):
        sr_training_data(train, train_images=4, **{**kw, "val_images": 6})


def test_benchmark2_config_errors(tmp_path):
    from lossnet.errors import ConfigError
    from lossnet.benchmarks.sweep import run_sweep

    with pytest.raises(ConfigError, match="powers of two"):
        run_sweep("super_resolution", ["loss_net=alexnet", "factors=[3]", f"out={tmp_path}"])
    with pytest.raises(ConfigError, match="train_root"):
        run_sweep("super_resolution", ["loss_net=alexnet", "layer=E", "weights=random", f"train_root={tmp_path / 'nope'}",
                                 f"out={tmp_path}"])
    # scale=paper validates on a separate folder (MS-COCO val): no silent hold-out of training files
    root = _fake_sr_root(tmp_path / "sr")
    with pytest.raises(ConfigError, match="set val_root=DIR"):
        run_sweep("super_resolution", ["scale=paper", "loss_net=alexnet", "layer=E", "weights=random",
                                 f"train_root={root / 'train'}", f"out={tmp_path / 'p'}"])
    with pytest.raises(ConfigError, match="train_images must be"):
        run_sweep("super_resolution", ["loss_net=alexnet", "train_images=600", f"out={tmp_path}"])
    small = ["loss_net=alexnet", "layer=E", "weights=random", f"train_root={root / 'train'}", f"sr_root={root}"]
    with pytest.raises(ConfigError, match="holds 6 images; train_images=7"):  # before any reference is computed
        run_sweep("super_resolution", small + ["train_images=7", "n_patches=7", f"out={tmp_path / 'q'}"])
    with pytest.raises(ConfigError, match="holds 1 images; val_images=2"):
        run_sweep("super_resolution", small + [f"val_root={root / 'CSet14'}", "val_images=2", f"out={tmp_path / 'q'}"])
    assert not (tmp_path / "q" / "reference").exists()


def test_residual_transformer_starts_at_bicubic():
    net = TransformerNet(4, blocks=1, channels=8, residual=True).eval()
    lr = _img(5, 12, 16)
    assert torch.allclose(net(lr), bicubic_upsample(lr, 4), atol=1e-6)


def test_cli_benchmark2_and_srvae(capsys, tmp_path):
    from lossnet.cli import main

    assert main(["sweep", "super_resolution", "--print-config"]) == 0
    cfg = capsys.readouterr().out
    assert "patch: 64" in cfg and "residual: true" in cfg and "- set5" in cfg  # quick scale by default
    assert main(["sweep", "super_resolution", "scale=paper", "--print-config"]) == 0
    assert "patch: 288" in capsys.readouterr().out
    assert main(["srvae", "factors=[3]", f"out={tmp_path}"]) == 2
    assert "powers of two" in capsys.readouterr().err
    assert main(["sweep", "delineation", "--print-config"]) == 0
    assert "mu: 0.01" in capsys.readouterr().out


def test_super_resolution_cell_x8_pixel_baseline(tmp_path):
    from lossnet.benchmarks.super_resolution import super_resolution_cell

    root = _fake_sr_root(tmp_path / "sr")
    over = {"sr_root": str(root), "train_root": str(root / "train"), "test_sets": ["set5"], "patch": 32,
            "n_patches": 4, "val_images": 2, "val_patch": 32, "model": {"blocks": 1, "channels": 4, "residual": False},
            "train": {"epochs": 1, "batch_size": 4}, "eval": {"border": 0},
            "val_root": str(root / "CSet14"), "train_images": 4, "subset_seed": 3}  # the paper's data options
    with pytest.raises(ValueError, match="val_images=2"):  # CSet14 here holds one image
        super_resolution_cell(None, factor=8, out=tmp_path / "run", overrides=over)
    over["val_images"] = 1
    row = super_resolution_cell(None, factor=8, out=tmp_path / "run", overrides=over)
    assert row["arch"] == "pixel" and row["factor"] == 8 and "set5_psnr_x8" in row and "set5_ssim_x8" in row
    assert len(row["details"]["history"]) == 1 and not row["details"]["data"]["patch"] % 8
    data = row["details"]["data"]
    assert data["val_files"] == [str(root / "CSet14" / "zebra.png")] and data["train_images"] == 4


def test_frozen_loss_net_is_not_checkpointed_and_cached_targets_match():
    from omegaconf import OmegaConf

    from lossnet.train.cache import target_features
    from lossnet.benchmarks.super_resolution import SRTask
    from lossnet.train.cache import with_target_features
    from lossnet.zoo import LossNetwork

    torch.manual_seed(0)
    net = LossNetwork("alexnet", layers=["E"], weights=None)
    task = SRTask(TransformerNet(4, blocks=1, channels=4), net)
    assert all(k.startswith("model.") for k in task.state_dict())  # the frozen VGG/AlexNet stays out of last.pt
    hr = (torch.rand(3, 3, 32, 32) * 255).to(torch.uint8)
    data = {"lr": make_pairs(hr, 4)["lr"], "hr": hr}
    cached = with_target_features(data, "hr", net, OmegaConf.create({"feature_cache_gb": 1.0}))
    assert torch.allclose(cached["feat"], net(hr.float() / 255)[0], atol=1e-5)
    as_float = {k: (v.float() / 255 if v.dtype == torch.uint8 else v) for k, v in cached.items()}
    online = {k: v for k, v in as_float.items() if k != "feat"}
    assert torch.allclose(task.loss(as_float), task.loss(online), rtol=1e-4)
    assert target_features(hr, net, max_gb=1e-9) is None  # too large -> computed per batch
    assert with_target_features(data, "hr", net, OmegaConf.create({"feature_cache_gb": 0})) is data
