"""FitConfig.from_section: the one constructor of training settings from a config section."""

from dataclasses import asdict, fields

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from omegaconf import OmegaConf

from lossnet.schema.files import PaperADecoder
from lossnet.schema.sections import Encoder, Fit, SrTrain
from lossnet.train.engine import FIT_OPTIONS, FitConfig


@pytest.mark.parametrize("section", [Fit, Encoder, SrTrain])
def test_training_sections_are_fit_settings(section):
    """Every setting of a training section that FitConfig knows arrives, with its value."""
    cfg = FitConfig.from_section(section())
    names = {f.name for f in fields(FitConfig)}
    shared = [f.name for f in fields(section) if f.name in names]
    assert set(shared) >= {"epochs", "batch_size", "lr", "weight_decay", "precision", "logger"}
    for k in shared:
        want = getattr(section(), k)
        assert getattr(cfg, k) == (want if want is not None else getattr(FitConfig(), k))


@settings(max_examples=25, deadline=None)
@given(epochs=st.integers(1, 1000), batch=st.integers(1, 4096), lr=st.integers(1, 5) | st.floats(1e-6, 1.0),
       patience=st.none() | st.integers(1, 50), precision=st.sampled_from(["32", "bf16", 32]),
       seed=st.integers(0, 2**32 - 1))
def test_values_are_cast_and_null_keeps_the_default(epochs, batch, lr, patience, precision, seed):
    sec = OmegaConf.create({"epochs": epochs, "batch_size": batch, "lr": lr, "patience": patience,
                            "precision": precision, "hidden": 7, "gamma": 2.0})  # hidden, gamma: not fit settings
    cfg = FitConfig.from_section(sec, seed=seed, device=None, desc="x")
    assert (cfg.epochs, cfg.batch_size, cfg.patience, cfg.seed, cfg.desc) == (epochs, batch, patience, seed, "x")
    assert type(cfg.lr) is float and cfg.lr == float(lr)
    assert cfg.precision == str(precision) and cfg.device is None
    assert FitConfig.from_section(dict(sec), seed=seed, desc="x") == cfg  # a plain mapping alike


def test_extra_wins_and_options_give_only_the_fast_paths():
    enc = Encoder(epochs=3, weight_decay=0.5, patience=2, precision="bf16", channels_last=True, logger="none",
                  deterministic=True)
    dec = PaperADecoder(epochs=9, lr=0.01)
    cfg = FitConfig.from_section(dec, options=enc, seed=4, epochs=11)
    assert (cfg.epochs, cfg.lr, cfg.seed, cfg.batch_size) == (11, 0.01, 4, dec.batch_size)
    assert (cfg.weight_decay, cfg.patience) == (0.0, None)  # the encoder's training settings stay out
    assert {k: getattr(cfg, k) for k in FIT_OPTIONS} == {k: getattr(enc, k) for k in FIT_OPTIONS}


def test_none_section_is_the_defaults():
    assert asdict(FitConfig.from_section(None)) == asdict(FitConfig())


def test_encoder_config_from_the_encoder_section():
    from lossnet.train.procedures import EncoderConfig

    sec = OmegaConf.create({"epochs": 3, "gamma": 1, "hidden": 16, "pixel_loss": "l1", "precision": "bf16"})
    enc = EncoderConfig.from_section(sec, procedure="I-F-FP", z=8, variational=True)
    assert enc == EncoderConfig(procedure="I-F-FP", z=8, variational=True, gamma=1.0, hidden=16, pixel_loss="l1")
    assert type(enc.gamma) is float
    assert EncoderConfig.from_section(Encoder(), z=4) == EncoderConfig(z=4, gamma=Encoder().gamma)
