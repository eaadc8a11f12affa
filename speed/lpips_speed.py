"""LPIPS / perceptual-loss speed: lossnet vs its peers, in one process, same trunk weights.

Default mode: lossnet's ``PerceptualDistance(arch, lpips_weights=True)`` vs the ``lpips`` package vs
torchmetrics' LPIPS. All three use the same ImageNet trunk (lossnet's offline AlexNet / VGG-16
weights are copied into the peers, which would otherwise download torchvision's) and LPIPS v0.1's
linear layers, so the values must agree.

``--loss``: lossnet's ``PerceptualLoss`` (squared feature error at one layer: AlexNet relu2 = "S",
VGG-16 relu3_3) vs piq's ``ContentLoss`` on the same trunk: "piq" as piq builds it (the whole
``vgg16().features``, as its ``feature_extractor="vgg16"``) and "piq-trunc" (given the trunk cut
after the layer). piq sums over channels, lossnet averages: piq = C x lossnet (compared so).
Skipped with a message when piq is not installed (``pip install -e ".[bench]"``).

Times: forward (no grad) and forward + backward (gradient w.r.t. the first input, as in training),
median and min of --repeats runs; the contenders are interleaved (A B C A B C ...) so that load
from other processes hits all alike. Printed: max |value difference|, max |gradient difference|
and the relative L2 gradient difference vs lossnet, and the ratios peer / lossnet of the minima
(> 1: lossnet is faster). A few gradient entries differ where max-pooling meets a near-tie that
the channels-last kernels' rounding resolves the other way (an equally valid subgradient).
Absolute times are noisy on shared machines: compare the ratios of one run.

LPIPS mode also prints the *convolution floor*: the time the trunk's convolutions alone take on
the inputs of lossnet's batched forward (same weights, layout and kernels as every contender
uses), forward and forward + input gradient, and lossnet's (and ``lossnet-compiled``'s) time over
it: the goal of issue 23 is <= 1.10x in both modes. ``--compile`` adds ``lossnet-compiled``,
``torch.compile`` of the same module (inductor with ``freezing``: prepacked convolution weights,
fused ReLUs and head; needs a C++ compiler; compile time not counted).

    python speed/lpips_speed.py --arch alexnet vgg16 --batch 16 --size 256 --repeats 10 [--compile]
    python speed/lpips_speed.py --loss --arch vgg16 --batch 16 --size 256 --repeats 10
"""

from __future__ import annotations

import argparse
import statistics
import time
from unittest import mock

import torch

LOSS_LAYER = {"alexnet": 4, "vgg16": 15}  # AlexNet relu2 ("S"), VGG-16 relu3_3 (torchvision child index)


def _trunk_state(arch: str) -> dict:
    from lossnet.zoo import weights as W

    sd, _ = W.load_state_dict(arch)
    return {k.replace("features.", ""): v for k, v in sd.items() if k.startswith("features.")}


def _copy_trunk(slices, tv: dict) -> None:
    for s in slices:
        for name, mod in s.named_children():
            if isinstance(mod, torch.nn.Conv2d):
                mod.weight.data.copy_(tv[f"{name}.weight"])
                mod.bias.data.copy_(tv[f"{name}.bias"])


def _frozen(*mods) -> None:
    for m in mods:
        m.eval()
        for p in m.parameters():
            p.requires_grad_(False)


def build_distance(arch: str, device: str) -> tuple[torch.nn.Module, dict, float]:
    """(lossnet's module, {name: distance(x0, x1)}, 1.0: the factor lossnet's value is compared at)."""
    import lpips
    import torchmetrics.functional.image.lpips as tml
    import torchvision
    from torchmetrics.image.lpip import LearnedPerceptualImagePatchSimilarity

    from lossnet.losses import PerceptualDistance

    tv = _trunk_state(arch)
    lp_name = {"alexnet": "alex", "vgg16": "vgg"}[arch]
    ours = PerceptualDistance(arch, lpips_weights=True).to(device)
    theirs = lpips.LPIPS(pretrained=True, net=lp_name, pnet_rand=True, verbose=False)
    _copy_trunk([theirs.net.slice1, theirs.net.slice2, theirs.net.slice3, theirs.net.slice4, theirs.net.slice5], tv)

    def offline_features(net: str, pretrained: bool = False):
        m = getattr(torchvision.models, net)(weights=None).features
        m.load_state_dict(tv)
        return m

    with mock.patch.object(tml, "_get_tv_model_features", offline_features):
        tm = LearnedPerceptualImagePatchSimilarity(net_type=lp_name, reduction="none", normalize=True)
    theirs, tm = theirs.to(device), tm.to(device)
    _frozen(ours, theirs, tm)
    return ours, {
        "lossnet": lambda a, b: ours(a, b),
        "lpips": lambda a, b: theirs(a * 2 - 1, b * 2 - 1).flatten(),
        "torchmetrics": lambda a, b: tm.net(a, b, normalize=True).flatten(),
    }, 1.0


def add_compiled(impls: dict, module: torch.nn.Module, scale: float = 1.0) -> None:
    """Add ``lossnet-compiled``: ``torch.compile`` of lossnet's module (inductor; with ``freezing``
    the no-grad forward folds the frozen weights into prepacked oneDNN convolutions). Needs a C++
    compiler at run time; the first call compiles (not timed: the warm-up)."""
    import torch._inductor.config as inductor_config

    inductor_config.freezing = True
    compiled = torch.compile(module)
    impls["lossnet-compiled"] = lambda a, b: compiled(a, b) * scale


def conv_floor(net, x0: torch.Tensor, x1: torch.Tensor, repeats: int) -> dict[str, float]:
    """Seconds (min of ``repeats``) that the trunk's convolutions alone take on the batched
    forward's own inputs (recorded by hooks, same layout and weights): ``forward`` (no grad) and
    ``forward+backward`` (each convolution's forward plus its input gradient, as lossnet's
    gradient w.r.t. the images needs; the trunk's weights are frozen). The floor of any LPIPS
    built on these convolution kernels."""
    inputs = []
    convs = [m for m in net.modules() if isinstance(m, torch.nn.Conv2d)]
    hooks = [m.register_forward_hook(lambda m, i, o: inputs.append((m, i[0].detach()))) for m in convs]
    with torch.no_grad():
        net(torch.cat([x0, x1]))
    for h in hooks:
        h.remove()
    sync = torch.cuda.synchronize if x0.is_cuda else (lambda: None)

    def fwd():
        with torch.no_grad():
            for m, x in inputs:
                m(x)

    leaves = [(m, x.clone().requires_grad_(True)) for m, x in inputs]

    def fwd_bwd():
        for m, x in leaves:
            y = m(x)
            torch.autograd.grad(y, x, torch.ones_like(y))

    out = {}
    for name, step in (("forward", fwd), ("forward+backward", fwd_bwd)):
        times = []
        for _ in range(repeats + 1):
            sync()
            t0 = time.perf_counter()
            step()
            sync()
            times.append(time.perf_counter() - t0)
        out[name] = min(times[1:])
    return out


def build_loss(arch: str, device: str) -> tuple[torch.nn.Module, dict, float] | None:
    """As :func:`build_distance` for the PS loss vs piq (factor C: piq sums over channels); None without piq."""
    try:
        from piq import ContentLoss
    except ImportError:
        print("piq is not installed: skipping the perceptual-loss comparison (pip install -e '.[bench]')")
        return None
    import torchvision

    from lossnet.losses import PerceptualLoss
    from lossnet.zoo import LossNetwork

    layer = LOSS_LAYER[arch]
    ours = PerceptualLoss(LossNetwork(arch, layers=[layer]), reduction="none").to(device)
    full = getattr(torchvision.models, arch)(weights=None).features
    full.load_state_dict(_trunk_state(arch))
    trunc = torch.nn.Sequential(*list(full.children())[: layer + 1])
    piq_full = ContentLoss(full, layers=(str(layer),), reduction="none").to(device)
    piq_trunc = ContentLoss(trunc, layers=(str(layer),), reduction="none").to(device)
    _frozen(ours, piq_full, piq_trunc)
    channels = [m for m in trunc.modules() if isinstance(m, torch.nn.Conv2d)][-1].out_channels
    return ours, {
        "lossnet": lambda a, b: ours(a, b) * channels,  # piq sums over channels, lossnet averages
        "piq": lambda a, b: piq_full(a, b),
        "piq-trunc": lambda a, b: piq_trunc(a, b),
    }, channels


def run(impls: dict, x0: torch.Tensor, x1: torch.Tensor, repeats: int) -> tuple[dict, dict]:
    """Values / gradient differences vs lossnet, and {name: {mode: [seconds]}}, interleaved."""
    sync = torch.cuda.synchronize if x0.is_cuda else (lambda: None)
    with torch.no_grad():
        vals = {k: f(x0, x1).double().cpu() for k, f in impls.items()}
    grads = {}
    for k, f in impls.items():
        a = x0.clone().requires_grad_(True)
        f(a, x1).sum().backward()
        grads[k] = a.grad.double().cpu()
    dval = {k: float((vals[k] - vals["lossnet"]).abs().max()) for k in impls if k != "lossnet"}
    scale = float(vals["lossnet"].abs().max())
    dgrad = {k: float((grads[k] - grads["lossnet"]).abs().max()) for k in impls if k != "lossnet"}
    gscale = float(grads["lossnet"].abs().max())
    grel = {k: float((grads[k] - grads["lossnet"]).norm() / grads["lossnet"].norm()) for k in impls if k != "lossnet"}

    def fwd(f):
        with torch.no_grad():
            f(x0, x1)

    def fwd_bwd(f):
        a = x0.clone().requires_grad_(True)
        f(a, x1).sum().backward()

    modes = {"forward": fwd, "forward+backward": fwd_bwd}
    res = {k: {m: [] for m in modes} for k in impls}
    for m, step in modes.items():
        for f in impls.values():  # warm-up
            step(f)
        for _ in range(repeats):
            for k, f in impls.items():  # interleaved: A B C A B C ...
                sync()
                t0 = time.perf_counter()
                step(f)
                sync()
                res[k][m].append(time.perf_counter() - t0)
    return res, {"value": (dval, scale), "gradient": (dgrad, gscale), "relative L2 gradient": grel}


def report(title: str, res: dict, diffs: dict, floor: dict | None = None) -> None:
    print(f"\n{title}")
    for what in ("value", "gradient"):
        d, scale = diffs[what]
        print(f"  max |{what} difference| vs lossnet (largest |{what}| {scale:.3g}): "
              + ", ".join(f"{k} {v:.2e}" for k, v in d.items()))
    print("  |gradient difference| / |lossnet gradient| (L2): "
          + ", ".join(f"{k} {v:.2e}" for k, v in diffs["relative L2 gradient"].items()))
    print(f"  {'':14}{'forward median/min (s)':>26}{'fwd+bwd median/min (s)':>26}")
    for name, r in res.items():
        cols = [f"{statistics.median(r[m]):.3f} / {min(r[m]):.3f}" for m in ("forward", "forward+backward")]
        print(f"  {name:<14}{cols[0]:>26}{cols[1]:>26}")
    for ours in (k for k in res if k.startswith("lossnet")):
        for peer in (k for k in res if not k.startswith("lossnet")):
            ratios = [min(res[peer][m]) / min(res[ours][m]) for m in ("forward", "forward+backward")]
            print(f"  ratio {peer} / {ours} (min): forward {ratios[0]:.2f}x, forward+backward {ratios[1]:.2f}x")
    if floor is not None:
        for m in ("forward", "forward+backward"):
            ratios = ", ".join(f"{k} {min(r[m]) / floor[m]:.2f}x" for k, r in res.items() if k.startswith("lossnet"))
            print(f"  {m}: trunk convolutions alone (same inputs, kernels, layout) {floor[m]:.3f} s; "
                  f"lossnet / convolutions: {ratios} (goal <= 1.10x)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--arch", nargs="+", default=["alexnet", "vgg16"], choices=["alexnet", "vgg16"])
    ap.add_argument("--loss", action="store_true", help="perceptual loss vs piq instead of LPIPS")
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--repeats", type=int, default=10)
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: default)")
    ap.add_argument("--compile", action="store_true",
                    help="also time torch.compile(lossnet) (inductor, freezing; needs a C++ compiler)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    print(f"{'perceptual loss' if args.loss else 'LPIPS'}: device {device}, torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads; batch {args.batch}x3x{args.size}x{args.size}, {args.repeats} repeats")
    g = torch.Generator().manual_seed(0)
    x0 = torch.rand(args.batch, 3, args.size, args.size, generator=g).to(device)
    x1 = torch.rand(args.batch, 3, args.size, args.size, generator=g).to(device)
    for arch in args.arch:
        built = build_loss(arch, device) if args.loss else build_distance(arch, device)
        if built is None:
            return
        ours, impls, factor = built
        if args.compile:
            add_compiled(impls, ours, factor)
        res, diffs = run(impls, x0, x1, args.repeats)
        title = f"{arch} relu@{LOSS_LAYER[arch]} (lossnet x C)" if args.loss else arch
        floor = None if args.loss else conv_floor(ours.net, x0, x1, args.repeats)
        report(title, res, diffs, floor)


if __name__ == "__main__":
    main()
