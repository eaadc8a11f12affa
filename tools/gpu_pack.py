#!/usr/bin/env python3
"""Pack what ``tools/gpu_check.sh`` needs on an offline GPU machine into ``.gpu/``, and unpack it there.

A lent GPU machine has its own python3 with torch, torchvision, timm, torchmetrics, scipy ... but
no network: lossnet's remaining dependencies, the ImageNet weights and the papers' reference code
must travel with the checkout, and everything that travels is limited to 64 MiB.

    python tools/gpu_pack.py pack [--python-version 3.12]   # here (PyPI reachable): builds .gpu/
    python3 tools/gpu_pack.py unpack                       # there: called by tools/gpu_check.sh

``.gpu/`` (git-ignored) holds

* ``whl/``: wheels of the dependencies the GPU image lacks (omegaconf, gymnasium + Box2D +
  pygame-ce for LunarLander, lpips for the parity tests), for the target's Python version;
* ``weights/``: the stored AlexNet and VGG-16 trunks and LPIPS linear layers. VGG-16 travels as
  **float16** (its 59 MB float32 file does not fit beside the rest) and is stored back as float32
  there: timings are unaffected; values computed with it differ from the float32 weights' by
  float16 rounding, the same on CPU and CUDA (the parity tests compare the two on one machine);
* ``shared/peers/perceptual-autoencoders``: the reference code for ``speed/vs_reference.py``
  (``$LOSSNET_SHARED``), copied from ``../shared`` when present.

``unpack`` stores the weights into ``$LOSSNET_HOME`` (checksummed like any fetch, the manifest
entry says ``carried: float16`` where it applies) and is a no-op for what is already stored.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACK = ROOT / ".gpu"
WHEELS = ["omegaconf==2.4.0", "gymnasium==1.4.0", "farama-notifications==0.0.6", "Box2D==2.3.10",
          "pygame-ce==2.5.8", "lpips==0.1.4"]
WEIGHTS = {"alexnet": "float32", "lpips_alexnet": "float32", "lpips_vgg16": "float32", "vgg16": "float16"}
LIMIT = 64 * 2**20  # what the device tool carries, working tree included


def _size(p: Path) -> int:
    return sum(f.stat().st_size for f in p.rglob("*") if f.is_file())


def pack(python_version: str) -> None:
    import torch
    from safetensors.torch import save_file

    from lossnet.zoo.store import load_stored, read_manifest

    shutil.rmtree(PACK, ignore_errors=True)
    (PACK / "whl").mkdir(parents=True)
    plats = [f"--platform={p}" for p in ("manylinux_2_28_x86_64", "manylinux_2_27_x86_64", "manylinux_2_17_x86_64",
                                         "manylinux2014_x86_64", "manylinux1_x86_64")]
    subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--only-binary=:all:",
                    f"--python-version={python_version}", "--implementation=cp", *plats,
                    "-d", str(PACK / "whl"), *WHEELS], check=True)
    (PACK / "weights").mkdir()
    manifest = read_manifest()
    carried = {}
    for key, dtype in WEIGHTS.items():
        sd = load_stored(key)
        if sd is None:
            sys.exit(f"gpu_pack: {key} is not stored here: run `make weights` first")
        save_file({k: v.to(getattr(torch, dtype)).contiguous() for k, v in sd.items()}, PACK / "weights" / f"{key}.safetensors")
        carried[key] = {"source": manifest[key].get("source", "file"), "carried": dtype}
    (PACK / "weights" / "carried.json").write_text(json.dumps(carried, indent=2))
    ref = ROOT.parent / "shared" / "peers" / "perceptual-autoencoders"
    if ref.is_dir():
        shutil.copytree(ref, PACK / "shared" / "peers" / "perceptual-autoencoders")
    else:
        print(f"gpu_pack: no reference code at {ref}: vs_reference.py will fail there", file=sys.stderr)
    files = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True).stdout.decode()
    tracked = sum((ROOT / f).stat().st_size for f in files.split("\0") if f and (ROOT / f).is_file())
    total = tracked + _size(PACK)
    print(f"gpu_pack: .gpu/ {_size(PACK) / 2**20:.1f} MiB + tracked files {tracked / 2**20:.1f} MiB = "
          f"{total / 2**20:.1f} MiB of the 64 MiB the device tool carries")
    if total > LIMIT:
        sys.exit("gpu_pack: over the limit: drop a wheel or a weight file")


def unpack(pack_dir: Path = PACK) -> list[str]:
    """Store the carried weights of ``pack_dir`` into ``$LOSSNET_HOME`` as float32; the keys stored
    (those already in the store are left alone)."""
    import torch
    from safetensors.torch import load_file

    from lossnet.zoo.store import read_manifest, store

    src = Path(pack_dir) / "weights"
    if not src.is_dir():
        return []
    have, done = read_manifest(), []
    for key, info in json.loads((src / "carried.json").read_text()).items():
        if key in have:
            continue
        sd = {k: v.to(torch.float32) for k, v in load_file(src / f"{key}.safetensors").items()}
        store(key, sd, **info)
        done.append(key)
        print(f"gpu_pack: stored {key} ({info['carried']} carried, float32 stored)")
    return done


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("pack", help="build .gpu/ here (needs PyPI and the stored weights)")
    p.add_argument("--python-version", default="3.12", help="the GPU machine's Python (KINDS.md: 3.12)")
    u = sub.add_parser("unpack", help="store the carried weights into $LOSSNET_HOME (on the GPU machine)")
    u.add_argument("--pack", type=Path, default=PACK, help="the pack folder (default .gpu/)")
    a = ap.parse_args()
    pack(a.python_version) if a.cmd == "pack" else unpack(a.pack)


if __name__ == "__main__":
    main()
