"""Resource blow-ups and exported-encoder integrity: checkpoints, decoder size warning, export checksum."""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest
import torch

from lossnet import cli
from lossnet.train.cache import FeatureCache
from lossnet.train.engine import FitConfig
from lossnet.train.procedures import (EncoderConfig, LargeModelWarning, build_autoencoder, embed_images,
                                      feature_decoder_params, get_procedure, load_encoder, train_encoder)
from lossnet.zoo import ChecksumError, LossNetwork


@pytest.fixture(scope="module")
def tiny():
    g = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (12, 3, 64, 64), generator=g, dtype=torch.uint8)
    torch.manual_seed(0)
    net = LossNetwork("alexnet", layers=["E"], weights=None, sigmoid=True)
    return images, net


def test_hostile_ps_checkpoint_holds_no_loss_network_weights(tiny, tmp_path):
    """I-I-PS training checkpoint -> last.pt (task and best_state) has no loss-network keys, only the autoencoder's."""
    images, net = tiny
    tr = train_encoder(images, EncoderConfig(procedure="I-I-PS", z=4), FitConfig(epochs=1, batch_size=6, progress=False),
                       loss_net=net, cache=FeatureCache(directory=None, progress=False), ckpt_dir=tmp_path)
    state = torch.load(tmp_path / "last.pt", map_location="cpu", weights_only=True)
    model_keys = {f"model.{k}" for k in tr.model.state_dict()}
    assert set(state["task"]) == model_keys
    assert set(state["best_state"]) == model_keys
    assert not any("loss_net" in k or "body." in k for k in state["task"])


def test_hostile_huge_feature_decoder_warns_with_size_and_remedy(monkeypatch):
    """I-F-FP decoder over the parameter threshold -> one LargeModelWarning with M parameters, GB and 'later ... layer'."""
    proc, cfg = get_procedure("I-F-FP"), EncoderConfig(procedure="I-F-FP", z=8, hidden=64)
    n = feature_decoder_params(8, 5000, 64)
    with pytest.warns(LargeModelWarning, match=r"0M parameters \(0\.0 GB.*later loss-network layer.*fp_max_dim") as rec:
        model = build_autoencoder(proc, cfg, 64, 5000, warn_params=n - 1)
    assert len(rec) == 1
    assert sum(p.numel() for p in model.decoder.parameters()) == n
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        build_autoencoder(proc, cfg, 64, 5000, warn_params=n)  # at the threshold: silent
        build_autoencoder(get_procedure("I-I-PW"), cfg, 64, 10**9, warn_params=0)  # no feature decoder
    monkeypatch.setenv("LOSSNET_DECODER_WARN_PARAMS", "1000")
    with pytest.warns(LargeModelWarning, match="now 1,000"):
        build_autoencoder(proc, cfg, 64, 5000)
    monkeypatch.setenv("LOSSNET_DECODER_WARN_PARAMS", "lots")
    with pytest.raises(ValueError, match="LOSSNET_DECODER_WARN_PARAMS"):
        build_autoencoder(proc, cfg, 64, 5000)


def test_vgg11_early_layer_decoder_would_warn_by_default():
    """vgg11 E at 64 px (64 x 64 x 64 features), z 64, hidden 2048 -> 537M parameters, over the default threshold."""
    from lossnet.train import procedures as P

    n = feature_decoder_params(64, 64 * 64 * 64, 2048)
    assert round(n / 1e6) == 537
    assert n > P.DECODER_WARN_PARAMS


def _export(tiny, tmp_path) -> Path:
    images, net = tiny
    tr = train_encoder(images, EncoderConfig(procedure="I-I-PW", z=4), FitConfig(epochs=1, batch_size=6, progress=False),
                       loss_net=net, cache=FeatureCache(directory=None, progress=False))
    return tr.export(tmp_path / "enc")


def test_hostile_bitflipped_encoder_export_is_refused(tiny, tmp_path):
    """one flipped bit in encoder.safetensors -> ChecksumError naming the file and what to do."""
    d = _export(tiny, tmp_path)
    images = tiny[0][:2]
    ok = embed_images(d, images)
    assert ok.shape == (2, 4)
    w = d / "encoder.safetensors"
    data = bytearray(w.read_bytes())
    data[len(data) - 5] ^= 0x01
    w.write_bytes(bytes(data))
    with pytest.raises(ChecksumError, match=r"encoder\.safetensors.*config\.json.*re-run `lossnet pretrain`"):
        embed_images(d, images)
    with pytest.raises(ChecksumError):
        load_encoder(d)


def test_hostile_export_missing_file_is_one_clear_error(tiny, tmp_path):
    """export folder without encoder.safetensors -> FileNotFoundError naming it; no checksum -> warning."""
    d = _export(tiny, tmp_path)
    import json

    cfg = json.loads((d / "config.json").read_text())
    cfg.pop("encoder_sha256")
    (d / "config.json").write_text(json.dumps(cfg))
    with pytest.warns(UserWarning, match="no encoder_sha256"):
        load_encoder(d)
    (d / "encoder.safetensors").unlink()
    with pytest.raises(FileNotFoundError, match="encoder.safetensors is missing"):
        load_encoder(d)


def test_pretrain_drops_checkpoint_unless_keep_checkpoint(tmp_path, capsys, random_png_folder):
    """`lossnet pretrain` -> OUT/checkpoint removed after export; with --keep-checkpoint last.pt stays."""
    folder = random_png_folder(10, name="{i}.png")
    common = ["pretrain", "--images", str(folder), "--procedure", "I-I-PW", "--loss-net", "alexnet", "--layer", "E",
              "--epochs", "1", "--batch-size", "5", "--z", "4"]
    assert cli.main([*common, "--out", str(tmp_path / "a")]) == 0
    assert (tmp_path / "a" / "encoder.safetensors").exists() and not (tmp_path / "a" / "checkpoint").exists()
    assert cli.main([*common, "--out", str(tmp_path / "b"), "--keep-checkpoint"]) == 0
    assert (tmp_path / "b" / "checkpoint" / "last.pt").exists()
