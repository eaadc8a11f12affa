"""Cross-analysis (systematic analysis, Sec. V): ranks, best layers and correlations against
hand-computed values on a small synthetic table."""

from __future__ import annotations

import json
import math

import pytest

from lossnet.report import analysis as an
from lossnet.report.analysis import Score

ACC = Score("acc", "b4", True)  # higher is better
ERR = Score("err", "b4", False)  # lower is better
SIM = Score("sim", "b1", True)

VALUES = {  # (arch, layer) -> scores; alexnet M's acc comes from two repeats (0.8, 1.0) -> mean 0.9
    ("alexnet", "E"): {"acc": 0.5, "err": 3.0, "sim": 0.7},
    ("alexnet", "S"): {"acc": 0.7, "err": 2.0, "sim": 0.7},
    ("alexnet", "M"): {"err": 4.0, "sim": 0.7},
    ("alexnet", "L"): {"acc": 0.6, "err": 5.0, "sim": 0.7},
    ("vgg16", "E"): {"acc": 0.6, "err": 1.0, "sim": 0.6},
    ("vgg16", "S"): {"acc": 0.8, "err": 6.0, "sim": 0.7},
    ("vgg16", "M"): {"acc": 0.8, "err": 6.0, "sim": 0.7},
    ("vgg16", "L"): {"acc": 0.95, "err": 6.0, "sim": 0.5},
}


def _rows() -> list[dict]:
    rows = [{"arch": a, "layer": l, "status": "ok", **v} for (a, l), v in VALUES.items()]
    rows += [{"arch": "alexnet", "layer": "M", "acc": 0.8}, {"arch": "alexnet", "layer": "M", "acc": 1.0},
             {"arch": "alexnet", "layer": "E", "status": "skipped", "reason": "ignored: alexnet E has an ok row"},
             {"arch": "resnet18", "layer": "E", "status": "skipped", "reason": "no weights | fetch them"},
             {"arch": "resnet18", "layer": "L", "status": "skipped", "reason": "no weights | fetch them"}]
    return rows


def test_cells_average_repeats_and_ignore_skipped():
    t = an.cells(_rows(), [ACC, ERR, SIM])
    assert set(t) == set(VALUES)  # resnet18 (skipped only) is absent
    assert t[("alexnet", "M")]["acc"] == pytest.approx(0.9)
    assert t[("vgg16", "E")] == {"acc": 0.6, "err": 1.0, "sim": 0.6}


def test_best_layers_direction_and_ties():
    best = an.best_layers(an.cells(_rows(), [ACC, ERR, SIM]), [ACC, ERR, SIM])
    assert best["acc"] == {"alexnet": ("M", pytest.approx(0.9)), "vgg16": ("L", 0.95)}
    assert best["err"] == {"alexnet": ("S", 2.0), "vgg16": ("E", 1.0)}  # lower is better
    # ties between layers: the earliest layer wins (alexnet: all 0.7 -> E; vgg16: S and M 0.7 -> S)
    assert best["sim"] == {"alexnet": ("E", 0.7), "vgg16": ("S", 0.7)}


def test_average_ranks_hand_computed():
    scores = [ACC, ERR, SIM]
    ranks = an.average_ranks(an.best_layers(an.cells(_rows(), scores), scores), scores)
    # acc: vgg16 0.95 > alexnet 0.9 -> 1, 2; err: vgg16 1 < alexnet 2 -> 1, 2; sim: 0.7 == 0.7 -> 1.5 each
    assert ranks["vgg16"] == {"b1": 1.5, "b4": 1.0, "overall": 1.25}
    assert ranks["alexnet"] == {"b1": 1.5, "b4": 2.0, "overall": 1.75}


FAKE_ATTRS = {  # attribute values per layer, the same for both architectures
    "E": {"depth": 1, "flops": 10.0, "params": 5},
    "S": {"depth": 2, "flops": 100.0, "params": 5},
    "M": {"depth": 3, "flops": 1000.0, "params": 5},
    "L": {"depth": 4, "flops": 10000.0, "params": 5},
}


def _fake_attributes(arch, layer, input_size=224):
    return {**FAKE_ATTRS[layer], "top1": 60.0 if arch == "alexnet" else 70.0}


def test_correlations_hand_computed(monkeypatch):
    monkeypatch.setattr(an, "attributes", _fake_attributes)
    s = Score("s", "b", True)
    table = {("alexnet", l): {"s": v} for l, v in zip("ESML", (1.0, 3.0, 2.0, 4.0))}
    corr = {c["attribute"]: c for c in an.correlations(table, [s])}
    # x = 1, 2, 3, 4 and y = 1, 3, 2, 4: deviations (-1.5, -.5, .5, 1.5) and (-1.5, .5, -.5, 1.5), so
    # r = (2.25 - .25 - .25 + 2.25) / 5 = 0.8; ranks equal the values, so rho = 0.8 too; for n = 4
    # (2 degrees of freedom) the two-sided p-value of t = r sqrt(2) / sqrt(1 - r^2) is 1 - r = 0.2
    d = corr["depth"]
    assert d["n"] == 4
    assert d["pearson"] == pytest.approx(0.8) and d["spearman"] == pytest.approx(0.8)
    assert d["pearson_p"] == pytest.approx(0.2) and d["spearman_p"] == pytest.approx(0.2)
    # FLOPs enter as log10: 10 .. 10^4 -> 1 .. 4, the same numbers as depth
    assert corr["flops"]["pearson"] == pytest.approx(0.8)
    # a constant attribute has no correlation
    assert math.isnan(corr["params"]["pearson"]) and math.isnan(corr["top1"]["spearman"])


def test_correlations_keep_sign_of_lower_is_better(monkeypatch):
    monkeypatch.setattr(an, "attributes", _fake_attributes)
    e = Score("e", "b", False)
    table = {("alexnet", l): {"e": v} for l, v in zip("ESML", (4.0, 3.0, 2.0, 1.0))}
    d = {c["attribute"]: c for c in an.correlations(table, [e])}["depth"]
    assert d["pearson"] == pytest.approx(-1.0) and d["spearman"] == pytest.approx(-1.0)


def test_score_correlations():
    a, b = Score("a", "x", True), Score("b", "y", False)
    table = {("alexnet", l): {"a": float(i), "b": float(-i)} for i, l in enumerate("ESML")}
    table[("vgg16", "E")] = {"a": 9.0}  # only one score: not an observation of the pair
    (c,) = an.score_correlations(table, [a, b])
    assert c["n"] == 4 and c["pearson"] == pytest.approx(-1.0) and c["spearman"] == pytest.approx(-1.0)


def test_analysis_markdown(tmp_path, monkeypatch):
    monkeypatch.setattr(an, "attributes", _fake_attributes)
    scores = [ACC, ERR, SIM, Score("never_run", "b9", True)]
    md = an.analysis_markdown(_rows(), scores, tmp_path / "figures", md_dir=tmp_path)
    assert "## Table III" in md and "## Table IV" in md and "## Correlations" in md
    assert "Ranks among 2 of the paper's 14 architectures (alexnet, vgg16)" in md
    assert "## Correlations of the best layer with whole-architecture attributes (Table I)" in md
    assert "| vgg16 | 1.5 | 1 | 1.25 |" in md  # columns b1, b4, overall; best first
    assert "| alexnet | M (0.9) | S (2) | E (0.7) |" in md
    assert "never_run" not in md  # scores without values are left out
    skipped = md.split("## Skipped cells")[1]
    assert "| resnet18 | E,L | no weights \\| fetch them |" in skipped
    assert "alexnet" not in skipped  # a skipped row superseded by an ok row is not listed
    for name in ("fig2_layers", "fig3_grouped", "fig4_flops", "fig5_top1", "fig5b_arch"):
        assert (tmp_path / "figures" / f"{name}.png").stat().st_size > 1000
        assert f"(figures/{name}.png)" in md


def test_analysis_markdown_empty(tmp_path):
    md = an.analysis_markdown([{"arch": "resnet18", "layer": "E", "status": "skipped", "reason": None}],
                              [ACC], tmp_path)
    assert "No finished cells yet." in md and "| resnet18 | E |  |" in md


def test_attributes_of_runtime_archs_are_not_cached_on_disk(tmp_path, monkeypatch):
    from torch import nn

    from lossnet.zoo import REGISTRY, register
    from lossnet.zoo.registry import ArchSpec, TableRecord

    monkeypatch.setattr(an, "_attr_cache_path", lambda: tmp_path / "describe_cache.json")

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.features = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.Conv2d(4, 4, 1), nn.ReLU())

        def forward(self, x):
            return self.features(x)

    register(ArchSpec(name="tmp_analysis_arch", build=Net, holder="features", layers=(0, 1, 2, 3), family="test",
                      table=TableRecord(layer_names=("a", "b", "c", "d"), conv1x1=True)))
    try:
        d = an.attributes("tmp_analysis_arch", "M", 32)
        assert d["channels"] == 4 and d["conv1x1"] and d["top1"] is None
        # not in Table I: no depth / MFLOPS there; the whole network's parameters are still counted (112 + 20)
        assert d["arch_depth"] is None and d["arch_mflops"] is None and d["arch_params"] == 132
        assert not (tmp_path / "describe_cache.json").exists()
        an.attributes("alexnet", "E", 64)  # built-in: cached on disk
        assert "alexnet|E|64" in json.loads((tmp_path / "describe_cache.json").read_text())
    finally:
        REGISTRY.pop("tmp_analysis_arch", None)


ARCH_FAKE = {  # whole-architecture attributes of four architectures (arch_mflops enters as log10)
    "alexnet": {"arch_depth": 1, "arch_mflops": 10.0, "arch_params": 7, "top1": None},
    "vgg16": {"arch_depth": 2, "arch_mflops": 100.0, "arch_params": 7, "top1": 60.0},
    "resnet18": {"arch_depth": 3, "arch_mflops": 1000.0, "arch_params": 7, "top1": 70.0},
    "squeezenet1_1": {"arch_depth": 4, "arch_mflops": 10000.0, "arch_params": 7, "top1": 80.0},
}


def test_arch_correlations_use_the_best_layer_per_architecture(monkeypatch):
    monkeypatch.setattr(an, "attributes", lambda arch, layer, input_size=224: {**FAKE_ATTRS[layer], **ARCH_FAKE[arch]})
    s = Score("s", "b", True)
    # best layers: alexnet 1.0 (L), vgg16 3.0 (E), resnet18 2.0 (M), squeezenet1_1 4.0 (S); the other layers are worse
    table = {}
    for arch, (layer, v) in zip(ARCH_FAKE, [("L", 1.0), ("E", 3.0), ("M", 2.0), ("S", 4.0)]):
        table.update({(arch, l): {"s": v - 10.0} for l in "ESML"})
        table[(arch, layer)] = {"s": v}
    corr = {c["attribute"]: c for c in an.arch_correlations(table, [s])}
    # x = 1, 2, 3, 4 against y = 1, 3, 2, 4: r = rho = 0.8, p = 0.2 (see test_correlations_hand_computed)
    d = corr["arch_depth"]
    assert d["n"] == 4 and d["pearson"] == pytest.approx(0.8) and d["spearman"] == pytest.approx(0.8)
    assert d["pearson_p"] == pytest.approx(0.2)
    assert corr["arch_mflops"]["pearson"] == pytest.approx(0.8)  # log10 of 10 .. 10^4 = 1 .. 4
    # top1 unknown for alexnet: 3 observations, x = 60, 70, 80 against y = 3, 2, 4 -> r = 0.5
    assert corr["top1"]["n"] == 3 and corr["top1"]["pearson"] == pytest.approx(0.5)
    assert math.isnan(corr["arch_params"]["pearson"])  # constant
    # per loss network, the whole-architecture attributes repeat over the layers: 16 observations
    per_net = {c["attribute"]: c for c in an.correlations(table, [s])}
    assert per_net["arch_depth"]["n"] == 16 and per_net["depth"]["n"] == 16


def test_whole_architecture_attributes_known_values(tmp_path, monkeypatch):
    monkeypatch.setattr(an, "_attr_cache_path", lambda: tmp_path / "describe_cache.json")
    an._ATTR_MEMO.clear()
    # an entry written before total_params existed is recomputed, not trusted
    (tmp_path / "describe_cache.json").write_text(json.dumps({"alexnet|E|64": {"params": 1, "depth": 1}}))
    e, l = an.attributes("alexnet", "E", 64), an.attributes("alexnet", "L", 64)
    # Table I: AlexNet depth 8, 717 MFLOPS, 56.522 % top-1; torchvision's AlexNet has 61,100,840 parameters
    for d in (e, l):
        assert (d["arch_depth"], d["arch_mflops"], d["top1"], d["arch_params"]) == (8, 717, 56.522, 61_100_840)
        assert d["arch_batchnorm"] is False and d["arch_conv1x1"] is False
    assert e["params"] == 23_296 and e["depth"] == 1  # the truncated network: conv1 (64 x 3 x 11 x 11 + 64)
    assert json.loads((tmp_path / "describe_cache.json").read_text())["alexnet|E|64"]["total_params"] == 61_100_840


def test_population_note():
    from lossnet.zoo import PAPER_ARCHS

    assert an.population_note(PAPER_ARCHS) == "Ranks among the paper's 14 architectures (as its Table III)."
    assert "Ranks among 2 of the paper's 14 architectures (alexnet, vgg16)" in an.population_note(["vgg16", "alexnet"])
    note = an.population_note(["alexnet", "vgg16", "efficientnet_lite0"])
    assert note.startswith("Ranks among 3 architectures incl. efficientnet_lite0 (not in the paper) and 2 of the "
                           "paper's 14")
