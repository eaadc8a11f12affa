"""A cell's identity derived from its typed config section (lossnet.schema.identity): each key listed
once, in the schema; the ids of today's configs unchanged."""

from dataclasses import fields

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from omegaconf import OmegaConf

from lossnet.experiments.runner import load_config
from lossnet.schema import identity
from lossnet.schema.files import Massachusetts, PaperADecoder, Synthetic, UNet
from lossnet.schema.sections import Encoder, Fit, Probe

SECTIONS = [Fit, Encoder, Probe, PaperADecoder, Synthetic, Massachusetts, UNet]


def _rule(f) -> str:
    return f.metadata.get("identity", "always")


def test_known_values_of_the_shipped_configs():
    """What encoder_settings / probe_settings returned before (the cell ids of existing runs)."""
    cfg = load_config("paper_a")
    assert identity(cfg.encoder, Encoder) == {"epochs": 4, "batch_size": 32, "lr": 0.001, "weight_decay": 0.0,
                                              "val_fraction": 0.2, "patience": None, "hidden": 2048,
                                              "pixel_loss": "mse", "gamma": 0.01}
    assert identity(cfg.probe, Probe) == {"grid": "paper_a", "epochs": 100, "batch_size": 64, "lr": 0.001,
                                          "val_fraction": 0.2, "linear_grid": "linear", "standardize": False,
                                          "standardize_targets": True, "classification_loss": "mse"}
    cfg = load_config("paper_b", ["scale=paper", "encoder.lr=1", "encoder.patience=3"])
    enc = identity(cfg.encoder, Encoder, drop=("gamma",))
    assert enc == {"epochs": 50, "batch_size": 512, "lr": 1.0, "weight_decay": 0.0, "val_fraction": 0.2,
                   "patience": 3, "hidden": 2048, "pixel_loss": "mse"}
    assert type(enc["lr"]) is float  # lr=1 and lr=1.0 are one cell


def test_unset_optional_keys_stay_out():
    """A probe section without the later keys (benchmark 4 quick) keeps its former ids."""
    sec = OmegaConf.create({"grid": "paper_b", "epochs": 100, "batch_size": 64, "lr": 0.001, "val_fraction": 0.2})
    assert identity(sec, Probe) == dict(sec)
    assert identity(OmegaConf.merge(sec, {"standardize_inputs": None}), Probe) == dict(sec)


@pytest.mark.parametrize("schema", SECTIONS)
def test_every_key_is_the_schemas(schema):
    names = {f.metadata.get("id_key", f.name) for f in fields(schema) if _rule(f) != "never"}
    assert set(identity(schema())) <= names
    assert set(identity(schema())) >= {f.name for f in fields(schema) if _rule(f) == "always"}


_VALUES = {bool: st.booleans(), int: st.integers(0, 10**6), float: st.floats(0, 1e3, allow_nan=False),
           str: st.text("abcxyz", min_size=1, max_size=5)}


@settings(max_examples=60, deadline=None)
@given(schema=st.sampled_from(SECTIONS), data=st.data())
def test_runtime_keys_never_change_the_identity_and_the_others_do(schema, data):
    """Generated: a new value of a key marked ``never`` keeps the identity; of any other key changes it."""
    base = schema()
    f = data.draw(st.sampled_from([f for f in fields(schema) if type(getattr(base, f.name)) in _VALUES]))
    old = getattr(base, f.name)
    new = data.draw(_VALUES[type(old)].filter(lambda v: v != old))
    changed = {**{g.name: getattr(base, g.name) for g in fields(schema)}, f.name: new}
    same = identity(changed, schema) == identity(base)
    assert same == (_rule(f) == "never")
