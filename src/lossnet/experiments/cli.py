"""Sub-commands: ``demo``, ``pretrain``, ``embed``, ``run``, ``report``."""

from __future__ import annotations

import argparse
import time


def _demo(args) -> None:
    from lossnet.experiments.demo import DemoConfig, format_table, run_demo

    cfg = DemoConfig(out=args.out, scale=args.scale, z=args.z, seed=args.seed, epochs=args.epochs,
                     probe_epochs=args.probe_epochs, rollouts=tuple(args.rollouts) if args.rollouts else None,
                     procedures=tuple(args.procedures), device=args.device, workers=args.workers,
                     progress=not args.no_progress)
    t0 = time.perf_counter()
    rows = run_demo(cfg)
    print()
    print(format_table(rows))
    pw = next((r for r in rows if r["procedure"] == "I-I-PW"), None)
    if pw is not None:
        for r in rows:
            if r is not pw:
                print(f"{r['procedure']}: error {r['test_error_px'] / pw['test_error_px']:.2f} x I-I-PW's, "
                      f"epoch time {r['epoch_seconds'] / pw['epoch_seconds']:.2f} x I-I-PW's")
    print(f"\nwrote {args.out}/results.json, results.md, error_vs_time.png, reconstructions_*.png "
          f"({time.perf_counter() - t0:.0f} s)")


def add_commands(sub) -> None:
    """Register the experiment sub-commands on the top-level ``lossnet`` sub-parser."""
    d = sub.add_parser("demo", help="the main job: PW vs PS vs FP encoder pretraining on LunarLander",
                       description="Generate a LunarLander collection, train I-I-PW, I-I-PS and I-F-FP encoders "
                                   "(AlexNet 2nd ReLU + sigmoid loss network, z=64), fit the paper-B probe grid and "
                                   "report the test position error and training time of each. Reruns resume.",
                       formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    d.add_argument("--out", default="demo_out", help="output directory")
    d.add_argument("--scale", default="quick", choices=["quick", "paper"],
                   help="quick: minutes on a 2-core CPU; paper: 3x700 rollouts, 50 epochs (GPU)")
    d.add_argument("--procedures", nargs="+", default=["I-I-PW", "I-I-PS", "I-F-FP"],
                   help="procedures to compare (I-I-PW I-I-PS F-I-PW F-I-PS I-F-FP F-F-FP)")
    d.add_argument("--z", type=int, default=64, help="embedding size")
    d.add_argument("--seed", type=int, default=0)
    d.add_argument("--epochs", type=int, help="encoder epochs (default from --scale)")
    d.add_argument("--probe-epochs", type=int, help="probe epochs (default from --scale)")
    d.add_argument("--rollouts", type=int, nargs=3, metavar=("N1", "N2", "N3"),
                   help="rollouts of runs 1-3 (default from --scale)")
    d.add_argument("--workers", type=int, help="collection workers (default: all cores)")
    d.add_argument("--device", help="cpu or cuda (default: cuda when present)")
    d.add_argument("--no-progress", action="store_true", help="no progress bars")
    d.set_defaults(func=_demo)

    add_user_commands(sub)

    from lossnet.experiments import runner, sr_vae
    from lossnet.benchmarks import sweep

    runner.add_cli(sub)
    sweep.add_cli(sub)
    sr_vae.add_cli(sub)


def _load_images(spec: str, size: int):
    """``lunarlander:DIR[:RUN]`` (a generated collection) or an image folder -> uint8 (N, 3, S, S)."""
    from pathlib import Path

    if spec.startswith("lunarlander:"):
        from lossnet.data.lunarlander import load_run

        parts = spec.split(":")
        return load_run(parts[1], int(parts[2]) if len(parts) > 2 else 1).images
    from lossnet.data.datasets import load_image_folder

    if not Path(spec).is_dir():
        raise FileNotFoundError(f"{spec} is not a directory of images (or use lunarlander:DIR[:RUN])")
    return load_image_folder(spec, size=size).images


def _pretrain(args) -> None:
    from lossnet.train.engine import FitConfig
    from lossnet.train.procedures import EncoderConfig, train_encoder
    from lossnet.zoo import create_loss_network

    images = _load_images(args.images, args.size)
    layer = int(args.layer) if args.layer and args.layer.lstrip("-").isdigit() else args.layer
    net = create_loss_network(args.loss_net, layer, **({} if args.loss_net == "paper" else {"sigmoid": args.sigmoid}))
    print(f"{len(images)} images {tuple(images.shape[1:])}; loss network {net.arch} {net.nodes}; {args.procedure}")
    tr = train_encoder(images, EncoderConfig(procedure=args.procedure, z=args.z, variational=args.vae, gamma=args.gamma),
                       FitConfig(epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, seed=args.seed,
                                 device=args.device, patience=args.patience),
                       loss_net=net, ckpt_dir=f"{args.out}/checkpoint")
    tr.export(args.out)
    print(f"best epoch {tr.result.best_epoch} (val loss {tr.result.best_val:.5g}), {tr.result.epoch_seconds:.1f} s/epoch; "
          f"exported to {args.out}/encoder.safetensors + config.json")


def _embed(args) -> None:
    import json
    from pathlib import Path

    import numpy as np

    from lossnet.train.procedures import embed_images

    cfg = json.loads((Path(args.encoder) / "config.json").read_text())
    images = _load_images(args.images, cfg["image_size"])
    emb = embed_images(args.encoder, images)
    np.save(args.out, emb.numpy())
    print(f"embeddings {tuple(emb.shape)} -> {args.out}")


def add_user_commands(sub) -> None:
    """``lossnet pretrain`` and ``lossnet embed``: encoders for a user's own images."""
    p = sub.add_parser("pretrain", help="pretrain an image encoder on your own images",
                       formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--images", required=True, help="image folder, or lunarlander:DIR[:RUN]")
    p.add_argument("--out", required=True, help="export directory (encoder.safetensors + config.json)")
    p.add_argument("--procedure", default="I-F-FP", help="I-I-PW I-I-PS F-I-PW F-I-PS I-F-FP F-F-FP")
    p.add_argument("--loss-net", default="paper", help="'paper' (AlexNet 2nd ReLU + sigmoid) or an architecture")
    p.add_argument("--layer", default=None, help="E, S, M, L, an index or a node name (with --loss-net ARCH)")
    p.add_argument("--sigmoid", action="store_true", help="sigmoid on the loss network's features (with ARCH)")
    p.add_argument("--size", type=int, default=64, help="image size for folders (64 + 16n)")
    p.add_argument("--z", type=int, default=64)
    p.add_argument("--vae", action="store_true", help="train a VAE")
    p.add_argument("--gamma", type=float, default=1.0, help="KL weight for --vae")
    p.add_argument("--epochs", type=int, default=20)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--patience", type=int, default=None, help="early stopping patience (epochs)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device")
    p.set_defaults(func=_pretrain)
    e = sub.add_parser("embed", help="embeddings of images under an exported encoder (.npy)")
    e.add_argument("encoder", help="directory written by `lossnet pretrain` or the demo (encoders/NAME)")
    e.add_argument("--images", required=True, help="image folder, or lunarlander:DIR[:RUN]")
    e.add_argument("--out", required=True, help="output .npy file, (N, z) float32")
    e.set_defaults(func=_embed)
