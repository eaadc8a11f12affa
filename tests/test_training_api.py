"""The training API validates its inputs like the losses do (issue 22 item 5): one clear
UserError per bad input, no internal traceback, no silently wrong result."""

from __future__ import annotations

import pytest
import torch

from lossnet.errors import UserError
from lossnet.train.engine import FitConfig
from lossnet.train.procedures import EncoderConfig, train_encoder


def _images(n=8, h=64, w=64):
    return torch.randint(0, 256, (n, 3, h, w), generator=torch.Generator().manual_seed(0), dtype=torch.uint8)


_FIT = FitConfig(epochs=1, batch_size=4, progress=False, logger="none")


@pytest.fixture(scope="module")
def pw():
    return train_encoder(_images(), EncoderConfig("I-I-PW", z=4), _FIT, loss_net=None)


def test_bad_input_i_i_pw_without_a_loss_network(pw):
    """train_encoder(I-I-PW, loss_net=None) -> trains and embeds (it reads no features)"""
    assert pw.embed(_images(3)).shape == (3, 4)
    assert pw.loss_net["arch"] is None


@pytest.mark.parametrize("proc", ["I-I-PS", "F-I-PW", "F-I-PS", "I-F-FP", "F-F-FP"])
def test_bad_input_loss_net_none_for_a_procedure_reading_features(proc):
    """train_encoder(..., loss_net=None) for I-I-PS, F-I-PW, F-I-PS, I-F-FP, F-F-FP -> one UserError 'needs a loss network'"""
    with pytest.raises(UserError, match=f"{proc} needs a loss network"):
        train_encoder(_images(), EncoderConfig(proc, z=4), _FIT, loss_net=None)


@pytest.mark.parametrize("images, match", [
    (_images(0), "at least 2 images"),
    (_images(1), "at least 2 images"),
    (_images(4, 64, 80), "square"),
    (_images(4, 70, 70), "64 \\+ 16n"),
    (_images(4).float() / 255, "must be uint8"),
    (_images(4).float(), "0..255 values"),
    (_images(4)[:, :1], r"\(N, 3, S, S\)"),
])
def test_bad_input_training_images(images, match):
    """train_encoder on 0 or 1 images, 64x80, 70x70, [0, 1] floats, 1-channel -> one UserError saying what to fix"""
    with pytest.raises(UserError, match=match):
        train_encoder(images, EncoderConfig("I-I-PW", z=4), _FIT, loss_net=None)


def test_bad_input_embed_0_255_floats_and_float64(pw):
    """TrainedEncoder.embed of 0..255 floats / float64 in [0, 1] / 80 px / NaN / 0 images -> refused '0..255 values' / same embedding as uint8 / refused / refused / (0, z)"""
    x = _images(3)
    ref = pw.embed(x)
    with pytest.raises(UserError, match="0..255 values"):
        pw.embed(x.float())
    assert torch.allclose(pw.embed(x.double() / 255), ref, atol=1e-5)  # float64 works, same result
    with pytest.raises(UserError, match="64x64"):
        pw.embed(_images(2, 80, 80))
    with pytest.raises(UserError, match="must be in \\[0, 1\\]"):
        pw.embed(torch.full((1, 3, 64, 64), float("nan")))
    assert pw.embed(_images(0)).shape == (0, 4)
