"""Paper A/B fidelity settings: paper A's LunarLander layout, the configs' paper defaults (probe
standardisation, classification loss, loss-network normalisation) and the Simple-CNN baseline."""

from __future__ import annotations

import pytest
import torch
from omegaconf import OmegaConf

from lossnet.data.lunarlander import generate_collection, load_run
from lossnet.data.parts import load_data
from lossnet.errors import ConfigError
from lossnet.experiments.runner import load_config


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory):
    return generate_collection(tmp_path_factory.mktemp("ll") / "c2", (2, 3), steps=40, workers=1, progress=False)


def _cfg(name, collection, *extra):
    return load_config(name, [f"collection={collection}", "progress=false", "lunarlander.rollouts=[2,3]",
                              "lunarlander.steps=40", *extra])


def test_paper_a_layout_is_the_default_and_splits_run2(two_runs, tmp_path):
    cfg = _cfg("paper_a", two_runs, "data.max_encoder=null", "data.max_probe=null", "data.max_test=null")
    assert cfg.lunarlander.layout == "paper_a"
    assert list(load_config("paper_a", ["scale=paper"]).lunarlander.rollouts) == [700, 700]  # 1400 rollouts
    d = load_data(cfg, tmp_path)
    r1, r2 = load_run(two_runs, 1), load_run(two_runs, 2)
    assert torch.equal(d.encoder_images, r1.images) and len(r1) == 2 * 40  # unaltered
    n_test = round(0.2 * len(r2))
    assert len(d.test_images) == n_test and len(d.probe_images) == len(r2) - n_test
    # the filtered run 2, in frame order: probe = first 80 %, test = last 20 %
    assert torch.equal(torch.cat([d.probe_images, d.test_images]), r2.images)
    assert torch.equal(torch.cat([d.probe_targets, d.test_targets]), r2.positions)
    assert d.identity["probe_split"] == "run2_probe" and d.identity["test_split"] == "run2_test"
    assert d.identity["collection"]["layout"] == "paper_a"
    assert d.identity["collection"]["offscreen_tolerance"] == 18.0


def test_paper_b_keeps_three_runs_and_layout_errors(two_runs, tmp_path):
    assert load_config("paper_b", []).lunarlander.layout == "paper_b"
    with pytest.raises(ConfigError, match="three ints"):
        load_data(_cfg("paper_b", two_runs), tmp_path)
    with pytest.raises(ConfigError, match="layout must be one of"):
        load_data(_cfg("paper_a", two_runs, "lunarlander.layout=paper_c"), tmp_path)
    with pytest.raises(ConfigError, match="run2_probe"):
        load_data(_cfg("paper_a", two_runs, "data.test_split=run3"), tmp_path)
    with pytest.raises(ConfigError, match="offscreen_tolerance"):  # the existing collection differs
        load_data(_cfg("paper_a", two_runs, "lunarlander.offscreen_tolerance=0"), tmp_path)


@pytest.mark.parametrize("name", ["paper_a", "paper_b"])
def test_paper_presets_follow_the_authors_code(name):
    """guspih/Perceptual-Autoencoders: probes on raw embeddings with MSE (one-hot targets for
    classes), [0, 1] images into AlexNet without ImageNet normalisation."""
    from lossnet.schema import identity
    from lossnet.schema.sections import Probe

    cfg = load_config(name, ["scale=paper"])
    assert identity(cfg.probe, Probe).items() >= {"standardize": False, "standardize_targets": True,
                                                  "classification_loss": "mse"}.items()
    assert cfg.loss_net.normalize == "none"


def test_loss_net_normalize_option_changes_the_features():
    from lossnet.runs.loss_nets import build_loss_net, loss_net_identity

    base = {"name": "paper", "layers": None, "sigmoid": None, "weights": "random", "init_seed": 0}
    none = build_loss_net(OmegaConf.create({**base, "normalize": "none"}))
    imnet = build_loss_net(OmegaConf.create({**base, "normalize": "imagenet"}))
    default = build_loss_net(OmegaConf.create(base))  # key absent: ImageNet (benchmarks' configs)
    assert none.normalize is None and imnet.normalize == "imagenet" == default.normalize
    assert loss_net_identity(none) != loss_net_identity(imnet)  # enters cell ids and the cache key
    x = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        a, b = none(x)[0], imnet(x)[0]
    assert a.shape == b.shape and not torch.allclose(a, b, atol=1e-3)
    with pytest.raises(ConfigError, match="normalize"):
        build_loss_net(OmegaConf.create({**base, "normalize": "unit"}))


def test_simple_cnn_learns_positions_end_to_end():
    from lossnet.models.simple_cnn import SimpleCNN, SimpleCNNTask
    from lossnet.train.engine import FitConfig, fit

    g = torch.Generator().manual_seed(0)
    n = 48
    pos = torch.randint(8, 56, (n, 2), generator=g)
    images = torch.zeros(n, 3, 64, 64, dtype=torch.uint8)
    for i, (x, y) in enumerate(pos.tolist()):
        images[i, :, y - 3 : y + 3, x - 3 : x + 3] = 255
    t = pos.float()
    mean, std = t.mean(0), t.std(0)
    torch.manual_seed(0)
    model = SimpleCNN(2, z=16, hidden=256)
    assert model.head[0].out_features == 256 and model.encoder.z == 16
    task = SimpleCNNTask(model, "regression", mean, std)
    before = (task.predict(images) - t).norm(dim=1).mean()
    fit(task, {"image": images, "target": (t - mean) / std}, FitConfig(epochs=8, batch_size=16, lr=3e-3,
                                                                       progress=False, device="cpu"))
    after = (task.predict(images) - t).norm(dim=1).mean()
    assert after < 0.6 * before, (before, after)
    with pytest.raises(ValueError, match="loss"):
        SimpleCNNTask(model, "nll")


def test_benchmark2_paper_scale_is_the_systematic_analysis_protocol():
    """Sec. IV-B: 10k MS-COCO train images (one 288 px patch each, seeded, no repeats), best-PSNR
    selection on 100 MS-COCO val images, x4 and x8 on Set5, Set14 and BSD100, the 14 architectures."""
    from lossnet.benchmarks.sweep import load_sweep_config

    cfg = load_sweep_config("super_resolution", ["scale=paper"])
    assert cfg.train_images == cfg.n_patches == 10000 and cfg.patch == 288
    assert cfg.val_root is None and cfg.val_images == 100  # a separate folder is required (val_root=DIR)
    assert list(cfg.test_sets) == ["set5", "set14", "bsd100"] and list(cfg.factors) == [4, 8]
    assert len(cfg.loss_net) == 14 and "efficientnet_lite0" not in cfg.loss_net
    quick = load_sweep_config("super_resolution")  # the practical default, documented as such
    assert quick.val_root == "holdout" and quick.train_images is None and list(quick.test_sets)[-1] == "cbsd68"
