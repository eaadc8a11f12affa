"""Typed schemas (lossnet.schema): every config file, scale and variant matches its schema, and every
range/choice is one ConfigError naming the key, before any data are read."""

from __future__ import annotations

import pytest

from lossnet import config, schema
from lossnet.errors import ConfigError


def _presets():
    for name in schema.SCHEMAS:
        base = config.load(name)
        for scale in list(base.get("scales") or {}) or [None]:
            yield name, scale


@pytest.mark.parametrize("name,scale", list(_presets()))
def test_every_config_file_and_scale_matches_its_schema(name, scale):
    from omegaconf import OmegaConf

    cfg = config.structured(name, scale)  # merged into the schema and range-checked
    plain = OmegaConf.to_container(cfg, resolve=False)
    for key, tp, f in schema.leaves(schema.SCHEMAS[name]):  # every leaf present and valid
        node = plain
        for part in key.split("."):
            node = node[part]
        schema.check_value(key, node, tp, f)


@pytest.mark.parametrize("name", ["paper_a", "paper_b"])
def test_every_variant_matches_the_schema(name):
    variants = config.load(name).get("variants") or {}
    for v in variants.values():
        config.validate(name, v)


def test_schema_rejects_a_yaml_key_it_does_not_know():
    from omegaconf import OmegaConf

    with pytest.raises(Exception):
        OmegaConf.merge(OmegaConf.structured(schema.SCHEMAS["demo"]), {"nonsense": 1})


@pytest.mark.parametrize("overrides,needle", [
    (["z=[0]"], "z=[0]: each value of z must be an integer >= 1"),
    (["encoder.gamma=-1"], "encoder.gamma must be a number >= 0.0"),
    (["encoder.batch_size=0"], "encoder.batch_size must be an integer >= 1"),
    (["encoder.patience=-2"], "encoder.patience"),
    (["threads=-3"], "threads must be an integer >= 0"),
    (["device=tpu"], "device='tpu': unknown device 'tpu'"),
    (["encoder.lr=nan"], "encoder.lr must be a number"),
    (["lunarlander.size=100000"], "lunarlander.size must be an integer >= 8 and <= 512"),
])
def test_run_override_out_of_range_is_one_error_naming_the_key(overrides, needle):
    from lossnet.experiments.runner import load_config

    with pytest.raises(ConfigError) as e:
        load_config("paper_b", overrides)
    assert needle in str(e.value) and "\n" not in str(e.value)


def test_sweep_override_out_of_range():
    from lossnet.benchmarks.sweep import load_sweep_config

    with pytest.raises(ConfigError, match="n_patches must be an integer >= 1"):
        load_sweep_config("similarity", ["n_patches=0"])


def test_schema_probe_grids_are_the_registered_grids():
    """The schema (lowest layer, cannot import eval) lists the probe grids by name: the same names."""
    from lossnet.eval.probe_specs import GRIDS
    from lossnet.schema.sections import GRIDS as SCHEMA_GRIDS

    assert set(SCHEMA_GRIDS) == set(GRIDS)
