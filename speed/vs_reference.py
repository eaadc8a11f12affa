"""lossnet vs the code papers A and B were run with (guspih/Perceptual-Autoencoders), in one process.

Same data (N random 64 px images, lossnet's seeded 80/20 split handed to both), same batch, epochs,
Adam (lr 1e-3), same encoder/decoder architecture, same loss network (AlexNet relu2 + sigmoid,
lossnet's offline ImageNet weights handed to the reference by patching ``torchvision.models``'s
``alexnet`` in this process). Per procedure, interleaved (reference, lossnet, bare, reference, ...),
min of ``--repeats``:

* **reference**: its ``FourLayerCVAE`` (PW: no loss network; PS: ``perceptual_net``) and
  ``FeaturePredictorCVAE`` (FP) trained by its own ``train_autoencoder`` (imported at run time from
  ``--reference``, never copied; its checkpoints are loaded with ``weights_only=False`` in this
  process only, as it was written for an older torch);
* **lossnet**: ``train_encoder`` with I-I-PW / I-I-PS / I-F-FP, the default call (no cache: the
  teacher features are computed inside the timing, and stay on a GPU when they fit);
* **bare**: a plain loop over lossnet's same task on pre-batched tensors (fused Adam, no checks,
  no syncs, no checkpoints), teacher features computed once inside the timing.

Printed per N and procedure: wall seconds, training images/s, the ratios reference / lossnet and
lossnet / bare, FP/PS for both codes, the best validation losses side by side (different random
initialisations: they agree within seed noise, not bitwise), and the achieved GFLOP/s of lossnet's
training step (FLOPs counted by ``torch.utils.flop_counter`` on one batch) next to a measured sgemm
rate. Goals (issue 23): reference/lossnet >= 1.1 (PW, PS), >= 1.4 (FP); lossnet within 1.05x of the
bare loop; the training step >= 70 % of sgemm.

    python speed/vs_reference.py --n 4096 16384 --epochs 2 --repeats 2      # the issue's setting
    python speed/vs_reference.py --quick                                    # seconds: checks the script
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import sys
import tempfile
import time
from pathlib import Path
from unittest import mock

import torch

from lossnet.train.engine import FitConfig, split_indices
from lossnet.train.procedures import EncoderConfig, EncoderTask, build_autoencoder, get_procedure, train_encoder
from lossnet.zoo import LossNetwork



def _default_reference() -> Path:
    """``$LOSSNET_SHARED/peers/perceptual-autoencoders``, else the first ``shared/`` above the checkout."""
    tail = Path("peers") / "perceptual-autoencoders"
    if os.environ.get("LOSSNET_SHARED"):
        return Path(os.environ["LOSSNET_SHARED"]) / tail
    here = Path(__file__).resolve().parent
    for d in here.parents:
        if (d / "shared" / tail).is_dir():
            return d / "shared" / tail
    return here.parents[1] / "shared" / tail


REFERENCE = _default_reference()
PROCS = {"PW": "I-I-PW", "PS": "I-I-PS", "FP": "I-F-FP"}


def _sync(dev: str) -> None:
    if dev.startswith("cuda"):
        torch.cuda.synchronize()


def import_reference(path: Path):
    """The reference's modules (VAE, perceptual_embedder, perceptual_networks, utility), with its
    AlexNet fed lossnet's offline weights and its ``torch.load`` allowed to unpickle its own models."""
    import torchvision

    from lossnet.zoo import weights as W

    if not (path / "VAE.py").exists():
        sys.exit(f"vs_reference: the reference code is not at {path} (pass --reference DIR)")
    sd, _ = W.load_state_dict("alexnet")
    build = torchvision.models.alexnet

    def offline_alexnet(pretrained: bool = False, **_):
        m = build(weights=None)
        m.load_state_dict(sd, strict=False)  # the trunk (features.*) is what the reference uses
        return m

    sys.path.insert(0, str(path))
    import perceptual_embedder
    import perceptual_networks
    import utility
    import VAE

    class _Torch:  # the reference module's `torch`, with its own checkpoints loadable (full pickles)
        def __getattr__(self, name):
            return getattr(torch, name)

        @staticmethod
        def load(*a, **k):
            return torch.load(*a, **{**k, "weights_only": False})

    utility.torch = _Torch()
    return VAE, perceptual_embedder, perceptual_networks, offline_alexnet, torchvision


def run_reference(ref, kind: str, train: torch.Tensor, val: torch.Tensor, args, dev: str) -> tuple[float, float]:
    """(seconds, best validation loss) of the reference's own training of ``kind`` on float images."""
    VAE, PE, PN, offline_alexnet, torchvision = ref
    torch.manual_seed(0)
    home = os.environ.get("TORCH_HOME")
    with mock.patch.dict(torchvision.models.__dict__, {"alexnet": offline_alexnet}):
        net = None if kind == "PW" else PN.AlexNet(layer=5, sigmoid_out=True)
    os.environ.pop("TORCH_HOME", None) if home is None else os.environ.__setitem__("TORCH_HOME", home)
    cls = PE.FeaturePredictorCVAE if kind == "FP" else VAE.FourLayerCVAE
    model = cls(input_size=(64, 64), z_dimensions=args.z, variational=False, gamma=0.0, perceptual_net=net)
    with tempfile.TemporaryDirectory() as tmp, contextlib.redirect_stdout(io.StringIO()):
        _sync(dev)
        t0 = time.perf_counter()
        _, _, val_loss, _ = VAE.train_autoencoder((train, val), model, args.epochs, args.batch,
                                                  gpu=dev.startswith("cuda"), save_path=tmp)
        _sync(dev)
    return time.perf_counter() - t0, float(val_loss)


def run_lossnet(images, net, proc: str, args, dev: str):
    """(seconds, best validation loss, TrainedEncoder) of ``train_encoder``."""
    fc = FitConfig(epochs=args.epochs, batch_size=args.batch, progress=False, device=dev, logger="none")
    _sync(dev)
    t0 = time.perf_counter()
    enc = train_encoder(images, EncoderConfig(procedure=proc, z=args.z), fc, loss_net=net)
    _sync(dev)
    return time.perf_counter() - t0, enc.result.best_val, enc


def _task(proc: str, args, net, size: int, dev: str) -> EncoderTask:
    p = get_procedure(proc)
    torch.manual_seed(0)
    model = build_autoencoder(p, EncoderConfig(procedure=proc, z=args.z), size, 192 * 7 * 7)
    return EncoderTask(p, EncoderConfig(procedure=proc, z=args.z), model, net).to(dev)


def run_bare(images, net, proc: str, args, dev: str) -> tuple[float, float]:
    """(seconds, best validation loss) of a plain loop over lossnet's task on pre-batched tensors."""
    tr, va = split_indices(len(images), 0.2, 0)
    x = images.to(dev).float().div_(255)
    task = _task(proc, args, net, images.shape[-1], dev)
    opt = torch.optim.Adam(task.parameters(), lr=1e-3, fused=True)
    net = net.to(dev)
    _sync(dev)
    t0 = time.perf_counter()
    with torch.no_grad():
        feats = torch.cat([net.extract(x[i:i + 256])[0] for i in range(0, len(x), 256)]) if proc != "I-I-PW" else x
    g = torch.Generator().manual_seed(0)
    best = float("inf")
    for _ in range(args.epochs):
        task.train()
        perm = tr[torch.randperm(len(tr), generator=g)]
        batches = [{"image": x[i], "feat": feats[i]} for i in perm.to(dev).split(args.batch)]
        for b in batches:
            opt.zero_grad(set_to_none=True)
            task.loss(b).backward()
            opt.step()
        task.eval()
        with torch.no_grad():
            vs = [(task.loss({"image": x[i], "feat": feats[i]}), len(i)) for i in va.to(dev).split(args.batch)]
            best = min(best, float(sum(v * n for v, n in vs) / len(va)))
    _sync(dev)
    return time.perf_counter() - t0, best


def step_flops(proc: str, args, net, size: int, dev: str) -> float:
    """FLOPs of one training step (forward + backward) of lossnet's task on one batch."""
    from torch.utils.flop_counter import FlopCounterMode

    task = _task(proc, args, net.to(dev), size, dev)
    b = {"image": torch.rand(args.batch, 3, size, size, device=dev),
         "feat": torch.rand(args.batch, 192, 7, 7, device=dev)}
    with FlopCounterMode(display=False) as fc:
        task.loss(b).backward()
    return float(fc.get_total_flops())


def sgemm_rate(dev: str, n: int = 2048, repeats: int = 5) -> float:
    """Measured float32 matmul rate (GFLOP/s, best of ``repeats``)."""
    a, b = torch.rand(n, n, device=dev), torch.rand(n, n, device=dev)
    a @ b
    best = float("inf")
    for _ in range(repeats):
        _sync(dev)
        t0 = time.perf_counter()
        a @ b
        _sync(dev)
        best = min(best, time.perf_counter() - t0)
    return 2 * n ** 3 / best / 1e9


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, nargs="+", default=[4096, 16384], help="images (80/20 split)")
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--z", type=int, default=32)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--procedures", nargs="+", default=list(PROCS), choices=list(PROCS))
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--reference", type=Path, default=REFERENCE, help="the Perceptual-Autoencoders checkout")
    ap.add_argument("--quick", action="store_true", help="N=256, 1 epoch, batch 64, 1 repeat (checks the script)")
    args = ap.parse_args()
    if args.quick:
        args.n, args.epochs, args.batch, args.repeats = [256], 1, 64, 1
    dev = args.device
    if dev.startswith("cuda"):
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False  # float32 everywhere
    ref = import_reference(args.reference)
    # AlexNet relu2 + sigmoid on raw [0, 1] input, as the reference's SimpleExtractor (no ImageNet
    # normalisation: with it, lossnet's PS validation loss was 2.5x the reference's on the same data)
    net = LossNetwork("paper", normalize=None)
    peak = sgemm_rate(dev, 4096 if dev.startswith("cuda") else 1024)
    print(f"device {dev}, torch {torch.__version__}, {torch.get_num_threads()} threads; epochs {args.epochs}, "
          f"batch {args.batch}, z {args.z}, min of {args.repeats}; measured sgemm {peak:.0f} GFLOP/s; "
          f"load average {os.getloadavg()[0]:.1f}")
    for n in args.n:
        g = torch.Generator().manual_seed(0)
        images = torch.randint(0, 256, (n, 3, 64, 64), dtype=torch.uint8, generator=g)
        tr, va = split_indices(n, 0.2, 0)
        ftrain, fval = images[tr].float() / 255, images[va].float() / 255
        res = {k: {"reference": [], "lossnet": [], "bare": []} for k in args.procedures}
        for _ in range(args.repeats):
            for kind in args.procedures:
                proc = PROCS[kind]
                res[kind]["reference"].append(run_reference(ref, kind, ftrain, fval, args, dev))
                s, v, enc = run_lossnet(images, net, proc, args, dev)
                h = enc.result.history
                res[kind]["lossnet"].append((s, v, sum(r["train_seconds"] for r in h), sum(r["val_seconds"] for r in h),
                                             enc.feature_seconds))
                res[kind]["bare"].append(run_bare(images, net, proc, args, dev))
        print(f"\nN {n} ({len(tr)} train / {len(va)} validation)")
        print(f"  {'':4}{'reference s':>12}{'lossnet s':>11}{'bare s':>9}{'img/s ref':>11}{'img/s lossnet':>14}"
              f"{'ref/lossnet':>13}{'lossnet/bare':>14}{'val loss ref':>14}{'val lossnet':>13}{'val bare':>10}")
        best = {}
        for kind, r in res.items():
            best[kind] = {k: min(r[k], key=lambda t: t[0]) for k in r}
            b = best[kind]
            ips = [args.epochs * len(tr) / b[k][0] for k in ("reference", "lossnet")]
            print(f"  {kind:<4}{b['reference'][0]:12.2f}{b['lossnet'][0]:11.2f}{b['bare'][0]:9.2f}{ips[0]:11.0f}"
                  f"{ips[1]:14.0f}{b['reference'][0] / b['lossnet'][0]:12.2f}x{b['lossnet'][0] / b['bare'][0]:13.2f}x"
                  f"{b['reference'][1]:14.5f}{b['lossnet'][1]:13.5f}{b['bare'][1]:10.5f}")
        if "FP" in best:
            print("  FP validation losses differ by design: lossnet's feature decoder ends in a sigmoid (the targets "
                  "are sigmoid features in (0, 1)), the reference's FeaturePredictorCVAE decoder is linear")
        if "FP" in best and "PS" in best:
            print(f"  FP/PS wall time: reference {best['FP']['reference'][0] / best['PS']['reference'][0]:.2f}, "
                  f"lossnet {best['FP']['lossnet'][0] / best['PS']['lossnet'][0]:.2f}")
        for kind in best:
            flops = step_flops(PROCS[kind], args, net, 64, dev) * (len(tr) // args.batch) * args.epochs
            rate = flops / best[kind]["lossnet"][2] / 1e9
            print(f"  {kind}: training step {flops / 1e9:.1f} GFLOP in {best[kind]['lossnet'][2]:.2f} s "
                  f"(lossnet's training passes) = {rate:.0f} GFLOP/s = {rate / peak:.0%} of sgemm")
        for kind in best:
            total, _, train_s, val_s, feat_s = best[kind]["lossnet"]
            print(f"  {kind}: lossnet's {total:.2f} s = training passes {train_s:.2f} + validation passes {val_s:.2f} "
                  f"+ teacher features {feat_s:.2f} (forward passes, kept on a GPU when they fit) + other "
                  f"{total - train_s - val_s - feat_s:.2f} (model and optimizer set-up, data placement, checkpoint "
                  f"identity); bare loop {best[kind]['bare'][0]:.2f} s in all (its teacher features included)")


if __name__ == "__main__":
    main()
