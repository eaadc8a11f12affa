"""The super-resolution VAE: model, loss weights, Oxford-IIIT Pet reader, end-to-end run."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from lossnet.data.sr import bicubic_upsample
from lossnet.models.sr_vae import SRVAE


def _png(path: Path, h: int, w: int, seed: int, fmt: str = "PNG") -> None:
    from PIL import Image

    g = torch.Generator().manual_seed(seed)
    small = torch.rand(1, 3, h // 8, w // 8, generator=g)
    img = torch.nn.functional.interpolate(small, size=(h, w), mode="bilinear", align_corners=False)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray((img[0].permute(1, 2, 0).numpy() * 255).astype(np.uint8)).save(path, fmt)


# --------------------------------------------------------------------------------------------
# Model
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("factor,down", [(2, 0), (4, 0), (4, 1)])
def test_shapes_and_range(factor, down):
    torch.manual_seed(0)
    m = SRVAE(factor, channels=8, z_channels=4, blocks=1, down=down)
    lr = torch.rand(2, 3, 12, 16)
    sr, mu, logvar = m(lr)
    h = 12 // 2 ** down
    assert sr.shape == (2, 3, 12 * factor, 16 * factor)
    assert mu.shape == logvar.shape == (2, 4, h, 16 // 2 ** down)
    assert sr.min() >= 0 and sr.max() <= 1
    assert m.upscale(lr).shape == sr.shape


def test_bad_factor_and_input():
    with pytest.raises(ValueError, match="power of two"):
        SRVAE(3)
    with pytest.raises(ValueError, match=r"\(N, 3, h, w\)"):
        SRVAE(2, channels=4, z_channels=2, blocks=0).upscale(torch.rand(1, 1, 8, 8))


def test_upscale_is_deterministic_and_training_samples():
    torch.manual_seed(0)
    m = SRVAE(2, channels=8, z_channels=4, blocks=1)
    torch.nn.init.normal_(m.tail.weight, std=0.1)  # a non-zero residual, so z matters
    lr = torch.rand(1, 3, 10, 10)
    m.train()
    a, b = m.upscale(lr), m.upscale(lr)
    assert torch.equal(a, b)
    s1, mu, _ = m(lr)
    s2, _, _ = m(lr)
    assert not torch.equal(s1, s2)  # z sampled in training mode
    m.eval()
    assert torch.equal(m(lr)[0], a)  # eval: z = mu


def test_zero_residual_is_bicubic():
    m = SRVAE(4, channels=8, z_channels=4, blocks=1, residual=True)  # the tail starts at zero
    lr = torch.rand(2, 3, 9, 7)
    assert torch.allclose(m.upscale(lr), bicubic_upsample(lr, 4))
    m2 = SRVAE(2, channels=8, z_channels=4, blocks=1, residual=False)
    assert torch.all(m2.upscale(lr) == 0)


# --------------------------------------------------------------------------------------------
# Loss weights
# --------------------------------------------------------------------------------------------


def test_weight_presets_and_runs():
    from lossnet.errors import ConfigError
    from lossnet.experiments.sr_vae import load_config, resolve_loss_weights

    cfg = load_config()
    assert cfg.loss_weights.preset == "tuned"
    assert resolve_loss_weights(cfg, "perceptual") == {"reconstruction": 1.0, "kl": 1e-6, "perceptual": 1e-4}
    assert resolve_loss_weights(cfg, "no_perceptual")["perceptual"] == 0.0
    paper = load_config({"loss_weights": {"preset": "paper"}})
    assert resolve_loss_weights(paper, "perceptual") == {"reconstruction": 1.0, "kl": 0.001, "perceptual": 0.8}
    assert resolve_loss_weights(paper, "no_perceptual") == {"reconstruction": 1.0, "kl": 0.001, "perceptual": 0.0}
    lit = load_config(["loss_weights.preset=paper_literal"])
    assert resolve_loss_weights(lit, "perceptual") == {"reconstruction": 0.001, "kl": 1.0, "perceptual": 0.8}
    assert resolve_loss_weights(lit, "no_perceptual") == {"reconstruction": 0.001, "kl": 1.0, "perceptual": 0.0}
    assert resolve_loss_weights(load_config(["loss_weights.kl=0.01"]))["kl"] == 0.01
    with pytest.raises(ConfigError, match="preset"):
        load_config(["loss_weights.preset=nope"])
    with pytest.raises(ConfigError, match="unknown setting"):
        load_config(["no_such_key=1"])
    with pytest.raises(ConfigError, match=r"unknown setting 'weights.kl'.*loss_weights.kl"):  # the 0.1.0 key
        load_config(["weights.kl=0.01"])
    with pytest.raises(ConfigError, match="powers of two"):
        load_config(["factors=[3]"])


def test_task_weights_the_terms():
    from lossnet.experiments.sr_vae_task import SRVAETask
    from lossnet.zoo import LossNetwork

    torch.manual_seed(0)
    net = LossNetwork("squeezenet1_1", layers=[3], weights=None)  # any loss network; VGG-16 is slow to build
    batch = {"lr": torch.rand(2, 3, 16, 16), "hr": torch.rand(2, 3, 32, 32)}
    model = SRVAE(2, channels=8, z_channels=4, blocks=1).eval()
    for w in ({"reconstruction": 1.0, "kl": 0.001, "perceptual": 0.8},
              {"reconstruction": 0.001, "kl": 1.0, "perceptual": 0.8},
              {"reconstruction": 1.0, "kl": 0.001, "perceptual": 0.0}):
        task = SRVAETask(model, w, net).eval()
        t = task.terms(batch)
        expected = sum(w[k] * t[k] for k in t)
        assert torch.allclose(task.loss(batch), expected)
        if w["perceptual"] == 0:
            assert task.criterion is None and float(t["perceptual"]) == 0.0
        else:
            assert float(t["perceptual"].detach()) > 0
    assert not any(n.startswith("criterion") for n, _ in SRVAETask(model, w, net).named_parameters())


# --------------------------------------------------------------------------------------------
# Oxford-IIIT Pet reader
# --------------------------------------------------------------------------------------------


def _fake_pets(root: Path, corrupt: bool = True) -> Path:
    lines = {"trainval": [], "test": []}
    k = 0
    for breed, (cls, sp) in {"Abyssinian": (1, 1), "beagle": (3, 2)}.items():
        for i in range(5):
            name = f"{breed}_{i + 1}"
            _png(root / "images" / f"{name}.jpg", 48, 64, k, fmt="JPEG")
            lines["trainval" if i < 4 else "test"].append(f"{name} {cls} {sp} {1 if sp == 1 else 2}")
            k += 1
    if corrupt:
        (root / "images" / "beagle_9.jpg").write_bytes(b"not a jpeg")
        lines["trainval"].append("beagle_9 3 2 2")
        lines["trainval"].append("beagle_10 3 2 2")  # listed, no file
    (root / "annotations").mkdir(parents=True)
    for split, ls in lines.items():
        (root / "annotations" / f"{split}.txt").write_text("#Image CLASS-ID SPECIES BREED ID\n" + "\n".join(ls) + "\n")
    return root


def test_pets_reader(tmp_path):
    from lossnet.data.pets import load_oxford_pets

    root = _fake_pets(tmp_path / "oxford-iiit-pet")
    ps = load_oxford_pets(root, "trainval")
    assert len(ps) == 8 and ps.names[0] == "Abyssinian_1"
    assert ps.labels.tolist() == [0] * 4 + [2] * 4 and ps.species.tolist() == [0] * 4 + [1] * 4
    assert ps.images[0].dtype == torch.uint8 and ps.images[0].shape == (3, 48, 64)
    assert dict(ps.skipped).keys() == {"beagle_9", "beagle_10"}
    assert load_oxford_pets(tmp_path, "test").names == ["Abyssinian_5", "beagle_5"]  # torchvision's parent layout
    sub = load_oxford_pets(root, "trainval", max_images=2, load=False)
    assert sub.images is None and sub.names == ["Abyssinian_1", "beagle_2"]  # spread over the breeds


def test_pets_reader_errors(tmp_path):
    from lossnet.data.pets import load_oxford_pets

    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_oxford_pets(tmp_path / "nope")
    with pytest.raises(FileNotFoundError, match="not an Oxford-IIIT Pet folder"):
        load_oxford_pets(tmp_path)
    root = _fake_pets(tmp_path / "pets", corrupt=False)
    (root / "annotations" / "trainval.txt").unlink()
    with pytest.raises(FileNotFoundError, match=r"annotations/trainval\.txt"):
        load_oxford_pets(root, "trainval")
    with pytest.raises(ValueError, match="split"):
        load_oxford_pets(root, "train")
    (root / "annotations" / "test.txt").write_text("Abyssinian_5 1 1\n")
    with pytest.raises(ValueError, match="NAME CLASS_ID"):
        load_oxford_pets(root, "test")


def test_pets_training_data(tmp_path):
    from lossnet.data.pets import pets_training_data

    root = _fake_pets(tmp_path / "pets")
    train, val, info = pets_training_data(root, factor=2, patch=16, n_patches=6, val_images=2, val_patch=32)
    assert train["hr"].shape == (6, 3, 16, 16) and train["lr"].shape == (6, 3, 8, 8)
    assert val["hr"].shape == (2, 3, 32, 32) and val["lr"].dtype == torch.uint8
    assert info["train_images"] == 6 and info["skipped"] == 2


# --------------------------------------------------------------------------------------------
# End to end
# --------------------------------------------------------------------------------------------


def test_run_sr_vae_end_to_end_and_resume(tmp_path, monkeypatch):
    from lossnet.experiments import sr_vae

    for i in range(5):
        _png(tmp_path / "train" / f"im{i}.png", 64, 64, i)
    for i in range(2):
        _png(tmp_path / "sr" / "tiny" / f"t{i}.png", 40, 44, 10 + i)
    over = {"train_root": str(tmp_path / "train"), "sr_root": str(tmp_path / "sr"), "test_sets": ["tiny"],
            "examples": ["tiny/t0"], "factors": [2], "patch": 32, "n_patches": 8, "val_images": 1,
            "val_patch": 48, "crop": 24, "perceptual": {"arch": "squeezenet1_1", "layer": 3, "weights": "random"},
            "model": {"channels": 4, "z_channels": 2, "blocks": 1}, "train": {"epochs": 2, "batch_size": 4},
            "device": "cpu"}
    report = sr_vae.run_sr_vae(over, out=tmp_path / "out")
    out = tmp_path / "out"
    rows = [json.loads(x) for x in (out / "results.jsonl").read_text().splitlines()]
    assert sorted((r["run"], r["factor"]) for r in rows) == sorted(
        (run, 2) for run in ("bicubic", "perceptual", "no_perceptual"))
    for r in rows:
        assert r["tiny_psnr_x%d" % r["factor"]] > 5 and 0 < r["tiny_ssim_x%d" % r["factor"]] <= 1
        if r["run"] != "bicubic":
            assert r["best_epoch"] in (0, 1) and r["epochs_run"] == 2 and r["seconds"] > 0
            assert (r["weights"]["perceptual"] == 0) == (r["run"] == "no_perceptual")
            assert "train_kl" in r["history"][0]
    text = report.read_text()
    assert report == out / "report.md" and "delta dB" in text and "bicubic" in text
    assert (out / "figures" / "crops_x2.png").exists() and (out / "results.csv").exists()

    def boom(*a, **k):
        raise AssertionError("a finished row was retrained")

    monkeypatch.setattr(sr_vae, "train_sr_vae", boom)
    sr_vae.run_sr_vae(over, out=out)
    assert len((out / "results.jsonl").read_text().splitlines()) == 3
    # rows written by lossnet 0.1.0 hold the loss weights under `weights`: they still report and resume
    old = [{**r, "config": {("weights" if k == "loss_weights" else k): v for k, v in r["config"].items()}}
           for r in rows]
    (out / "results.jsonl").write_text("".join(json.dumps(r) + "\n" for r in old))
    assert "delta dB" in sr_vae.write_report(out).read_text()
    sr_vae.run_sr_vae(over, out=out)
    assert len((out / "results.jsonl").read_text().splitlines()) == 3


def test_cli_print_config(capsys):
    from lossnet.cli import build_parser

    args = build_parser().parse_args(["srvae", "factors=[2]", "loss_weights.preset=paper_literal", "--print-config"])
    args.func(args)
    out = capsys.readouterr().out
    assert "preset: paper_literal" in out and "- 2" in out


# --------------------------------------------------------------------------------------------
# The paper's model (model.kind=dfc) and scale=paper
# --------------------------------------------------------------------------------------------


def test_paper_model_layers_shapes_and_parameters():
    from torch import nn

    from lossnet.models.sr_vae import GlobalSRVAE

    torch.manual_seed(0)
    m = GlobalSRVAE(2, lr_size=64)  # the paper's sizes: LR 64 -> HR 128, latent 100, widths 32-64-128-256
    convs = [c for c in m.encoder if isinstance(c, nn.Conv2d)]
    assert [(c.out_channels, c.kernel_size, c.stride) for c in convs] == [(w, (4, 4), (2, 2))
                                                                          for w in (32, 64, 128, 256)]
    assert sum(isinstance(c, nn.BatchNorm2d) for c in m.encoder) == 4
    assert all(c.negative_slope == 0.2 for c in m.encoder if isinstance(c, nn.LeakyReLU))
    dconvs = [c for c in m.decoder if isinstance(c, nn.Conv2d)]
    assert [(c.out_channels, c.kernel_size) for c in dconvs] == [(c, (3, 3)) for c in (128, 64, 32, 3)]
    assert sum(isinstance(c, nn.Upsample) for c in m.decoder) == 4 and isinstance(m.decoder[-1], nn.Sigmoid)
    # parameters by hand: encoder convs + BN, mu/logvar heads, z -> 256 x 8 x 8, decoder convs + BN
    enc = sum(cin * c * 16 + c + 2 * c for cin, c in ((3, 32), (32, 64), (64, 128), (128, 256)))
    heads = 2 * (256 * 4 * 4 * 100 + 100)
    fc = 100 * 256 * 8 * 8 + 256 * 8 * 8
    dec = sum(cin * c * 9 + c for cin, c in ((256, 128), (128, 64), (64, 32), (32, 3))) + 2 * (128 + 64 + 32)
    assert sum(p.numel() for p in m.parameters()) == enc + heads + fc + dec == 3_553_899
    lr = torch.rand(2, 3, 64, 64)
    sr, mu, logvar = m(lr)
    assert sr.shape == (2, 3, 128, 128) and mu.shape == logvar.shape == (2, 100)
    assert sr.min() >= 0 and sr.max() <= 1
    with pytest.raises(ValueError, match="global vector"):
        m(torch.rand(1, 3, 48, 64))
    with pytest.raises(ValueError, match="multiple of 2"):
        GlobalSRVAE(2, lr_size=40)


def test_paper_model_upscale_tiles_any_size():
    from lossnet.models.sr_vae import GlobalSRVAE

    torch.manual_seed(0)
    m = GlobalSRVAE(4, lr_size=16, latent=8, widths=[4, 4, 4, 4]).eval()
    lr = torch.rand(1, 3, 32, 16)
    out = m.upscale(lr)
    top, bottom = m(lr[..., :16, :])[0], m(lr[..., 16:, :])[0]  # eval mode: z = mu
    assert out.shape == (1, 3, 128, 64)
    assert torch.allclose(out[..., :64, :], top, atol=1e-6) and torch.allclose(out[..., 64:, :], bottom, atol=1e-6)
    odd = torch.rand(2, 3, 21, 37)
    assert m.upscale(odd).shape == (2, 3, 84, 148)  # replication-padded tiles, cropped back
    m.train()
    assert torch.equal(m.upscale(lr[..., :16, :]), m.upscale(lr[..., :16, :]))


def test_input_normalisation_is_imagenet():
    from lossnet.models.sr_vae import GlobalSRVAE

    m = GlobalSRVAE(2, lr_size=16, latent=4, widths=[4, 4, 4, 4]).eval()
    x = torch.rand(2, 3, 16, 16)
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    assert torch.allclose(m.normalize(x), (x - mean) / std)
    h = m.encoder((x - mean) / std).flatten(1)
    assert torch.allclose(m.encode(x)[0], m.fc_mu(h), atol=1e-6)
    raw = GlobalSRVAE(2, lr_size=16, latent=4, widths=[4, 4, 4, 4], normalize="none")
    assert torch.equal(raw.normalize(x), x)
    assert SRVAE(2, channels=4, z_channels=2, blocks=0).normalize.kind == "none"  # the residual model's default
    with pytest.raises(ValueError, match="normalize"):
        GlobalSRVAE(2, lr_size=16, normalize="unit")


def test_scale_paper_is_the_papers_protocol():
    from lossnet.experiments.sr_vae import load_config, resolve_loss_weights
    from lossnet.experiments.sr_vae_task import build_model
    from lossnet.models.sr_vae import GlobalSRVAE

    cfg = load_config(["scale=paper"])
    assert cfg.model.kind == "dfc" and cfg.model.normalize == "imagenet" and cfg.model.latent == 100
    assert list(cfg.model.widths) == [32, 64, 128, 256]
    assert resolve_loss_weights(cfg, "perceptual") == {"reconstruction": 0.001, "kl": 1.0, "perceptual": 0.8}
    assert cfg.kl_reduction == "sum" and cfg.perceptual.arch == "vgg16" and cfg.perceptual.layer == 15
    assert cfg.data == "pets" and list(cfg.factors) == [2] and cfg.sampling == "resize" and cfg.patch == 128
    assert list(cfg.test_sets) == ["pets", "set5", "set14"] and cfg.pets_test_size == 128
    m = build_model(cfg, 2)
    assert isinstance(m, GlobalSRVAE) and m.lr_size == 64 and m.normalize.kind == "imagenet"
    res = load_config(["scale=paper_residual"])  # the working model on the paper's data, by name
    assert res.model.kind == "residual" and res.loss_weights.preset == "tuned" and "pets" in res.test_sets
    assert isinstance(build_model(res, 2), SRVAE)
    assert load_config().model.kind == "residual"  # quick scale keeps the working model


def test_cli_print_config_of_scale_paper(capsys):
    from lossnet.cli import build_parser

    args = build_parser().parse_args(["srvae", "scale=paper", "--print-config"])
    args.func(args)
    out = capsys.readouterr().out
    for line in ("kind: dfc", "normalize: imagenet", "preset: paper_literal", "kl_reduction: sum", "data: pets",
                 "sampling: resize", "- pets", "pets_test_size: 128", "latent: 100", "layer: 15"):
        assert line in out, line


def test_paper_config_errors(tmp_path):
    from lossnet.errors import ConfigError
    from lossnet.experiments.sr_vae import load_config, run_sr_vae

    with pytest.raises(ConfigError, match="multiple of factor x 2"):
        load_config(["scale=paper", "patch=80"])
    with pytest.raises(ConfigError, match="model.kind must be one of"):
        load_config(["model.kind=global"])
    with pytest.raises(ConfigError, match="kl_reduction"):
        load_config(["kl_reduction=batch"])
    with pytest.raises(ConfigError, match="pets_root"):  # the Pet test split needs the data; nothing written
        run_sr_vae(["test_sets=[pets]"], out=tmp_path / "out")
    assert not (tmp_path / "out" / "results.jsonl").exists()


def test_kl_reduction_sum_is_per_image():
    from lossnet.experiments.sr_vae_task import SRVAETask
    from lossnet.models.sr_vae import GlobalSRVAE

    torch.manual_seed(0)
    m = GlobalSRVAE(2, lr_size=16, latent=6, widths=[4, 4, 4, 4]).eval()
    batch = {"lr": torch.rand(3, 3, 16, 16), "hr": torch.rand(3, 3, 32, 32)}
    w = {"reconstruction": 0.001, "kl": 1.0, "perceptual": 0.0}
    with torch.no_grad():
        mean = SRVAETask(m, w, kl_reduction="mean").eval().terms(batch)["kl"]
        total = SRVAETask(m, w, kl_reduction="sum").eval().terms(batch)["kl"]
    assert float(mean) > 0 and torch.allclose(total, 6 * mean)


def test_resize_sampling(tmp_path):
    from lossnet.data.pets import pets_training_data
    from lossnet.data.sr import resize_square

    img = torch.arange(3 * 20 * 30, dtype=torch.float32).view(3, 20, 30).remainder(256).to(torch.uint8)
    out = resize_square([img, img[:, :10]], 16)
    assert out.shape == (2, 3, 16, 16) and out.dtype == torch.uint8
    flat = torch.full((3, 20, 30), 77, dtype=torch.uint8)
    assert torch.all(resize_square([flat], 8) == 77)
    root = _fake_pets(tmp_path / "pets")
    train, val, info = pets_training_data(root, factor=2, patch=32, n_patches=99, val_images=2, sampling="resize")
    assert train["hr"].shape == (6, 3, 32, 32) and train["lr"].shape == (6, 3, 16, 16)  # every image once
    assert val["hr"].shape == (2, 3, 32, 32) and info["sampling"] == "resize" and info["n_patches"] == 6


def test_run_sr_vae_paper_model_on_pets(tmp_path):
    from lossnet.experiments import sr_vae
    from lossnet.models.sr_vae import GlobalSRVAE

    pets = _fake_pets(tmp_path / "oxford-iiit-pet")
    for i in range(2):
        _png(tmp_path / "sr" / "CSet5" / f"t{i}.png", 40, 36, 20 + i)
    over = ["scale=paper", f"pets_root={pets}", f"sr_root={tmp_path / 'sr'}", "test_sets=[pets,set5]",
            "examples=[set5/t0]", "patch=32", "pets_test_size=32", "val_images=2", "crop=16",
            "perceptual.arch=squeezenet1_1", "perceptual.layer=3", "perceptual.weights=random",
            "model.latent=8", "model.widths=[4,8,8,8]", "train.epochs=1", "train.batch_size=4", "device=cpu"]
    report = sr_vae.run_sr_vae(over, out=tmp_path / "out")
    rows = [json.loads(x) for x in (tmp_path / "out" / "results.jsonl").read_text().splitlines()]
    assert sorted(r["run"] for r in rows) == ["bicubic", "no_perceptual", "perceptual"]
    expected = sum(p.numel() for p in GlobalSRVAE(2, 16, 8, [4, 8, 8, 8]).parameters())
    for r in rows:
        for s in ("pets", "set5"):
            assert r[f"{s}_psnr_x2"] > 3 and 0 < r[f"{s}_ssim_x2"] <= 1
        assert [im["name"] for im in r["images"]["pets"]] == ["Abyssinian_5", "beagle_5"]  # the test list
        if r["run"] != "bicubic":
            assert r["model_kind"] == "dfc" and r["parameters"] == expected and r["epochs_run"] == 1
            assert r["data"]["sampling"] == "resize" and r["data"]["train_images"] == 6
            assert r["weights"]["reconstruction"] == 0.001 and r["weights"]["kl"] == 1.0
    text = report.read_text()
    assert "pets PSNR" in text and "set5 PSNR" in text and "SR-VAE dfc perceptual (paper_literal" in text
