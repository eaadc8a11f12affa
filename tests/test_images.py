"""The one image reader behind every data reader: 16-bit, transparency, unreadable files; BAPPS judgements."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from lossnet.data.bapps import load_bapps_2afc, load_bapps_jnd
from lossnet.data.datasets import load_image_folder
from lossnet.data.images import BACKGROUND, open_rgb
from lossnet.data.sr import read_image
from lossnet.testing.bapps import write_fake_bapps


def _readers(path: Path) -> dict[str, np.ndarray]:
    """The same file through the image-folder reader, the SR reader and the BAPPS reader, as (H, W, 3)."""
    h, w = np.asarray(Image.open(path)).shape[:2]
    folder = load_image_folder(path.parent, size=min(h, w), recursive=False).images[0]
    sr = read_image(path)
    root = path.parent.parent / f"bapps_{path.stem}"
    write_fake_bapps(root, categories_2afc=("cnn",), categories_jnd=None, n=1, size=h)
    target = root / "2afc" / "val" / "cnn" / "ref" / "000000.png"
    target.write_bytes(path.read_bytes())
    bapps = load_bapps_2afc(root, categories=["cnn"], load_size=None)["cnn"][0][0]
    return {k: v.permute(1, 2, 0).numpy() for k, v in {"folder": folder, "sr": sr, "bapps": bapps}.items()}


def test_bad_input_16bit_grayscale_png_is_scaled_not_white(tmp_path):
    """16-bit greyscale PNG (0..65535) -> round(v / 257) in every reader, not all-white."""
    d = tmp_path / "g16"
    d.mkdir()
    a = (np.arange(64 * 64, dtype=np.uint32).reshape(64, 64) * 16).astype(np.uint16)
    a[0, 0], a[0, 1] = 65535, 257 * 100
    Image.fromarray(a).save(d / "g16.png")
    assert Image.open(d / "g16.png").mode in ("I;16", "I")
    expected = np.rint(a / 257.0).astype(np.uint8)
    for name, got in _readers(d / "g16.png").items():
        assert got.shape == (64, 64, 3), name
        np.testing.assert_array_equal(got[..., 0], expected, err_msg=name)
        np.testing.assert_array_equal(got[..., 2], expected, err_msg=name)
        assert got.mean() < 200, name  # the old reader clipped to 255 everywhere but the darkest pixels


def test_bad_input_fully_transparent_rgba_is_refused_everywhere(tmp_path):
    """RGBA PNG with alpha 0 everywhere -> ValueError 'fully transparent' naming the file, in every reader."""
    d = tmp_path / "clear"
    d.mkdir()
    p = d / "clear.png"
    Image.fromarray(np.zeros((64, 64, 4), dtype=np.uint8) + np.array([200, 10, 10, 0], dtype=np.uint8)).save(p)
    with pytest.raises(ValueError, match="clear.png is fully transparent"):
        load_image_folder(d, size=64)
    with pytest.raises(ValueError, match="clear.png is fully transparent"):
        read_image(p)
    root = tmp_path / "bapps"
    write_fake_bapps(root, categories_2afc=("cnn",), categories_jnd=None, n=1)
    (root / "2afc" / "val" / "cnn" / "p0" / "000000.png").write_bytes(p.read_bytes())
    with pytest.raises(ValueError, match="000000.png is fully transparent"):
        load_bapps_2afc(root, categories=["cnn"])


def test_bad_input_partly_transparent_rgba_is_composited_on_white(tmp_path):
    """RGBA with transparent / half / opaque pixels -> alpha-composited onto white (255, 255, 255) in every reader."""
    d = tmp_path / "rgba"
    d.mkdir()
    a = np.zeros((64, 64, 4), dtype=np.uint8)
    a[..., 0] = 200
    a[:, :32, 3] = 0  # left half transparent
    a[:, 32:48, 3] = 128
    a[:, 48:, 3] = 255
    Image.fromarray(a).save(d / "rgba.png")
    assert BACKGROUND == (255, 255, 255)
    for name, got in _readers(d / "rgba.png").items():
        np.testing.assert_array_equal(got[:, :32], 255, err_msg=name)
        np.testing.assert_array_equal(got[:, 48:], np.broadcast_to([200, 0, 0], (64, 16, 3)), err_msg=name)
        half = got[5, 40]
        assert abs(int(half[0]) - round(200 * 128 / 255 + 255 * 127 / 255)) <= 1 and abs(int(half[1]) - 127) <= 1, name


def test_bad_input_unreadable_image_names_the_file(tmp_path):
    """random bytes saved as .png -> ValueError 'cannot read image <path>'."""
    p = tmp_path / "junk.png"
    p.write_bytes(b"\x89PNG not really")
    with pytest.raises(ValueError, match="cannot read image .*junk.png"):
        open_rgb(p)


@pytest.mark.parametrize("value,match", [(1.5, "holds 1.5, outside"), (-0.2, "holds -0.2, outside"), (float("nan"), "holds nan, outside")])
def test_bad_input_bapps_judgement_outside_0_1_is_refused(tmp_path, value, match):
    """BAPPS judge / same .npy value 1.5 / -0.2 / NaN -> ValueError naming the file and the value."""
    root = tmp_path / "b"
    write_fake_bapps(root, categories_2afc=("cnn",), categories_jnd=("cnn",), n=2)
    load_bapps_2afc(root, categories=["cnn"])  # the fabricated data itself is fine
    bad = root / "2afc" / "val" / "cnn" / "judge" / "000001.npy"
    np.save(bad, np.array([value], dtype=np.float32))
    with pytest.raises(ValueError, match=rf"judge file .*000001.npy {match}"):
        load_bapps_2afc(root, categories=["cnn"])
    bad_same = root / "jnd" / "val" / "cnn" / "same" / "000000.npy"
    np.save(bad_same, np.array([value], dtype=np.float32))
    with pytest.raises(ValueError, match=r"same file .*000000.npy"):
        load_bapps_jnd(root, categories=["cnn"])


def test_bad_input_bapps_judgement_not_a_scalar(tmp_path):
    """BAPPS judge .npy with 3 values -> ValueError 'is not a single number' naming the file."""
    root = tmp_path / "b"
    write_fake_bapps(root, categories_2afc=("cnn",), categories_jnd=None, n=1)
    np.save(root / "2afc" / "val" / "cnn" / "judge" / "000000.npy", np.zeros(3, dtype=np.float32))
    with pytest.raises(ValueError, match="000000.npy is not a single number"):
        load_bapps_2afc(root, categories=["cnn"])


def test_plain_rgb_and_greyscale_8bit_unchanged(tmp_path):
    """8-bit RGB and L files read exactly as PIL's convert('RGB') (no behaviour change for normal data)."""
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, (20, 30, 3), dtype=np.uint8)
    grey = rng.integers(0, 256, (20, 30), dtype=np.uint8)
    Image.fromarray(rgb).save(tmp_path / "rgb.png")
    Image.fromarray(grey).save(tmp_path / "grey.png")
    assert torch.equal(read_image(tmp_path / "rgb.png"), torch.from_numpy(rgb).permute(2, 0, 1))
    np.testing.assert_array_equal(np.asarray(open_rgb(tmp_path / "grey.png")), np.stack([grey] * 3, -1))
