"""The teacher-feature cache at scale: directory builds stream batch by batch to a .npy file and
are read memory-mapped; the build's memory does not grow with the number of images; float16."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from lossnet.train import cache as cache_mod
from lossnet.train.cache import FeatureCache, build_feature_file
from lossnet.zoo import LossNetwork


def _images(n=40, size=64, seed=0):
    return torch.randint(0, 256, (n, 3, size, size), generator=torch.Generator().manual_seed(seed), dtype=torch.uint8)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
def test_directory_build_streams_and_reads_memory_mapped(tmp_path, monkeypatch, dtype):
    net = LossNetwork("alexnet", layers=["S"], weights=None, sigmoid=True)
    imgs = _images()
    with torch.no_grad():
        direct = net(imgs.float() / 255)[0]
    monkeypatch.setattr(cache_mod, "_compute", lambda *a, **k: pytest.fail("whole-tensor build used"))
    writes = []
    real_open = open

    def spy_open(path, mode="r", *a, **k):  # every batch is appended to the open file, none kept
        f = real_open(path, mode, *a, **k)
        if "w" in mode and ".npy" in Path(path).name:  # the temporary ".KEY.npy.PID.tmp"
            w = f.write
            f.write = lambda b: writes.append(len(b)) or w(b)
        return f

    monkeypatch.setattr("builtins.open", spy_open)
    cache = FeatureCache(directory=tmp_path, dtype=dtype, batch_size=16, progress=False)
    feats = cache.get(imgs, net)
    monkeypatch.setattr("builtins.open", real_open)
    per_image = 192 * 7 * 7 * (2 if dtype == torch.float16 else 4)
    assert writes[1:] == [16 * per_image, 16 * per_image, 8 * per_image]  # the header, then three batches
    (path,) = tmp_path.glob("*.npy")
    arr = np.load(path, mmap_mode="r")
    assert isinstance(arr, np.memmap) and arr.shape == (40, 192, 7, 7) and feats.dtype == dtype
    torch.testing.assert_close(feats.float(), direct, **({} if dtype == torch.float32 else dict(atol=1e-3, rtol=1e-3)))
    assert json.loads(next(tmp_path.glob("*.json")).read_text())["shape"] == [40, 192, 7, 7]
    assert not list(tmp_path.glob(".*"))  # no temporary file left
    again = FeatureCache(directory=tmp_path, dtype=dtype, progress=False)
    torch.testing.assert_close(again.get(imgs, net), feats)
    assert again.misses == 0


def test_failed_build_leaves_no_file(tmp_path):
    net = LossNetwork("alexnet", layers=["S"], weights=None)
    bad = _images(n=4, size=8)  # too small for AlexNet up to S
    with pytest.raises(Exception):
        build_feature_file(bad, net, tmp_path / "f.npy")
    assert list(tmp_path.iterdir()) == []


_CHILD = r"""
import json, resource, sys, torch
from lossnet.train.cache import build_feature_file
from lossnet.zoo import LossNetwork
torch.set_num_threads(1)
n, out = int(sys.argv[1]), sys.argv[2]
net = LossNetwork("alexnet", layers=["E"], weights=None)
imgs = torch.randint(0, 256, (n, 3, 64, 64), dtype=torch.uint8)
build_feature_file(imgs[:64], net, out + "/warm.npy", batch_size=32)  # the batch's buffers, once
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
shape = build_feature_file(imgs, net, out + "/big.npy", batch_size=32)
after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({"growth_kb": after - before, "feature_kb": n * 64 * 15 * 15 * 4 // 1024, "shape": shape}))
"""


def test_build_peak_memory_does_not_grow_with_n(tmp_path):
    """Peak RSS growth of a 1,500-image build (85 MB of features) stays far below the features' size."""
    p = subprocess.run([sys.executable, "-c", _CHILD, "1500", str(tmp_path)], capture_output=True, text=True,
                       timeout=300, env={**__import__("os").environ, "OMP_NUM_THREADS": "1"})
    assert p.returncode == 0, p.stderr[-2000:]
    r = json.loads(p.stdout.strip().splitlines()[-1])
    assert r["shape"] == [1500, 64, 15, 15]
    assert r["growth_kb"] < 0.25 * r["feature_kb"], r  # a whole-tensor build grows by >= 1x (measured: old code)


def test_cache_key_hashes_the_images_without_copying_them():
    """A cache lookup of a big dataset must not duplicate it (the old key copied the bytes)."""
    import tracemalloc

    from lossnet.train.cache import images_fingerprint

    imgs = _images(n=400)  # 4.9 MB
    tracemalloc.start()
    images_fingerprint(imgs)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak < 0.1 * imgs.numel(), peak
