"""Benchmark 3: delineation metrics, U-Net, synthetic and MRD data, the benchmark cell."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from lossnet.data.roads import load_massachusetts_roads, synthetic_curvilinear
from lossnet.testing.roads import write_fake_massachusetts
from lossnet.eval.delineation import DelineationMeter, delineation_counts, delineation_scores
from lossnet.benchmarks import delineation as b3
from lossnet.benchmarks.delineation_task import iteration_weights
from lossnet.errors import ConfigError
from lossnet.models.unet import IterativeUNet, UNet

H = W = 64


def hline(row: int, c0: int, c1: int, shape=(H, W)) -> np.ndarray:
    """A 1-px horizontal line on row ``row``, columns c0..c1-1."""
    a = np.zeros(shape, bool)
    a[row, c0:c1] = True
    return a


# --------------------------------------------------------------------------------------------
# Metric
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("shift,matched", [(2, True), (3, True), (5, False)])
def test_shifted_line(shift, matched):
    ref = hline(10, 5, 55)
    s = delineation_scores(hline(10 + shift, 5, 55), ref, tolerance=3)
    assert s["n_reference"] == s["n_extracted"] == 50
    expect = 1.0 if matched else 0.0
    assert s["completeness"] == s["correctness"] == s["quality"] == expect


def test_half_line():
    ref, pred = hline(10, 5, 55), hline(10, 5, 30)
    s = delineation_scores(pred, ref, tolerance=0)
    assert (s["completeness"], s["correctness"], s["quality"]) == (0.5, 1.0, 0.5)
    # with rho = 3 the 3 reference pixels beyond the predicted end are matched too
    s = delineation_scores(pred, ref, tolerance=3)
    assert s["matched_reference"] == 28 and s["matched_extracted"] == 25
    assert s["completeness"] == pytest.approx(28 / 50)
    assert s["correctness"] == 1.0
    assert s["quality"] == pytest.approx(25 / (25 + 50 - 28))


def test_spurious_segment():
    ref = hline(10, 5, 55)
    pred = ref.copy()
    pred[30:50, 40] = True  # 20 px far (>= 20 px) from the reference
    s = delineation_scores(pred, ref, tolerance=3)
    assert s["n_extracted"] == 70
    assert s["completeness"] == 1.0
    assert s["correctness"] == pytest.approx(50 / 70)
    assert s["quality"] == pytest.approx(50 / 70)


def test_thick_maps_are_thinned():
    ref = hline(20, 5, 55)
    pred = np.zeros((H, W), np.float32)
    pred[18:23, 5:55] = 0.9  # a 5-px bar around the reference
    s = delineation_scores(pred, ref, tolerance=3)
    assert s["n_extracted"] < 60  # a centreline, not the 250-px bar
    assert s["completeness"] > 0.9 and s["correctness"] == 1.0
    no_thin = delineation_scores(pred, ref, tolerance=3, thin=False)
    assert no_thin["n_extracted"] == 250


def test_empty_cases():
    ref, empty = hline(10, 5, 55), np.zeros((H, W), bool)
    s = delineation_scores(empty, ref)
    assert s["completeness"] == 0.0 and s["quality"] == 0.0 and math.isnan(s["correctness"])
    s = delineation_scores(ref, empty)
    assert s["correctness"] == 0.0 and s["quality"] == 0.0 and math.isnan(s["completeness"])
    s = delineation_scores(empty, empty)
    assert all(math.isnan(s[k]) for k in ("completeness", "correctness", "quality"))
    assert delineation_scores(empty, empty, undefined=1.0)["quality"] == 1.0


def test_threshold_and_input_forms():
    ref = hline(10, 5, 55)
    half = ref.astype(np.float32) * 0.5
    assert delineation_scores(half, ref)["n_extracted"] == 0  # strictly above the threshold
    assert delineation_scores(half, ref, threshold=0.4)["quality"] == 1.0
    t = torch.from_numpy(ref).float()[None, None] * 0.9
    target255 = torch.from_numpy(ref.astype(np.uint8) * 255)[None, None]
    assert delineation_scores(t, target255)["quality"] == 1.0
    with pytest.raises(ValueError, match="same shape"):
        delineation_scores(t, ref[:32, :32])
    with pytest.raises(ValueError, match="tolerance"):
        delineation_scores(ref, ref, tolerance=-1)
    with pytest.raises(ValueError, match="one-channel"):
        delineation_scores(torch.zeros(1, 3, 8, 8), torch.zeros(1, 3, 8, 8))


def test_corpus_vs_per_image_aggregation():
    refs = np.stack([hline(10, 5, 55), hline(10, 5, 25)])
    preds = np.stack([hline(10, 5, 55), hline(10, 5, 15)])
    s = delineation_scores(preds, refs, tolerance=0)
    assert s["n_images"] == 2 and s["n_reference"] == 70
    assert s["completeness"] == pytest.approx(60 / 70)  # counts summed first
    assert s["mean_completeness"] == pytest.approx(0.75)  # mean of 1.0 and 0.5
    meter = DelineationMeter(tolerance=0)
    meter.update(preds[:1], refs[:1])
    meter.update(preds[1], refs[1])
    assert meter.compute()["completeness"] == pytest.approx(60 / 70)
    assert len(delineation_counts(preds, refs)) == 2


# --------------------------------------------------------------------------------------------
# U-Net
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("up", ["transpose", "bilinear"])
def test_unet_shapes(up):
    net = UNet(4, 1, base=4, depth=3, up=up)
    assert net(torch.rand(2, 4, 32, 48)).shape == (2, 1, 32, 48)
    with pytest.raises(ValueError, match="divisible by 8"):
        net(torch.rand(1, 4, 36, 32))
    with pytest.raises(ValueError, match=r"\(N, 4, H, W\)"):
        net(torch.rand(1, 3, 32, 32))


@pytest.mark.parametrize("detach", [False, True])
def test_iterative_unet_feeds_previous_output(detach):
    torch.manual_seed(0)
    model = IterativeUNet(UNet(4, 1, base=4, depth=2), iterations=3, detach=detach)
    seen = []
    model.unet.register_forward_pre_hook(lambda m, args: seen.append(args[0]))
    x = torch.rand(2, 3, 16, 16)
    outs = model(x)
    assert len(outs) == 3 and all(o.shape == (2, 1, 16, 16) for o in outs)
    assert torch.equal(seen[0][:, :3], x) and torch.all(seen[0][:, 3] == 0)
    torch.testing.assert_close(seen[1][:, 3:], torch.sigmoid(outs[0]))
    torch.testing.assert_close(seen[2][:, 3:], torch.sigmoid(outs[1]))
    assert seen[1][:, 3:].requires_grad != detach


# --------------------------------------------------------------------------------------------
# Data
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["roads", "cracks"])
def test_synthetic_generator(kind):
    a = synthetic_curvilinear(6, 64, seed=3, kind=kind)
    b = synthetic_curvilinear(6, 64, seed=3, kind=kind)
    assert a.images.shape == (6, 3, 64, 64) and a.masks.shape == (6, 1, 64, 64)
    assert a.images.dtype == a.masks.dtype == torch.uint8
    assert torch.equal(a.images, b.images) and torch.equal(a.masks, b.masks)
    assert torch.equal(synthetic_curvilinear(3, 64, seed=3, kind=kind).masks, a.masks[:3])  # prefix property
    assert not torch.equal(synthetic_curvilinear(6, 64, seed=4, kind=kind).images, a.images)
    assert set(a.masks.unique().tolist()) <= {0, 255}


def test_synthetic_structures_are_thin():
    from skimage.morphology import skeletonize

    for kind, (lo, hi), max_width in (("roads", (0.01, 0.15), 8.0), ("cracks", (0.002, 0.08), 3.5)):
        d = synthetic_curvilinear(8, 128, seed=0, kind=kind)
        m = d.masks[:, 0].numpy() > 0
        assert lo < m.mean() < hi, (kind, m.mean())
        assert all(m[i].any() for i in range(len(m)))
        width = m.sum() / sum(skeletonize(m[i]).sum() for i in range(len(m)))  # area / centreline length
        assert 1.0 <= width <= max_width, (kind, width)
    with pytest.raises(ValueError, match="kind"):
        synthetic_curvilinear(1, 64, kind="rivers")


def test_massachusetts_reader(tmp_path):
    root = write_fake_massachusetts(tmp_path / "mrd", size=64, blank_stems=())
    train = load_massachusetts_roads(root, "train", size=32, tile=32)
    assert len(train) == 8 and train.images.shape == (8, 3, 32, 32) and train.masks.shape == (8, 1, 32, 32)
    assert set(train.masks.unique().tolist()) == {0, 255}
    assert train.sources[0].endswith("@0,0") and train.split == "train"
    assert len(load_massachusetts_roads(root, "valid", size=32, tile=32)) == 4  # "val" folder, "valid" split
    assert len(load_massachusetts_roads(root, "test", size=16, mode="resize")) == 1
    # tiles resized: 64 px tiles of a 64 px image -> 1 tile at 16 px
    assert load_massachusetts_roads(root, "test", size=16, tile=64).images.shape == (1, 3, 16, 16)
    with pytest.raises(ValueError, match="larger than image"):
        load_massachusetts_roads(root, "train", tile=128)


def test_massachusetts_layouts_and_errors(tmp_path):
    flat = write_fake_massachusetts(tmp_path / "flat", {"train": 1, "valid": 1}, size=64, layout="flat",
                                    blank_stems=("10000000_0",))
    t = load_massachusetts_roads(flat, "train", size=32, tile=32)
    assert len(t) == 2 and t.skipped == 2  # the white right half is no-data
    assert len(load_massachusetts_roads(flat, "train", size=32, tile=32, max_blank=1.0)) == 4
    assert len(load_massachusetts_roads(flat, "val", size=32, tile=32)) == 4
    with pytest.raises(FileNotFoundError, match="split 'test' not found"):
        load_massachusetts_roads(flat, "test")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_massachusetts_roads(tmp_path / "nowhere")
    root = write_fake_massachusetts(tmp_path / "mrd", size=64)
    next((root / "tiff" / "train_labels").iterdir()).unlink()
    with pytest.raises(ValueError, match="have no label"):
        load_massachusetts_roads(root, "train", size=32, tile=32)
    with pytest.raises(ValueError, match="split must be"):
        load_massachusetts_roads(root, "holdout")


# --------------------------------------------------------------------------------------------
# The benchmark
# --------------------------------------------------------------------------------------------

TINY = {"size": 32, "threshold": 0.05, "synthetic": {"n_train": 16, "n_test": 4},
        "unet": {"base": 4, "depth": 2}, "train": {"epochs": 1, "batch_size": 8}}


def test_config_checks_and_weights():
    cfg = b3.load_defaults("quick")
    b3.check(cfg)
    assert [s.name for s in b3.scores(cfg)] == ["completeness", "correctness", "quality"]
    assert iteration_weights("linear", 3) == pytest.approx([1 / 6, 2 / 6, 3 / 6])
    assert iteration_weights("last", 3) == [0.0, 0.0, 1.0]
    from omegaconf import OmegaConf

    for bad, msg in (({"iteration_weights": "exp"}, "iteration_weights"), ({"size": 100}, "divisible"),
                     ({"dataset": "isbi"}, "dataset"), ({"mu": -1}, "mu")):
        with pytest.raises(ConfigError, match=msg):
            b3.check(OmegaConf.merge(cfg, bad))
    with pytest.raises(ConfigError, match="data_root"):
        b3.prepare(OmegaConf.merge(b3.load_defaults("paper")), "/tmp/unused")


def test_delineation_cell_and_resume(tmp_path):
    torch.manual_seed(0)
    row = b3.delineation_cell("alexnet", "S", out=tmp_path, weights=None, overrides=TINY)
    for k in ("completeness", "correctness", "quality"):
        assert 0.0 <= row[k] <= 1.0, (k, row[k])
    d = row["details"]
    assert [p["iteration"] for p in d["per_iteration"]] == [1, 2, 3]
    assert d["topology_loss"] and d["mu"] == 0.01 and d["loss_net"]["arch"] == "alexnet"
    assert d["loss_terms"]["init"]["top"] > 0 and len(d["history"]) == 1 and d["resumed_from"] == 0
    assert (tmp_path / "cells" / row["cell_id"] / "last.pt").exists()
    torch.manual_seed(0)  # same random loss network -> same cell id -> resumed from the checkpoint
    again = b3.delineation_cell("alexnet", "S", out=tmp_path, weights=None, overrides=TINY)
    assert again["cell_id"] == row["cell_id"] and again["details"]["resumed_from"] == 1
    assert again["quality"] == row["quality"]


def test_baseline_on_fake_massachusetts(tmp_path):
    root = write_fake_massachusetts(tmp_path / "mrd", {"train": 3, "val": 1, "test": 1}, size=64)
    over = {**TINY, "dataset": "massachusetts", "data_root": str(root), "massachusetts": {"tile": 32},
            "iteration_weights": "last", "validation": "loss"}
    row = b3.delineation_cell(None, None, out=tmp_path / "run", overrides=over)
    d = row["details"]
    assert row["arch"] is None and not d["topology_loss"] and d["mu"] == 0.0 and d["loss_terms"]["init"] is None
    assert d["n_train"] == 12 and d["n_val"] == 4 and d["n_test"] == 4
    assert 0.0 <= row["quality"] <= 1.0


def test_benchmark3_sweep_with_bce_reference(tmp_path):
    from lossnet.runs.table import ResultsTable
    from lossnet.runs.cells import reference_rows
    from lossnet.benchmarks.sweep import run_sweep

    args = ["loss_net=alexnet", "layer=E,L", "weights=random", "size=32", "threshold=0.05", "synthetic.n_train=16",
            "synthetic.n_test=4", "unet.base=4", "unet.depth=2", "train.epochs=1", "train.batch_size=8", "threads=1",
            f"out={tmp_path / 'sw'}"]
    out = run_sweep("delineation", args)
    rows = [r for r in ResultsTable(out).rows() if r["status"] == "ok"]
    assert sorted(r["layer"] for r in rows) == ["E", "L"]
    assert all(r["details"]["topology_loss"] and 0 <= r["quality"] <= 1 for r in rows)
    (ref,) = reference_rows(out)
    assert ref["reference"] == "bce" and not ref["details"]["topology_loss"] and 0 <= ref["quality"] <= 1
    md = (out / "analysis.md").read_text()
    assert "Benchmark 3: delineation with and without the topology loss" in md and "| BCE only |" in md
    assert "alexnet:E" in md and "Table III" in md and (out / "figures" / "delineation_examples.png").exists()
    seen = []
    run_sweep("delineation", args, on_row=seen.append)  # everything done: nothing recomputed
    assert seen == [] and len(reference_rows(out)) == 1
