"""Every file format lossnet reads, corrupted (issue 22 item 4), tested by generation: for each
format (a writer of a valid file, the reader entry point) x each corruption (truncated, empty,
wrong-type, wrong-shape, non-UTF-8), the reader raises one UserError whose one-line message names
the file. Plus out-of-space, however it is reported: a real 1 MiB tmpfs and ``ulimit -f``.
"""

from __future__ import annotations

import json
import os
import signal
import struct
import subprocess
import sys
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import pytest
import torch

from lossnet.errors import UserError

CORRUPTIONS = ("truncated", "empty", "wrong-type", "wrong-shape", "non-UTF-8")


# ----------------------------------------------------------------------------------------------
# valid writers and readers, one per format
# ----------------------------------------------------------------------------------------------

def _tiny_export(d: Path) -> Path:
    from lossnet.train.engine import FitConfig
    from lossnet.train.procedures import EncoderConfig, train_encoder

    images = torch.randint(0, 256, (4, 3, 64, 64), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    tr = train_encoder(images, EncoderConfig("I-I-PW", z=2), FitConfig(epochs=1, batch_size=2, progress=False,
                                                                       logger="none"), loss_net=None)
    return tr.export(d)


@pytest.fixture(scope="module")
def export_files(tmp_path_factory) -> dict[str, bytes]:
    d = _tiny_export(tmp_path_factory.mktemp("export"))
    return {name: (d / name).read_bytes() for name in ("config.json", "encoder.safetensors")}


def _png(w: int = 8, h: int = 8) -> bytes:
    import io

    import numpy as np
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(np.full((h, w, 3), 128, np.uint8)).save(buf, format="PNG")
    return buf.getvalue()


def _png_claiming(w: int, h: int) -> bytes:
    """A PNG whose header claims w x h pixels (no real pixel data): PIL's decompression bomb."""
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)) + \
        chunk(b"IDAT", zlib.compress(b"\x00" * 16)) + chunk(b"IEND", b"")


def _checkpoint_bytes(obj) -> bytes:
    import io

    buf = io.BytesIO()
    torch.save(obj, buf)
    return buf.getvalue()


def _valid_checkpoint():
    return {"task": {"w": torch.zeros(2)}, "optimizer": {}, "best_state": None, "history": [{"epoch": 1}],
            "best_epoch": 0, "best_val": 1.0}


def _rows(*rows) -> bytes:
    return b"".join(json.dumps(r).encode() + b"\n" for r in rows)


_MANIFEST = {"benchmark": "super_resolution", "scores": [{"name": "psnr", "benchmark": "b2", "higher_is_better": True}],
             "config": {"scale": "quick"}}


@dataclass
class Format:
    """One file format: its file name, valid bytes, the reader, and each corruption's bytes."""

    name: str
    file: str
    valid: Callable[[dict], bytes]
    read: Callable[[Path], object]
    corrupt: dict[str, Callable[[dict], bytes]]
    also: Callable[[Path, dict, bytes], None] | None = None  # other files the reader needs beside ``file``


def _read_export(d: Path):
    from lossnet.train.procedures import load_encoder

    return load_encoder(d.parent)


def _export_beside(name: str):
    """The export's other file; for corrupt weights a config.json recording their sha256, so the
    weights reader itself (not only the checksum) meets them."""
    def write(d: Path, files: dict, data: bytes):
        import hashlib

        for other, good in files.items():
            if other == name:
                continue
            if other == "config.json":
                good = _cfg_edit(files, encoder_sha256=hashlib.sha256(data).hexdigest())
            (d / other).write_bytes(good)
    return write


def _cfg_edit(files, **kw) -> bytes:
    cfg = json.loads(files["config.json"])
    cfg.update(kw)
    return json.dumps(cfg).encode()


def _weights_wrong_shape(files) -> bytes:
    from safetensors.torch import load, save

    sd = load(files["encoder.safetensors"])
    k = next(iter(sd))
    sd[k] = torch.zeros(3, 3)
    return save(sd)


def _read_checkpoint(p: Path):
    from lossnet.train.checkpoint import read_checkpoint

    return read_checkpoint(p)


def _read_cell_data(p: Path):
    from lossnet.utils import load_torch  # the reader of benchmark 3's cached cell data (and other torch caches)

    return load_torch(p, "delete it; the next run rebuilds it", mmap=True)


def _read_results(p: Path):
    from lossnet.runs.table import ResultsTable

    return ResultsTable(p.parent).rows()


def _read_manifest(p: Path):
    from lossnet.runs.table import read_sweep_manifest

    return read_sweep_manifest(p.parent)


def _read_image(p: Path):
    from lossnet.data.images import open_rgb

    return open_rgb(p)


_ROW1, _ROW2 = {"cell_id": "a", "score": 1.0}, {"cell_id": "b", "score": 2.0}

FORMATS = [
    Format("export config.json", "config.json", lambda f: f["config.json"], _read_export, {
        "truncated": lambda f: f["config.json"][: len(f["config.json"]) // 2],
        "empty": lambda f: b"",
        "wrong-type": lambda f: json.dumps([json.loads(f["config.json"])]).encode(),
        # edited shapes: the sha256 still matches the weights, the shapes do not
        "wrong-shape": lambda f: _cfg_edit(f, feat_shape=[7], encoder={**json.loads(f["config.json"])["encoder"],
                                                                        "z": 5}),
        "non-UTF-8": lambda f: f["config.json"].replace(b'"procedure"', b'"proc\xff\xfedure"'),
    }, _export_beside("config.json")),
    Format("export encoder.safetensors", "encoder.safetensors", lambda f: f["encoder.safetensors"], _read_export, {
        "truncated": lambda f: f["encoder.safetensors"][: len(f["encoder.safetensors"]) // 2],
        "empty": lambda f: b"",
        "wrong-type": lambda f: _checkpoint_bytes({"w": torch.zeros(2)}),  # a torch pickle, not safetensors
        "wrong-shape": _weights_wrong_shape,
        "non-UTF-8": lambda f: b"\xff\xfe" * 64,
    }, _export_beside("encoder.safetensors")),
    Format("checkpoint last.pt", "last.pt", lambda f: _checkpoint_bytes(_valid_checkpoint()), _read_checkpoint, {
        "truncated": lambda f: _checkpoint_bytes(_valid_checkpoint())[:200],
        "empty": lambda f: b"",
        "wrong-type": lambda f: _checkpoint_bytes(torch.zeros(3)),  # "Boolean value of Tensor is ambiguous" before
        "wrong-shape": lambda f: _checkpoint_bytes({**_valid_checkpoint(), "history": torch.zeros(2)}),
        "non-UTF-8": lambda f: b"\xff\xfe garbage \x00" * 20,
    }),
    Format("cached cell data (.pt)", "data.pt", lambda f: _checkpoint_bytes({"x": torch.zeros(4)}), _read_cell_data, {
        "truncated": lambda f: _checkpoint_bytes({"x": torch.zeros(64)})[:100],
        "empty": lambda f: b"",
        "wrong-type": lambda f: _checkpoint_bytes(torch.zeros(3)),
        "wrong-shape": lambda f: _checkpoint_bytes([torch.zeros(3)]),
        "non-UTF-8": lambda f: b"\xff\xfe garbage \x00" * 20,
    }),
    # results.jsonl: a bad line followed by a good one (a bad *last* line is a torn line, set aside)
    Format("results.jsonl", "results.jsonl", lambda f: _rows(_ROW1, _ROW2), _read_results, {
        "truncated": lambda f: _rows(_ROW1)[:10] + b"\n" + _rows(_ROW2),
        "empty": None,  # an empty table has no rows: not an error (asserted below)
        "wrong-type": lambda f: b"[1, 2]\n" + _rows(_ROW2),
        "wrong-shape": lambda f: b'"a string row"\n' + _rows(_ROW2),
        "non-UTF-8": lambda f: b'{"cell_id": "\xff\xfe"}\n' + _rows(_ROW2),
    }),
    Format("sweep.json", "sweep.json", lambda f: json.dumps(_MANIFEST).encode(), _read_manifest, {
        "truncated": lambda f: json.dumps(_MANIFEST).encode()[:20],
        "empty": lambda f: b"",
        "wrong-type": lambda f: b"[]",
        "wrong-shape": lambda f: b"{}",  # was KeyError: 'scores'
        "non-UTF-8": lambda f: json.dumps(_MANIFEST).encode().replace(b"psnr", b"ps\xffnr"),
    }),
    Format("image (PNG)", "x.png", lambda f: _png(), _read_image, {
        "truncated": lambda f: _png(64, 64)[:60],
        "empty": lambda f: b"",
        "wrong-type": lambda f: b"just some text, not an image\n",
        "wrong-shape": lambda f: _png_claiming(20000, 20000),  # was DecompressionBombError without a file name
        "non-UTF-8": lambda f: b"\xff\xfe\xfd" * 50,
    }),
]

CASES = [(fmt, c) for fmt in FORMATS for c in CORRUPTIONS if fmt.corrupt.get(c) is not None]


def _write(fmt: Format, d: Path, files: dict, data: bytes) -> Path:
    if fmt.also is not None:
        fmt.also(d, files, data)
    p = d / fmt.file
    p.write_bytes(data)
    return p


@pytest.mark.parametrize("fmt", FORMATS, ids=[f.name for f in FORMATS])
def test_valid_files_read(fmt, tmp_path, export_files):
    p = _write(fmt, tmp_path, export_files, fmt.valid(export_files))
    assert fmt.read(p) is not None


@pytest.mark.parametrize("fmt, corruption", CASES, ids=[f"{f.name}-{c}" for f, c in CASES])
def test_corrupt_file_is_one_line_naming_it(fmt, corruption, tmp_path, export_files):
    """generated: every format x truncated / empty / wrong-type / wrong-shape / non-UTF-8 -> one UserError line naming the file"""
    import warnings

    p = _write(fmt, tmp_path, export_files, fmt.corrupt[corruption](export_files))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(UserError) as e:
            fmt.read(p)
    msg = str(e.value)
    assert "\n" not in msg and str(p.name) in msg and str(tmp_path) in msg, msg


def test_bad_input_export_weights_changed_after_export(tmp_path, export_files):
    """encoder.safetensors replaced after export (sha256 differs from config.json's) -> one UserError naming both files"""
    (tmp_path / "config.json").write_bytes(export_files["config.json"])
    (tmp_path / "encoder.safetensors").write_bytes(_weights_wrong_shape(export_files))
    with pytest.raises(UserError, match=r"encoder\.safetensors has sha256 .* but .*config\.json records"):
        _read_export(tmp_path / "config.json")


def test_empty_results_table_has_no_rows(tmp_path):
    (tmp_path / "results.jsonl").write_bytes(b"")
    assert _read_results(tmp_path / "results.jsonl") == []


def test_hostile_corrupt_export_through_the_cli_is_one_line(tmp_path, export_files, capsys, random_png_folder):
    """`lossnet embed` of an export whose config.json lacks image_size -> exit 2, one line naming the file"""
    from lossnet import cli

    d = tmp_path / "enc"
    d.mkdir()
    cfg = json.loads(export_files["config.json"])
    del cfg["image_size"]
    (d / "config.json").write_text(json.dumps(cfg))
    (d / "encoder.safetensors").write_bytes(export_files["encoder.safetensors"])
    capsys.readouterr()
    assert cli.main(["embed", str(d), "--images", str(random_png_folder(2)), "--out", str(tmp_path / "e.npy")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "config.json lacks image_size" in err[0] and str(d) in err[0]


# ----------------------------------------------------------------------------------------------
# out of space, however torch reports it
# ----------------------------------------------------------------------------------------------

@pytest.fixture
def mount_tmpfs(tmp_path):
    """``mount(size_kib) -> Path``: a real tmpfs of that size (needs root and mount permission;
    skipped otherwise), unmounted afterwards."""
    mounted = []

    def mount(size_kib: int) -> Path:
        d = tmp_path / f"full{len(mounted)}"
        d.mkdir()
        try:
            r = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size_kib}k", "tmpfs", str(d)],
                               capture_output=True, timeout=30)
        except (OSError, subprocess.TimeoutExpired) as e:
            pytest.skip(f"cannot mount a tmpfs here ({e})")
        if r.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs here: {r.stderr.decode(errors='replace').strip()}")
        mounted.append(d)
        return d

    yield mount
    for d in mounted:
        if subprocess.run(["umount", str(d)], capture_output=True, timeout=30).returncode:
            subprocess.run(["umount", "-l", str(d)], capture_output=True, timeout=30)  # still busy: detach


@pytest.fixture
def tiny_tmpfs(mount_tmpfs):
    """A real 1 MiB tmpfs."""
    return mount_tmpfs(1024)


def _writers(d: Path):
    """(name, write call, the path it writes) for every way lossnet writes a big file."""
    from lossnet.runs.table import ResultsTable
    from lossnet.utils import atomic_write, save_torch

    big = torch.zeros(600_000)  # 2.4 MB
    return [
        ("torch.save (checkpoint)", lambda: save_torch({"w": big}, d / "last.pt"), d / "last.pt"),
        ("atomic_write (results.csv, reports)", lambda: atomic_write(d / "r.csv", b"x" * 2_000_000), d / "r.csv"),
        ("atomic_write writer callback (figures, logs, feature files)",
         lambda: atomic_write(d / "f.npy", lambda t: t.write_bytes(b"x" * 2_000_000)), d / "f.npy"),
        ("results.jsonl append", lambda: ResultsTable(d).append({"cell_id": "a", "blob": "x" * 2_000_000}),
         d / "results.jsonl"),
    ]


@pytest.mark.parametrize("which", range(4),
                         ids=["torch.save", "atomic_write", "atomic_write-callback", "results.jsonl"])
def test_full_tmpfs_is_one_clear_error_and_no_partial_file(tiny_tmpfs, which):
    """generated: every big-file writer (torch.save, atomic_write of bytes or by a callback, results.jsonl append) on a full 1 MiB tmpfs -> one DiskFullError naming the file, no partial file"""
    from lossnet.utils import DiskFullError

    name, write, path = _writers(tiny_tmpfs)[which]
    with pytest.raises(DiskFullError) as e:
        write()
    assert str(path) in str(e.value) and "No space left" in str(e.value) and "\n" not in str(e.value)
    left = [p for p in tiny_tmpfs.iterdir() if p.stat().st_size > 0]
    assert left == [], f"{name} left a partial file: {left}"


def test_atomic_write_callback_that_fails_keeps_the_old_file(tmp_path):
    """a writer callback that writes half a file and raises -> the old file byte for byte, no temporary left"""
    from lossnet.utils import atomic_write

    path = tmp_path / "table.csv"
    atomic_write(path, lambda t: t.write_text("a,b\n1,2\n"))
    assert path.read_text() == "a,b\n1,2\n"

    def half(t: Path) -> None:
        t.write_text("a,b\n3")
        raise RuntimeError("interrupted")

    with pytest.raises(RuntimeError, match="interrupted"):
        atomic_write(path, half)
    assert path.read_text() == "a,b\n1,2\n" and sorted(p.name for p in tmp_path.iterdir()) == ["table.csv"]
    with pytest.raises(TypeError, match="writer callback"):
        atomic_write(path, 3)


def test_hostile_full_tmpfs_keeps_an_old_export_intact(mount_tmpfs, export_files):
    """re-exporting onto a full disk -> one clear error; the export that was there stays byte for byte"""
    from lossnet.train.procedures import load_encoder
    from lossnet.utils import DiskFullError

    size = sum(map(len, export_files.values())) + len(export_files["encoder.safetensors"]) // 2
    d = mount_tmpfs(size // 1024 + 16)  # room for the export and half a second copy of its weights
    for name, data in export_files.items():
        (d / name).write_bytes(data)
    with pytest.raises(DiskFullError, match=f"cannot write {d}: No space left"):
        _tiny_export(d)  # a second export into the full directory
    assert {n: (d / n).read_bytes() for n in export_files} == export_files
    assert sorted(p.name for p in d.iterdir()) == ["config.json", "encoder.safetensors"]
    load_encoder(d)


_ULIMIT_SCRIPT = """
import sys, torch
from pathlib import Path
from lossnet.utils import DiskFullError, save_torch
p = Path(sys.argv[1])
try:
    save_torch({"w": torch.zeros(600_000)}, p)
except DiskFullError as e:
    print("CLEAR:", e)
"""


def test_hostile_ulimit_f_is_one_clear_error_and_no_partial_file(tmp_path):
    """`ulimit -f` (RLIMIT_FSIZE, SIGXFSZ ignored): torch.save's 'file write failed' -> DiskFullError naming the file"""
    import resource

    def limit():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (256 * 1024, 256 * 1024))

    target = tmp_path / "last.pt"
    r = subprocess.run([sys.executable, "-c", _ULIMIT_SCRIPT, str(target)], capture_output=True, text=True,
                       timeout=120, preexec_fn=limit, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert r.returncode == 0, r.stderr[-2000:]
    assert f"CLEAR: cannot write {target}: No space left" in r.stdout, r.stdout + r.stderr[-2000:]
    assert list(tmp_path.iterdir()) == []
