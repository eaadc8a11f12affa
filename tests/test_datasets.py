"""Dataset readers against fabricated files in the official STL-10 / SVHN formats."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import scipy.io
import torch
import torch.nn.functional as F
from PIL import Image

from lossnet.data.datasets import (
    SPLIT_ROLES,
    DatasetIntegrityWarning,
    ImageSet,
    load_image_folder,
    load_stl10,
    load_svhn,
    split_roles,
)
from lossnet.testing.fakes import orientation_marker, write_fake_stl10, write_fake_svhn


@pytest.fixture(scope="module")
def stl_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("stl")
    return root, write_fake_stl10(root, n_unlabeled=12, n_train=10, n_test=11, seed=1)


@pytest.fixture(scope="module")
def svhn_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("svhn")
    return root, write_fake_svhn(root, n_train=20, n_test=10, seed=2, n_extra=5)


# ----------------------------------------------------------------------------- STL-10


@pytest.mark.parametrize("split", ["unlabeled", "train", "test"])
def test_stl10_roundtrip(stl_root, split):
    root, ref = stl_root
    ds = load_stl10(root, split, verify=False)
    assert ds.images.dtype == torch.uint8 and ds.images.shape == (len(ref[split]["images"]), 3, 96, 96)
    assert ds.images.is_contiguous()
    np.testing.assert_array_equal(ds.images.numpy(), ref[split]["images"])
    if split == "unlabeled":
        assert ds.labels is None
    else:
        assert ds.labels.dtype == torch.int64
        np.testing.assert_array_equal(ds.labels.numpy(), ref[split]["labels"])
        assert set(ds.labels.tolist()) == set(range(10))
    # orientation marker: red grows left->right along a row, green top->bottom
    ramp = torch.arange(96, dtype=torch.uint8) * 2
    assert torch.equal(ds.images[0, 0, 5, :], ramp)
    assert torch.equal(ds.images[0, 1, :, 7], ramp)
    assert (ds.images[0, 2] == 128).all()
    assert ds.name == "stl10" and ds.split == split and ds.classes[0] == "airplane"


def test_stl10_hand_written_bytes(tmp_path):
    """Bytes written straight from the spec: uint8, per image R,G,B planes, column-major."""
    base = tmp_path / "stl10_binary"
    base.mkdir()
    img = np.zeros((3, 96, 96), np.uint8)
    img[0, 3, 70] = 200  # red dot at row 3, column 70
    img[2, 90, 1] = 50  # blue dot at row 90, column 1
    raw = np.concatenate([img[c].flatten(order="F") for c in range(3)])
    for split in ("train", "test"):
        raw.tofile(base / f"{split}_X.bin")
        np.array([10], np.uint8).tofile(base / f"{split}_y.bin")
    ds = load_stl10(tmp_path, "test", verify=False)
    assert ds.images[0, 0, 3, 70] == 200 and ds.images[0, 0, 70, 3] == 0
    assert ds.images[0, 2, 90, 1] == 50 and ds.images[0, 2].sum() == 50
    assert ds.labels.tolist() == [9]  # file label 10 -> class 9 (truck)
    assert ds.classes is None  # no class_names.txt


def test_stl10_fold(stl_root):
    root, ref = stl_root
    ds = load_stl10(root, "train", fold=4, verify=False)
    idx = ref["folds"][4]
    np.testing.assert_array_equal(ds.images.numpy(), ref["train"]["images"][idx])
    np.testing.assert_array_equal(ds.labels.numpy(), ref["train"]["labels"][idx])
    with pytest.raises(ValueError):
        load_stl10(root, "test", fold=0)


def test_stl10_torchvision_rejects_fakes_then_faithful_fallback(stl_root):
    root, ref = stl_root
    from torchvision.datasets import STL10

    with pytest.raises(RuntimeError, match="not found or corrupted"):
        STL10(str(root), split="train", download=False)  # md5 mismatch
    with pytest.warns(DatasetIntegrityWarning, match="md5"):
        ds = load_stl10(root, "train")
    np.testing.assert_array_equal(ds.images.numpy(), ref["train"]["images"])


@pytest.mark.parametrize("split", ["unlabeled", "train", "test"])
def test_stl10_torchvision_path_matches_reader(stl_root, monkeypatch, split):
    """With the md5 check bypassed torchvision reads the fakes; both readers must agree."""
    root, ref = stl_root
    from torchvision.datasets import STL10

    monkeypatch.setattr(STL10, "_check_integrity", lambda self: True)
    with warnings.catch_warnings():
        warnings.simplefilter("error", DatasetIntegrityWarning)
        tv = load_stl10(root, split, verify=True)
    direct = load_stl10(root, split, verify=False)
    assert torch.equal(tv.images, direct.images)
    assert (tv.labels is None and direct.labels is None) or torch.equal(tv.labels, direct.labels)
    np.testing.assert_array_equal(tv.images.numpy(), ref[split]["images"])


def test_stl10_missing_files(tmp_path):
    with pytest.raises(FileNotFoundError) as info:
        load_stl10(tmp_path, "train")
    msg = str(info.value)
    for name in ("unlabeled_X.bin", "train_X.bin", "train_y.bin", "test_X.bin", "test_y.bin",
                 "stl10_binary.tar.gz", "never downloads", str(tmp_path / "stl10_binary")):
        assert name in msg
    # files placed directly in root instead of root/stl10_binary: hint at the parent
    write_fake_stl10(tmp_path, 2, 2, 2, 0)
    with pytest.raises(FileNotFoundError, match="parent directory"):
        load_stl10(tmp_path / "stl10_binary", "test")
    (tmp_path / "stl10_binary" / "test_y.bin").unlink()
    with pytest.raises(FileNotFoundError, match="missing test_y.bin"):
        load_stl10(tmp_path, "test")
    assert len(load_stl10(tmp_path, "train", verify=False)) == 2  # other splits still load


# ----------------------------------------------------------------------------- SVHN


@pytest.mark.parametrize("split", ["train", "test", "extra"])
def test_svhn_roundtrip(svhn_root, split):
    root, ref = svhn_root
    ds = load_svhn(root, split, size=32, verify=False)
    assert ds.images.shape == (len(ref[split]["images"]), 3, 32, 32) and ds.images.dtype == torch.uint8
    np.testing.assert_array_equal(ds.images.numpy(), ref[split]["images"])
    np.testing.assert_array_equal(ds.labels.numpy(), ref[split]["labels"])
    assert ds.labels.dtype == torch.int64
    ramp = torch.arange(32, dtype=torch.uint8) * 6
    assert torch.equal(ds.images[0, 0, 9, :], ramp) and torch.equal(ds.images[0, 1, :, 2], ramp)


def test_svhn_hand_written_mat(tmp_path):
    """A .mat written from the spec: X[row, col, channel, n] uint8, y (N,1) with 10 for digit 0."""
    X = np.zeros((32, 32, 3, 2), np.uint8)
    X[1, 30, 0, 0] = 111  # image 0: red at row 1, column 30
    X[31, 0, 1, 1] = 222  # image 1: green at row 31, column 0
    y = np.array([[10], [3]], np.uint8)
    scipy.io.savemat(tmp_path / "test_32x32.mat", {"X": X, "y": y})
    ds = load_svhn(tmp_path, "test", size=32, verify=False)
    assert ds.images[0, 0, 1, 30] == 111 and ds.images[0].sum() == 111
    assert ds.images[1, 1, 31, 0] == 222 and ds.images[1].sum() == 222
    assert ds.labels.tolist() == [0, 3]  # 10 -> 0
    # a single-image file keeps a 1-D label tensor
    scipy.io.savemat(tmp_path / "train_32x32.mat", {"X": X[..., :1], "y": y[:1]})
    assert load_svhn(tmp_path, "train", verify=False).labels.shape == (1,)


def test_svhn_fake_file_stores_ten_for_zero(svhn_root):
    root, ref = svhn_root
    mat = scipy.io.loadmat(root / "train_32x32.mat")
    assert mat["X"].shape == (32, 32, 3, 20) and mat["X"].dtype == np.uint8
    assert mat["y"].shape == (20, 1)
    assert set(mat["y"].ravel().tolist()) == set(range(1, 11))
    ds = load_svhn(root, "train", verify=False)
    assert (ds.labels[torch.from_numpy(mat["y"].ravel() == 10)] == 0).all()


def test_svhn_modes(svhn_root):
    root, _ = svhn_root
    orig = load_svhn(root, "test", size=32, verify=False).images
    tile = load_svhn(root, "test", mode="tile", verify=False).images
    assert tile.shape == (10, 3, 64, 64)
    for a, b in ((0, 0), (0, 32), (32, 0), (32, 32)):
        assert torch.equal(tile[:, :, a : a + 32, b : b + 32], orig)

    refl = load_svhn(root, "test", mode="reflect", verify=False).images
    assert refl.shape == (10, 3, 64, 64)
    assert torch.equal(refl[:, :, 16:48, 16:48], orig)
    assert torch.equal(refl[:, :, 16:48, 15], orig[:, :, :, 1])  # reflect, edge not repeated
    expect = F.pad(orig.float(), (16, 16, 16, 16), mode="reflect").to(torch.uint8)
    assert torch.equal(refl, expect)

    res = load_svhn(root, "test", mode="resize", verify=False).images
    assert res.shape == (10, 3, 64, 64) and res.dtype == torch.uint8
    expect = F.interpolate(orig.float(), size=(64, 64), mode="bilinear", align_corners=False)
    assert (res.float() - expect).abs().max() <= 0.5
    # a flat image stays flat
    assert (res[0, 2] == 128).all()

    with pytest.raises(ValueError):
        load_svhn(root, "test", mode="mirror")
    with pytest.raises(ValueError):
        load_svhn(root, "test", size=48, mode="tile", verify=False)


def test_svhn_torchvision_rejects_fakes_and_matches_reader(svhn_root, monkeypatch):
    root, ref = svhn_root
    from torchvision.datasets import SVHN

    with pytest.raises(RuntimeError, match="not found or corrupted"):
        SVHN(str(root), split="train", download=False)
    with pytest.warns(DatasetIntegrityWarning):
        fallback = load_svhn(root, "train", size=32)
    monkeypatch.setattr(SVHN, "_check_integrity", lambda self: True)
    with warnings.catch_warnings():
        warnings.simplefilter("error", DatasetIntegrityWarning)
        tv = load_svhn(root, "train", size=32)
    assert torch.equal(tv.images, fallback.images) and torch.equal(tv.labels, fallback.labels)
    np.testing.assert_array_equal(tv.labels.numpy(), ref["train"]["labels"])


def test_svhn_missing_files(tmp_path):
    with pytest.raises(FileNotFoundError) as info:
        load_svhn(tmp_path, "extra")
    msg = str(info.value)
    for name in ("train_32x32.mat", "test_32x32.mat", "extra_32x32.mat", "never downloads",
                 "ufldl.stanford.edu/housenumbers", str(tmp_path)):
        assert name in msg


# ----------------------------------------------------------------------------- image folders


def _save(path, array):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)


def test_image_folder_with_classes(tmp_path):
    rng = np.random.default_rng(0)
    for cls, n in (("dogs", 2), ("cats", 3)):
        for i in range(n):
            _save(tmp_path / cls / f"{i}.png", rng.integers(0, 256, (20, 30, 3), dtype=np.uint8))
    _save(tmp_path / "cats" / "nested" / "x.PNG", rng.integers(0, 256, (8, 8, 3), dtype=np.uint8))
    (tmp_path / "cats" / "notes.txt").write_text("not an image")
    ds = load_image_folder(tmp_path, size=16)
    assert ds.images.shape == (6, 3, 16, 16) and ds.images.dtype == torch.uint8
    assert ds.classes == ["cats", "dogs"]
    assert ds.labels.tolist() == [0, 0, 0, 0, 1, 1]  # sorted: cats/0,1,2, cats/nested/x, dogs/0,1
    with pytest.raises(ValueError, match="directly in"):  # nothing at the top level
        load_image_folder(tmp_path, size=16, recursive=False)
    assert len(load_image_folder(tmp_path, size=16, max_images=3)) == 3


def test_image_folder_flat_and_crop(tmp_path):
    # 10 x 30 (H x W) image: left / centre / right thirds red / green / blue
    img = np.zeros((10, 30, 3), np.uint8)
    img[:, :10, 0] = 255
    img[:, 10:20, 1] = 255
    img[:, 20:, 2] = 255
    _save(tmp_path / "b.png", img)
    _save(tmp_path / "a.jpg", np.full((40, 40, 3), 77, np.uint8))
    ds = load_image_folder(tmp_path, size=10)
    assert ds.labels is None and ds.classes is None and ds.split == "all"
    assert ds.name == tmp_path.name
    assert ds.images.shape == (2, 3, 10, 10)
    assert (ds.images[0].float() - 77).abs().max() <= 3  # a.jpg first (sorted), jpeg tolerance
    centre = ds.images[1]
    assert (centre[1] == 255).all() and (centre[0] == 0).all() and (centre[2] == 0).all()
    # an image in root next to class folders -> no labels
    _save(tmp_path / "cls" / "c.png", img)
    assert load_image_folder(tmp_path, size=10).labels is None
    assert len(load_image_folder(tmp_path, size=10, recursive=False)) == 2


def test_image_folder_empty(tmp_path):
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "readme.txt").write_text("x")
    with pytest.raises(ValueError, match=r"\.png.*\.webp"):
        load_image_folder(tmp_path)
    with pytest.raises(FileNotFoundError):
        load_image_folder(tmp_path / "nope")


# ----------------------------------------------------------------------------- misc


def test_split_roles():
    assert split_roles("STL-10") == {"encoder": "unlabeled", "probe": "train", "test": "test"}
    assert split_roles("svhn") == {"encoder": "extra", "probe": "train", "test": "test"}
    assert split_roles("LunarLander-v2") == {"encoder": "run1", "probe": "run2", "test": "run3"}
    assert set(SPLIT_ROLES) == {"stl10", "svhn", "lunarlander"}
    with pytest.raises(ValueError):
        split_roles("mnist")


def test_imageset_float_and_validation():
    imgs = torch.from_numpy(np.stack([orientation_marker(8)] * 3))
    ds = ImageSet(imgs, torch.tensor([0, 1, 2]), "x", "train")
    assert len(ds) == 3
    f = ds.float_images()
    assert f.dtype == torch.float32 and f.shape == (3, 3, 8, 8) and 0 <= f.min() and f.max() <= 1
    assert torch.allclose(ds.float_images(slice(1, 2)), imgs[1:2].float() / 255)
    assert ds.images.dtype == torch.uint8  # unchanged
    with pytest.raises(ValueError):
        ImageSet(imgs.float(), None, "x", "train")
    with pytest.raises(ValueError):
        ImageSet(imgs, torch.tensor([0, 1]), "x", "train")
