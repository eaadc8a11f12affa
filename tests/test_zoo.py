"""The loss-network zoo: Table II layers, truncation, computed metadata."""

from __future__ import annotations

import re

import pytest
import torch
from torch import nn

from lossnet.zoo import PAPER_ARCHS, LossNetwork, describe, get_spec, graph_depth, list_archs, paper_archs
from lossnet.zoo.network import _holder_children

PAPER_14 = ["alexnet", "vgg11", "vgg16", "vgg16_bn", "vgg19", "resnet18", "resnet50", "resnext50_32x4d",
            "googlenet", "inception_v3", "efficientnet_b0", "efficientnet_b7", "densenet121", "squeezenet1_1"]


def test_registry_has_the_14_paper_architectures_plus_lite0():
    assert list_archs()[:14] == PAPER_14
    assert "efficientnet_lite0" in list_archs() and "efficientnet_lite0" not in PAPER_ARCHS
    assert paper_archs() == PAPER_14 == list(PAPER_ARCHS)  # what a sweep's loss_net=all means
    assert get_spec("vgg16").layers == (3, 8, 15, 29)
    assert get_spec("alexnet").table.top1 == pytest.approx(56.522)
    assert get_spec("squeezenet1_1").table.mflops == 360


def _kind_test(kind: str):
    """A predicate for the kind of layer a Table II name ('2nd ReLU', '1st block stack', ...) means."""
    tests = {
        "ReLU": lambda m: isinstance(m, nn.ReLU),
        "block stack": lambda m: isinstance(m, nn.Sequential) and type(m[0]).__name__ in ("BasicBlock", "Bottleneck"),
        "inception module": lambda m: type(m).__name__.startswith("Inception") and type(m).__name__ != "InceptionAux",
        "BN": lambda m: type(m).__name__ == "BasicConv2d",
        "SiLU": lambda m: type(m).__name__ == "Conv2dNormActivation" and isinstance(m[-1], nn.SiLU),
        "ReLU6": lambda m: isinstance(m, nn.Sequential) and len(m) == 2 and isinstance(m[0], nn.Conv2d),
        "MBConv": lambda m: isinstance(m, nn.Sequential) and type(m[0]).__name__ in
        ("MBConv", "DepthwiseSeparableConv", "InvertedResidual"),
        "dense block": lambda m: type(m).__name__ == "_DenseBlock",
        "fire module": lambda m: type(m).__name__ == "Fire",
    }
    return tests[kind]


@pytest.mark.parametrize("arch", list_archs())
def test_table2_indices_are_the_layers_the_paper_names(arch):
    """Each E/S/M/L child index is the n-th layer of the kind Table II names (e.g. AlexNet 4 = 2nd ReLU)."""
    spec = get_spec(arch)
    children = [m for _, m in _holder_children(spec.build(), spec.holder)]
    for idx, name in zip(spec.layers, spec.table.layer_names):
        ordinal, kind = re.match(r"(\d+)\w\w (.+)", name).groups()
        is_kind = _kind_test(kind)
        matches = [i for i, m in enumerate(children) if is_kind(m)]
        assert len(matches) >= int(ordinal), f"{arch}: fewer than {ordinal} {kind} children"
        assert matches[int(ordinal) - 1] == idx, f"{arch}: {name} is child {matches[int(ordinal) - 1]}, registry says {idx}"


def test_alexnet_index_4_is_second_relu_and_layer_keys_resolve():
    net = LossNetwork("alexnet", layers=["E", "S", 7, "features.11"], weights=None)
    assert net.nodes == ["features.1", "features.4", "features.7", "features.11"]
    feats = net(torch.rand(2, 3, 64, 64))
    assert [f.shape[1] for f in feats] == [64, 192, 384, 256]


def test_bad_layer_gives_clear_error():
    with pytest.raises(ValueError, match="out of range"):
        LossNetwork("alexnet", layers=[40], weights=None)
    with pytest.raises(ValueError, match="node name"):
        LossNetwork("alexnet", layers=["no_such_layer"], weights=None)
    with pytest.raises(ValueError, match="unknown loss-network architecture"):
        LossNetwork("vgg17", weights=None)


@pytest.mark.parametrize("arch,layer,kept", [("vgg16", "S", 9), ("alexnet", "E", 2), ("efficientnet_lite0", "S", 2),
                                             ("resnet18", "S", 5), ("squeezenet1_1", "M", 8)])
def test_truncated_network_never_computes_past_the_deepest_layer(arch, layer, kept):
    """The truncated body holds exactly the parameters of the first `kept` children and runs no later module."""
    spec = get_spec(arch)
    full = spec.build()
    children = _holder_children(full, spec.holder)
    expected = sum(p.numel() for _, m in children[:kept] for p in m.parameters())
    net = LossNetwork(arch, layers=[layer], weights=None)
    assert sum(p.numel() for p in net.body.parameters()) == expected
    later = {(spec.holder + "." if spec.holder else "") + n for n, _ in children[kept:]}
    called = []
    hooks = [m.register_forward_hook(lambda m, i, o, n=n: called.append(n)) for n, m in net.body.named_modules()]
    net(torch.rand(1, 3, 64, 64))
    for h in hooks:
        h.remove()
    assert called, "hooks saw no module run"
    assert not [n for n in called if any(n == p or n.startswith(p + ".") for p in later)]


def test_loss_network_is_frozen_and_stays_in_eval_mode():
    net = LossNetwork("vgg16_bn", layers=["S"], weights=None)
    parent = nn.Sequential(net)
    parent.train()
    assert not net.training and not any(m.training for m in net.modules())
    assert not any(p.requires_grad for p in net.parameters())
    x = torch.rand(2, 3, 32, 32, requires_grad=True)
    before = [b.clone() for n, b in net.named_buffers() if "running_mean" in n]
    net(x)[0].sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    after = [b for n, b in net.named_buffers() if "running_mean" in n]
    assert all(torch.equal(a, b) for a, b in zip(before, after))


def test_sigmoid_preset_is_the_papers_network():
    net = LossNetwork("paper", weights=None)
    assert net.arch == "alexnet" and net.nodes == ["features.4"] and net.sigmoid
    (f,) = net(torch.rand(1, 3, 64, 64))
    assert f.shape == (1, 192, 7, 7) and 0 < f.min() and f.max() < 1


def test_forward_rejects_bad_input():
    net = LossNetwork("alexnet", layers=["E"], weights=None)
    with pytest.raises(ValueError, match=r"\(N, 3, H, W\)"):
        net(torch.rand(3, 64, 64))
    with pytest.raises(ValueError, match="float"):
        net(torch.zeros(1, 3, 64, 64, dtype=torch.uint8))


@pytest.mark.parametrize("arch,depths", [("alexnet", [1, 2, 3, 5]), ("vgg16", [2, 4, 7, 13]), ("vgg11", [1, 2, 4, 8]),
                                         ("resnet18", [1, 5, 9, 17]), ("resnet50", [1, 10, 22, 49])])
def test_depth_follows_the_papers_definition(arch, depths):
    """Conv layers on the longest path; ResNet-18 up to layer4 is 17 (= 18 minus the classifier)."""
    assert [describe(arch, k, 64).depth for k in "ESML"] == depths


def test_depth_counts_linearly_adjacent_matmuls_once():
    class Two(nn.Module):
        def __init__(self):
            super().__init__()
            self.a, self.b, self.c = nn.Conv2d(3, 4, 1), nn.Conv2d(4, 4, 1), nn.Conv2d(4, 4, 1)

        def forward(self, x):
            return self.c(torch.relu(self.b(self.a(x))))  # a,b adjacent -> 1; then c -> 2

    assert graph_depth(torch.fx.symbolic_trace(Two())) == 2


def test_describe_computes_metadata():
    e, l = describe("alexnet", "E", 224), describe("alexnet", "L", 224)
    assert (e.channels, e.height, e.width) == (64, 55, 55)
    assert e.features == 64 * 55 * 55
    assert e.params == 64 * 3 * 11 * 11 + 64
    assert l.params == sum(p.numel() for p in get_spec("alexnet").build().features.parameters())
    # FlopCounterMode counts 2 FLOPs per multiply-add; Table I's 717 MFLOPS (whole net) are multiply-adds.
    assert 0.85 < l.flops / 2 / 717e6 < 1.0
    assert e.flops < describe("alexnet", "S", 224).flops < l.flops
    assert not l.batchnorm and describe("resnet18", "S", 64).batchnorm


def test_zoo_cli_lists_registry_and_describes_layers(capsys):
    import json

    from lossnet import cli

    assert cli.main(["zoo", "--json"]) == 0
    rows = {r["arch"]: r for r in json.loads(capsys.readouterr().out)}
    assert rows["vgg16"]["layers"] == {"E": 3, "S": 8, "M": 15, "L": 29} and rows["vgg16"]["top1"] == 71.592
    assert cli.main(["zoo", "--describe", "alexnet", "--input-size", "64", "--json"]) == 0
    desc = json.loads(capsys.readouterr().out)
    assert [d["layer"] for d in desc] == ["E", "S", "M", "L"] and desc[1]["paper_name"] == "2nd ReLU"
    assert desc[1]["channels"] == 192 and desc[3]["depth"] == 5


def test_zoo_cli_unknown_arch_is_a_clear_error(capsys):
    from lossnet import cli

    assert cli.main(["zoo", "--describe", "vgg17"]) == 2
    err = capsys.readouterr().err
    assert "unknown loss-network architecture 'vgg17'" in err and "Traceback" not in err


# A layer just before an in-place activation in each architecture (None: none is addressable).
PRE_ACTIVATION = {
    "alexnet": 0, "vgg11": 0, "vgg16": 7, "vgg16_bn": 4, "vgg19": 2, "resnet18": 1, "resnet50": 1,
    "resnext50_32x4d": 1, "googlenet": "conv1.bn", "inception_v3": "Conv2d_2b_3x3.bn", "efficientnet_b0": None,
    "efficientnet_b7": None, "densenet121": 1, "squeezenet1_1": "features.3.squeeze",
    "efficientnet_lite0": "features.0.1.batch_norm",
}


@pytest.mark.parametrize("arch", list_archs())
def test_multi_layer_request_returns_the_single_layer_features_exactly(arch, monkeypatch):
    """No in-place activation overwrites a returned map: one request of E, S, M, L and a
    pre-activation layer gives exactly the maps of five single-layer requests (same weights)."""
    import copy
    import dataclasses

    from lossnet.zoo import registry

    spec = get_spec(arch)
    torch.manual_seed(0)
    model = spec.build()  # random init of e.g. VGG's classifier is slow: build once, copy
    monkeypatch.setitem(registry.REGISTRY, arch, dataclasses.replace(spec, build=lambda: copy.deepcopy(model)))
    sd = model.state_dict()
    pre = PRE_ACTIVATION.get(arch, "missing")
    assert pre != "missing", f"add {arch} to PRE_ACTIVATION"
    layers = ([pre] if pre is not None else []) + ["E", "S", "M", "L"]
    size = 75 if arch == "inception_v3" else 64
    x = torch.rand(2, 3, size, size, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        multi = LossNetwork(arch, layers=layers, weights=sd)(x)
        for ref, got in zip(layers, multi):
            (single,) = LossNetwork(arch, layers=[ref], weights=sd)(x)
            assert torch.equal(single, got), f"{arch} layer {ref}: max diff {(single - got).abs().max():.3g}"
    if pre is not None:
        assert multi[0].min() < 0, f"{arch}: pre-activation layer {pre} should have negative values"


def test_vgg16_conv7_is_not_overwritten_by_relu8():
    net = LossNetwork("vgg16", layers=[7, 8], weights=None)
    conv7, relu8 = net(torch.rand(1, 3, 32, 32))
    assert conv7.min() < 0 and relu8.min() == 0
    assert torch.equal(conv7.clamp(min=0), relu8)


def test_loss_network_and_every_arch_spec_pickle():
    import pickle

    for arch in list_archs():
        spec = get_spec(arch)
        back = pickle.loads(pickle.dumps(spec))
        assert back.name == spec.name and back.layers == spec.layers
        assert type(back.build()) is type(spec.build()) if arch in ("alexnet", "squeezenet1_1") else True
    net = LossNetwork("alexnet", layers=["E", "S"], weights=None)
    back = pickle.loads(pickle.dumps(net))
    x = torch.rand(1, 3, 32, 32)
    assert all(torch.equal(a, b) for a, b in zip(net(x), back(x)))
    assert back.spec.build.fn_name == "alexnet"


def test_arch_spec_is_keyword_only_with_the_paper_tables_in_their_own_record():
    """ArchSpec takes no positional fields; Table I/II data live in spec.table (a TableRecord)."""
    import dataclasses

    from lossnet.errors import UserError, ZooError
    from lossnet.zoo import LAYER_KEYS, REGISTRY, ArchSpec, TableRecord, register

    assert LAYER_KEYS == ("E", "S", "M", "L")
    with pytest.raises(TypeError):
        ArchSpec("x", nn.Identity, "", (0, 1, 2, 3))  # noqa - positional fields are refused
    with pytest.raises(TypeError):
        TableRecord(("a", "b", "c", "d"), 50.0)
    alex = get_spec("alexnet").table
    assert (alex.layer_names[1], alex.top1, alex.mflops, alex.depth) == ("2nd ReLU", 56.522, 717, 8)
    assert not any(getattr(alex, f) for f in ("skip", "branch", "conv1x1", "batchnorm"))
    assert get_spec("resnext50_32x4d").table.branch and get_spec("efficientnet_lite0").table.top1 is None
    spec_fields = {f.name for f in dataclasses.fields(ArchSpec)}
    assert not spec_fields & {"top1", "mflops", "layer_names", "skip", "batchnorm", "extra"}
    mine = ArchSpec(name="tmp_kw_arch", build=nn.Identity, holder="", layers=(0, 1, 2))
    with pytest.raises(ZooError, match="exactly four extraction layers") as e:
        register(mine)
    assert isinstance(e.value, UserError) and isinstance(e.value, ValueError)
    with pytest.raises(ZooError, match="already registered"):
        register(dataclasses.replace(get_spec("alexnet")))
    assert "tmp_kw_arch" not in REGISTRY


def test_zoo_argument_errors_are_user_errors():
    from lossnet.errors import ZooError

    with pytest.raises(ZooError, match="normalize must be"):
        LossNetwork("alexnet", layers=["E"], weights=None, normalize="bgr")
    with pytest.raises(ZooError, match="too small"):
        LossNetwork("alexnet", layers=["L"], weights=None)(torch.rand(1, 3, 16, 16))
    with pytest.raises(ZooError, match="at least one layer"):
        LossNetwork("alexnet", layers=[], weights=None)


def test_seeded_random_weights_are_the_one_idiom():
    """``weights="random", seed=N`` draws what seeding the global RNG around an unseeded build drew
    (the sweep's and run configs' random weights), leaves the global RNG alone, and names its seed;
    the loss-network identity of the runs tells two seeds apart."""
    from omegaconf import OmegaConf

    from lossnet.runs.launch import CellRequest
    from lossnet.runs.loss_nets import build_loss_net, loss_net_identity

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(7)
        old = LossNetwork("alexnet", layers=["S"], weights=None)
    state = torch.random.get_rng_state()
    req = CellRequest("b", {}, "alexnet", "S", {}, "c", ".", 0, "random", 7, "c")
    new = req.loss_network()
    assert torch.equal(state, torch.random.get_rng_state())
    assert old.state_dict().keys() == new.state_dict().keys()
    assert all(torch.equal(a, b) for a, b in zip(old.state_dict().values(), new.state_dict().values()))
    assert new.weights_source == "random(seed=7)"
    ln = {"name": "alexnet", "layers": ["S"], "weights": "random", "normalize": "none"}
    a, b = (build_loss_net(OmegaConf.create({**ln, "init_seed": s})) for s in (7, 8))
    assert a.weights_source == "random(seed=7)" and loss_net_identity(a) != loss_net_identity(b)
    assert a.params_sha256() == LossNetwork("alexnet", layers=["S"], weights="random", seed=7,
                                            normalize=None).params_sha256() != b.params_sha256()


@pytest.mark.parametrize("arch", ["alexnet", "resnet18"])
def test_traced_trunk_has_the_graph_module_hook_lists_and_copies_stay_in_eval(arch):
    """torchvision's DualGraphModule skips fx.GraphModule.__init__; torch.compile (torch 2.11) then
    fails on the missing ``_create_node_hooks``. Every traced trunk carries the four lists. A
    deep copy computes the same features (GraphModule's deepcopy rebuilds the trunk in training
    mode: ResNet's batch norm would use the batch's statistics)."""
    import copy

    from torch import fx

    net = LossNetwork(arch, layers=["E"], weights=None)
    graphs = [m for m in net.modules() if isinstance(m, fx.GraphModule)]
    assert graphs
    for gm in graphs:
        for name in ("_replace_hooks", "_create_node_hooks", "_erase_node_hooks", "_deepcopy_hooks"):
            assert vars(gm).get(name) == [], (arch, name)
    x = torch.rand(1, 3, 32, 32)
    assert torch.equal(copy.deepcopy(net)(x)[0], net(x)[0])
