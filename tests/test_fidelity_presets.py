"""``scale=paper`` follows the authors' code (guspih/Perceptual-Autoencoders): LunarLander rollouts
as ``gym_datagenerator.py`` generated them, LeakyReLU probes, and benchmark 4 with paper B's
probe/loss-network conventions; quick scale keeps its former settings (and cell ids)."""

from __future__ import annotations

import pytest

from lossnet.benchmarks import autoencoding as b4
from lossnet.benchmarks.sweep import load_sweep_config
from lossnet.errors import ConfigError
from lossnet.experiments.runner import load_config
from lossnet.schema import identity
from lossnet.schema.sections import Probe

OPTIONS = ("standardize", "standardize_targets", "classification_loss")
"""fit_probe_grid options a probe section may leave unset."""


@pytest.mark.parametrize("experiment", ["paper_a", "paper_b"])
def test_paper_scale_uses_the_authors_rollouts(experiment):
    assert load_config(experiment, ["scale=paper"]).lunarlander.rollout == "authors"
    assert load_config(experiment).lunarlander.rollout == "reset_on_done"
    cfg = load_config(experiment, ["scale=paper", "lunarlander.rollout=reset_on_done"])
    assert cfg.lunarlander.rollout == "reset_on_done"  # the other semantics stays a named option


def test_paper_b_paper_scale_probes_are_leaky():
    assert load_config("paper_b", ["scale=paper"]).probe.grid == "paper_b_leaky"
    assert load_config("paper_b").probe.grid == "paper_b"


def _b4(*over):
    return load_sweep_config("autoencoding", ["loss_net=alexnet", "layer=S", *over])


def test_benchmark4_paper_scale_has_paper_b_conventions():
    cfg = _b4("scale=paper")
    options = {k: identity(cfg.probe, Probe).get(k) for k in OPTIONS}
    assert options == {"standardize": False, "standardize_targets": True, "classification_loss": "mse"}
    assert cfg.probe.grid == "paper_b_leaky" and cfg.probe.batch_size == 512 and cfg.encoder.batch_size == 512
    assert cfg.normalize == "none" and cfg.lunarlander.rollout == "authors"
    net = b4.make_loss_network(cfg, "alexnet", "S", None)
    assert net.normalize is None  # [0, 1] images straight into the loss network, as paper B's code
    ident = b4.identity(cfg, {"dataset": "svhn"})
    assert ident["normalize"] == "none" and ident["probe"]["grid"] == "paper_b_leaky"
    assert ident["probe"]["classification_loss"] == "mse" and ident["probe"]["standardize"] is False
    ll = b4.identity(b4.dataset_cfg(cfg, "lunarlander"), {"dataset": "lunarlander"})
    assert ll["data"]["collection"]["rollout"] == "authors"


def test_benchmark4_quick_scale_keeps_its_settings_and_ids():
    cfg = _b4()
    assert not set(OPTIONS) & set(identity(cfg.probe, Probe)) and cfg.probe.grid == "paper_b"
    assert b4.make_loss_network(cfg, "alexnet", "S", None).normalize == "imagenet"
    ident = b4.identity(cfg, {"dataset": "lunarlander"})
    # the keys added for scale=paper do not enter the ids of quick-scale cells
    assert "normalize" not in ident and "rollout" not in ident["data"]["collection"]
    assert set(ident["probe"]) == {"grid", "epochs", "batch_size", "lr", "val_fraction"}
    assert ident["probe"] == identity(cfg.probe, Probe)
    other = b4.identity(_b4("normalize=none"), {"dataset": "lunarlander"})
    assert other != ident


def test_benchmark4_rejects_an_unknown_normalisation():
    with pytest.raises(ConfigError, match="normalize must be one of none, imagenet, lpips"):
        b4.check(_b4("normalize=vgg"))


def test_benchmark4_prepare_generates_the_configured_rollouts(tmp_path, monkeypatch):
    import lossnet.data.lunarlander as ll

    seen = {}
    monkeypatch.setattr(ll, "generate_collection", lambda out, **kw: seen.update(kw))
    b4.prepare(_b4("scale=paper", "datasets=[lunarlander]"), tmp_path)
    assert seen["rollout"] == "authors"
    b4.prepare(_b4(), tmp_path)
    assert seen["rollout"] == "reset_on_done"


def test_experiments_generate_the_configured_rollouts(tmp_path):
    """paper A / B read ``lunarlander.rollout`` into the collection, its meta.json and the data
    identity (cell ids of ``reset_on_done`` collections unchanged)."""
    import json

    from lossnet.data.parts import load_data

    tiny = ["lunarlander.rollouts=[1,2,2]", "lunarlander.steps=6", "workers=1", "progress=false"]
    data = load_data(load_config("paper_b", ["scale=paper", *tiny]), tmp_path / "a")
    meta = json.loads((tmp_path / "a" / "collection" / "meta.json").read_text())
    assert meta["rollout"] == "authors" and data.identity["collection"]["rollout"] == "authors"
    data = load_data(load_config("paper_b", tiny), tmp_path / "b")
    assert json.loads((tmp_path / "b" / "collection" / "meta.json").read_text())["rollout"] == "reset_on_done"
    assert "rollout" not in data.identity["collection"]
