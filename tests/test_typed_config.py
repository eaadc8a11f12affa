"""config.load_typed / config.typed: a resolved config as its schema's dataclasses, values typed."""

from dataclasses import fields, is_dataclass, replace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lossnet import config, schema
from lossnet.errors import ConfigError
from lossnet.schema.sections import Encoder, Probe


@pytest.mark.parametrize("name", sorted(schema.SCHEMAS))
def test_every_config_loads_as_its_schema(name):
    cfg = config.load_typed(name)
    assert type(cfg) is schema.SCHEMAS[name]
    for f in fields(cfg):  # sections are dataclasses too
        v = getattr(cfg, f.name)
        assert not hasattr(v, "_get_node"), f.name  # no DictConfig left anywhere
    assert config.typed(name, cfg) is cfg


@pytest.mark.parametrize("experiment", ["paper_a", "paper_b"])
@pytest.mark.parametrize("scale", ["quick", "paper"])
def test_same_settings_as_the_run_loader(experiment, scale):
    from lossnet.experiments.runner import load_config

    over = [f"scale={scale}", "encoder.epochs=2"]
    ours = config.load_typed(experiment, over)
    theirs = config.typed(experiment, load_config(experiment, over))
    assert replace(theirs, z=ours.z, out=ours.out) == ours  # z, out: filled in by the runner
    assert isinstance(ours.encoder, Encoder) and isinstance(ours.probe, Probe) and ours.encoder.epochs == 2


@pytest.mark.parametrize("bench", ["similarity", "super_resolution", "delineation", "autoencoding"])
def test_same_settings_as_the_sweep_loader(bench):
    from lossnet.benchmarks.sweep import load_sweep_config

    theirs = config.typed(bench, load_sweep_config(bench, ["loss_net=alexnet", "layer=S"]))
    ours = config.load_typed(bench, ["loss_net=alexnet", "layer=S"])
    assert replace(theirs, loss_net=ours.loss_net, layer=ours.layer, out=ours.out) == ours


@settings(max_examples=20, deadline=None)
@given(lr=st.integers(1, 9), epochs=st.integers(1, 1000))
def test_values_are_typed(lr, epochs):
    cfg = config.load_typed("paper_b", [f"encoder.lr={lr}", f"probe.epochs={epochs}"])
    assert type(cfg.encoder.lr) is float and cfg.encoder.lr == lr and cfg.probe.epochs == epochs
    assert is_dataclass(cfg.loss_net)


@pytest.mark.parametrize("over, match", [(["encoder.nope=1"], "nope"), (["encoder.epochs=x"], "epochs"),
                                         (["scale=huge"], "scale"), (["encoder.epochs=0"], "epochs")])
def test_bad_settings_are_one_config_error(over, match):
    with pytest.raises(ConfigError, match=match):
        config.load_typed("paper_b", over)


def test_typed_rejects_an_unknown_key():
    with pytest.raises(ConfigError, match="schema"):
        config.typed("similarity", {"data": "proxy", "nonsense": 1})


def test_benchmark1_reads_its_typed_settings():
    """Benchmark 1's id from the typed config: the same keys and values as before (its cell ids)."""
    from lossnet.benchmarks import similarity
    from lossnet.benchmarks.sweep import load_sweep_config

    cfg = load_sweep_config("similarity", ["loss_net=alexnet", "layer=S", "root=/tmp/x", "n_patches=5"])
    assert similarity.identity(cfg, {}) == {"data": "proxy", "n_patches": 5, "normalize": "imagenet",
                                            "root": "/tmp/x", "tasks": ["2afc", "jnd"]}
    assert similarity.identity(config.typed("similarity", cfg), {}) == similarity.identity(cfg, {})


def test_benchmark3_schema_names_the_iteration_weights_of_the_task():
    from dataclasses import fields as fields_of

    from lossnet.benchmarks.delineation_task import ITERATION_WEIGHTS
    from lossnet.schema.files import Delineation

    f = next(f for f in fields_of(Delineation) if f.name == "iteration_weights")
    assert tuple(f.metadata["choices"]) == ITERATION_WEIGHTS


def test_benchmark3_check_keeps_the_schema_ranges_and_the_unet_rule():
    from omegaconf import OmegaConf

    from lossnet.benchmarks import delineation as b3

    base = b3.load_defaults("quick")
    b3.check(base)
    b3.check(config.typed("delineation", base))  # a typed config alike
    for bad, msg in (({"mu": -1}, "mu"), ({"threshold": 1.5}, "threshold"), ({"unet": {"depth": 7}}, "depth"),
                     ({"synthetic": {"n_train": 3}}, "n_train"), ({"size": 100}, "divisible")):
        with pytest.raises(ConfigError, match=msg):
            b3.check(OmegaConf.merge(base, bad))


@pytest.mark.parametrize("name, over, key, want", [("super_resolution", "factors=4", "factors", [4]),
                                                   ("srvae", "test_sets=set5", "test_sets", ["set5"]),
                                                   ("paper_b", "z=8", "z", [8])])
def test_a_single_value_is_a_one_element_list(name, over, key, want):
    """As the validation allows (``factors=4``), so does the typed config; the resolved one is left as it is."""
    resolved = config.resolve(name, [over])
    assert getattr(config.typed(name, resolved), key) == want
    assert not isinstance(resolved[key], list) and resolved[key] == want[0]


def test_numbered_benchmark_names_resolve_and_unknown_names_are_config_errors():
    from lossnet import config
    from lossnet.errors import ConfigError

    assert type(config.load_typed("benchmark4")).__name__ == "Autoencoding"
    assert config.resolve("benchmark1").get("n_patches") == config.resolve("similarity").get("n_patches")
    with pytest.raises(ConfigError, match="no settings schema named 'nope'"):
        config.typed("nope", {})
