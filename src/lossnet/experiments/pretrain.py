"""``lossnet pretrain``: pretrain an encoder on a folder of images and export it, without losing or
silently redoing finished work.

:func:`pretrain` holds the export directory's lock (one writer), reads the images, and then:

* a **finished export** in ``out`` whose recorded settings (:func:`pretrain_settings`) and data
  fingerprint (sha256 of the image tensor) match this call is reused: one line "already
  trained: OUT; --force to retrain", nothing is retrained, nothing written;
* a finished export with other settings or other images (or one not written by
  ``lossnet pretrain``, or unreadable) is refused with one :class:`~lossnet.errors.UserError`
  saying what differs; ``force=True`` (``--force``) replaces it, and the old export stays intact
  until the new one is complete (training, checkpoint and logs live in ``OUT/checkpoint`` until the
  export's two files are renamed into place, then the logs are moved beside them);
* otherwise (no export yet; an interrupted run's ``OUT/checkpoint/last.pt``) it trains, resuming a
  matching checkpoint.

After success ``OUT`` holds ``encoder.safetensors``, ``config.json`` (with the ``pretrain`` entry:
settings and data fingerprint), ``history.csv`` (+ ``steps.csv``, ``tensorboard/`` per the
logger), and neither the checkpoint (unless ``keep_checkpoint``) nor the ``.lock`` file.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from lossnet.types import PathLike
from lossnet import distributed
from lossnet.errors import InputError, UserError
from lossnet.runs.lock import LOCK_NAME, run_lock
from lossnet.train.cache import images_fingerprint
from lossnet.train.engine import FitConfig
from lossnet.train.procedures import EncoderConfig, TrainedEncoder, read_export, train_encoder
from lossnet.utils import ensure_writable_dir

__all__ = ["LOG_FILES", "load_images", "pretrain", "pretrain_settings"]

LOG_FILES = ("history.csv", "steps.csv", "tensorboard")
"""Log files and folders moved from ``OUT/checkpoint`` into ``OUT`` after a successful export."""


def load_images(spec: str, size: int):
    """``lunarlander:DIR[:RUN]`` (a generated collection) or an image folder -> uint8 (N, 3, S, S)."""
    if spec.startswith("lunarlander:"):
        from lossnet.data.lunarlander import load_run

        parts = spec.split(":")
        return load_run(parts[1], int(parts[2]) if len(parts) > 2 else 1).images
    from lossnet.data.datasets import load_image_folder

    if not Path(spec).is_dir():
        raise InputError(f"{spec} is not a directory of images (or use lunarlander:DIR[:RUN])")
    return load_image_folder(spec, size=size).images


def pretrain_settings(*, procedure: str, loss_net: str, layer, sigmoid: bool, z: int, vae: bool, gamma: float,
                      epochs: int, batch_size: int, lr: float, patience: int | None, seed: int,
                      precision: str) -> dict:
    """The settings that change an exported encoder (recorded in its ``config.json`` and compared
    on reruns); device, logger and memory-format options are not among them."""
    return {"procedure": procedure.upper(), "loss_net": loss_net, "layer": None if layer is None else str(layer),
            "sigmoid": bool(sigmoid) and loss_net != "paper", "z": z, "vae": bool(vae), "gamma": gamma,
            "epochs": epochs, "batch_size": batch_size, "lr": lr, "patience": patience, "seed": seed,
            "precision": str(precision)}


def _finished(out: Path) -> bool:
    return (out / "config.json").exists() or (out / "encoder.safetensors").exists()


def _differences(recorded, current: dict) -> str:
    if not isinstance(recorded, dict) or not isinstance(recorded.get("settings"), dict):
        return "it was not written by `lossnet pretrain` (no recorded settings)"
    old = recorded["settings"]
    changed = [f"{k} {old.get(k)!r} -> {current['settings'][k]!r}" for k in sorted(current["settings"])
               if old.get(k) != current["settings"][k]]
    if recorded.get("data") != current["data"]:
        changed.append("other images (data fingerprint differs)")
    return "changed: " + "; ".join(changed) if changed else ""


def _move_logs(src: Path, out: Path) -> None:
    """The run's logs from ``src`` into ``out``, replacing an older export's logs."""
    for name in LOG_FILES:
        new, old = src / name, out / name
        if old.is_dir():
            shutil.rmtree(old)
        elif old.exists():
            old.unlink()
        if new.exists():
            os.replace(new, old)


def pretrain(images: str, out: PathLike, *, procedure: str = "I-F-FP", loss_net: str = "paper",
             layer=None, sigmoid: bool = False, size: int = 64, z: int = 64, vae: bool = False, gamma: float = 1.0,
             epochs: int = 20, batch_size: int = 128, lr: float = 1e-3, patience: int | None = None, seed: int = 0,
             device: str | None = None, precision: str = "32", channels_last: bool = False, compile: bool = False,
             logger: str = "csv", log_every_n_steps: int = 0, keep_checkpoint: bool = False,
             force: bool = False) -> TrainedEncoder | None:
    """Pretrain an encoder on ``images`` and export it to ``out`` (rules in the module docstring).

    Args:
        images: an image folder (resized to ``size`` px, 64 + 16n) or ``lunarlander:DIR[:RUN]``.
        out: export directory.
        procedure, z, vae, gamma: the encoder (:class:`~lossnet.train.procedures.EncoderConfig`).
        loss_net, layer, sigmoid: ``"paper"`` or an architecture with its layer (E/S/M/L, an
            index or a node name) and optional sigmoid.
        epochs ... log_every_n_steps: :class:`~lossnet.train.engine.FitConfig` settings.
        keep_checkpoint: keep ``OUT/checkpoint/last.pt`` after the export.
        force: retrain and replace a finished export in ``out``.

    Returns:
        The trained encoder, or ``None`` when a matching finished export was reused (and on
        non-zero ranks under torchrun).

    Raises:
        UserError: ``out`` holds a finished export of other settings or images (and not
            ``force``), or any input error (one line).
    """
    out = ensure_writable_dir(out, "--out directory")  # before the images are read
    fit = dict(epochs=epochs, batch_size=batch_size, lr=lr, seed=seed, device=device, patience=patience,
               precision=precision, channels_last=channels_last, compile=compile, logger=logger,
               log_every_n_steps=log_every_n_steps)
    enc = dict(procedure=procedure, z=z, variational=vae, gamma=gamma)
    layer = int(layer) if isinstance(layer, str) and layer.lstrip("-").isdigit() else layer
    with run_lock(out):  # one writer per export directory; its .lock file is removed on every exit
        try:
            imgs = load_images(images, size)
            record = {"settings": pretrain_settings(procedure=procedure, loss_net=loss_net, layer=layer,
                                                    sigmoid=sigmoid, z=z, vae=vae, gamma=gamma, epochs=epochs,
                                                    batch_size=batch_size, lr=lr, patience=patience, seed=seed,
                                                    precision=precision),
                      "data": images_fingerprint(imgs)}
            if _reuse(out, record, force):
                return None
            tr = _train_and_export(imgs, out, record, enc, fit, loss_net, layer, sigmoid, keep_checkpoint)
        finally:
            _release(out)
    if distributed.is_main():
        print(f"best epoch {tr.result.best_epoch + 1} of {len(tr.result.history)} (val_loss "
              f"{tr.result.best_val:.5g}), {tr.result.epoch_seconds:.1f} s/epoch; exported to "
              f"{out}/encoder.safetensors + config.json")
    return tr


def _reuse(out: Path, record: dict, force: bool) -> bool:
    """True when ``out`` holds a finished export matching ``record`` (and not ``force``); raises
    when it holds a different one (and not ``force``)."""
    if not _finished(out):
        return False
    try:
        why = _differences(read_export(out)[1].get("pretrain"), record)
    except UserError as e:
        why = f"it cannot be read ({e})"
    if force:
        return False
    if why:
        raise UserError(f"{out} already holds a finished export that differs from this run ({why}); "
                        "pass --force to replace it, or choose another --out")
    if distributed.is_main():
        print(f"already trained: {out}; --force to retrain")
    return True


def _train_and_export(imgs, out: Path, record: dict, enc: dict, fit: dict, loss_net: str, layer, sigmoid: bool,
                      keep_checkpoint: bool) -> TrainedEncoder:
    from lossnet.zoo import PRESETS, LossNetwork

    layer = int(layer) if isinstance(layer, str) and layer.lstrip("-").isdigit() else layer
    net = (LossNetwork(loss_net) if loss_net in PRESETS and layer is None
           else LossNetwork(loss_net, layers=layer if layer is not None else "L", sigmoid=sigmoid))
    main = distributed.is_main()  # under torchrun every rank trains; rank 0 exports and prints
    if main:
        print(f"{len(imgs)} images {tuple(imgs.shape[1:])}; loss network {net.arch} {net.nodes}; {enc['procedure']}")
    ckpt = out / "checkpoint"  # checkpoint and live logs; the export in `out` stays intact until replaced
    tr = train_encoder(imgs, EncoderConfig(**enc), FitConfig(**fit, log_dir=str(ckpt)), loss_net=net, ckpt_dir=ckpt)
    if not main:
        return tr
    tr.export(out, extra={"pretrain": record})
    _move_logs(ckpt, out)
    if not keep_checkpoint:  # only needed to resume an interrupted run; the export is complete
        shutil.rmtree(ckpt, ignore_errors=True)
    return tr


def _release(out: Path) -> None:
    """Remove the lock file of a finished export directory (the lock itself is released when
    :func:`~lossnet.runs.lock.run_lock` exits; nothing else holds it meanwhile)."""
    if distributed.is_main():  # under torchrun rank 0 holds the lock
        (out / LOCK_NAME).unlink(missing_ok=True)
