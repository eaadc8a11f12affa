"""Configuration files: every experiment's and benchmark's defaults live in ``configs/NAME.yaml``.

One loader for all of them (OmegaConf): the base settings, then ``scales.<scale>`` (``quick`` |
``paper``), then ``variants.<variant>`` where the file has variants, then the command line's
``key=value`` overrides (``OmegaConf.from_dotlist``: nested keys with dots, lists as ``[a,b]``). A
key that is not in the base settings is an error listing the valid keys; a value of the wrong type
or outside the range (or choices) its typed schema declares (:mod:`lossnet.schema`) is one
:class:`ConfigError` naming the key, the value and what is allowed, raised before any data are read
or any cell starts. ``--print-config`` on ``lossnet run``, ``lossnet sweep`` and ``lossnet srvae``
prints the result; :func:`structured` is a file's settings typed by its schema.

Files: ``paper_a``, ``paper_b`` (``lossnet run``), ``similarity``, ``super_resolution``,
``delineation``, ``autoencoding`` (the four benchmarks, each merged over ``sweep``, ``lossnet
sweep``), ``srvae`` (``lossnet srvae``), ``demo`` (``lossnet demo``).
"""

from __future__ import annotations

import dataclasses
import typing
from pathlib import Path
from typing import Any, Mapping, Sequence

from omegaconf import DictConfig, ListConfig, OmegaConf

from lossnet import schema
from lossnet.errors import ConfigError

__all__ = ["CONFIG_DIR", "PRESET_KEYS", "RUNTIME_KEYS", "check_type", "config_path", "load", "load_typed",
           "parse_overrides", "read_text", "require_dir", "resolve", "scaled", "scaled_defaults", "structured", "typed",
           "validate", "valid_keys"]

CONFIG_DIR = Path(__file__).resolve().parent / "configs"
"""Where the YAML files live (``configs/`` at the repository root links here)."""

PRESET_KEYS = ("scales", "variants")
"""Top-level sections that hold presets, not settings."""


def config_path(name: str) -> Path:
    """``configs/NAME.yaml``; a :class:`ConfigError` naming the known files when it is missing."""
    path = CONFIG_DIR / f"{name}.yaml"
    if not path.is_file():
        known = ", ".join(sorted(p.stem for p in CONFIG_DIR.glob("*.yaml")))
        raise ConfigError(f"no config file {path.name} in {CONFIG_DIR}; known: {known}")
    return path


def read_text(name: str) -> str:
    """The YAML text of ``configs/NAME.yaml``."""
    return config_path(name).read_text()


def load(name: str) -> DictConfig:
    """``configs/NAME.yaml`` as loaded, presets included."""
    return OmegaConf.load(config_path(name))


def valid_keys(node: DictConfig, prefix: str = "") -> list[str]:
    """Dotted keys of every setting in ``node`` (leaves and sections), presets excluded."""
    keys = []
    for k in node.keys():
        if not prefix and k in PRESET_KEYS:
            continue
        full = f"{prefix}{k}"
        child = node._get_node(k)
        if isinstance(child, DictConfig) and not child._is_none():
            keys.extend(valid_keys(child, full + "."))
        else:
            keys.append(full)
    return keys


def check_key(base: DictConfig, key: str, what: str) -> None:
    """Raise :class:`ConfigError` unless dotted ``key`` is a setting of ``base``."""
    node = base
    parts = key.split(".")
    for i, part in enumerate(parts):
        if (i == 0 and part in PRESET_KEYS) or not isinstance(node, DictConfig) or part not in node:
            raise ConfigError(f"unknown setting {key!r} for {what}; valid keys: {', '.join(valid_keys(base))}")
        node = node._get_node(part)


def parse_overrides(overrides: Sequence[str], base: DictConfig, what: str) -> DictConfig:
    """``key=value`` strings -> a DictConfig, every key checked against ``base``."""
    items = []
    for o in overrides:
        if "=" not in o or o.startswith("="):
            raise ConfigError(f"overrides are key=value, got {o!r} (e.g. dataset=svhn z=[64,128] encoder.epochs=5)")
        check_key(base, o.split("=", 1)[0].strip(), what)
        items.append(o)
    try:
        over = OmegaConf.from_dotlist(items)
    except Exception as e:  # omegaconf grammar errors
        raise ConfigError(f"cannot parse overrides {items}: {e}") from None
    for o in items:
        key = o.split("=", 1)[0].strip()
        default = OmegaConf.select(base, key)
        if default is None and isinstance(base.get("scales"), DictConfig):  # filled in by the scale
            for preset in base.scales.values():
                if isinstance(preset, DictConfig) and OmegaConf.select(preset, key) is not None:
                    default = OmegaConf.select(preset, key)
                    break
        if default is None and key.rsplit(".", 1)[-1] in NULL_DEFAULT_TYPES:
            default = NULL_DEFAULT_TYPES[key.rsplit(".", 1)[-1]]
        check_type(key, OmegaConf.select(over, key), default, o)
    validate(what, over)
    return over


def validate(what: str, cfg: DictConfig) -> None:
    """Check every setting of ``cfg`` (a whole config or just the overrides) against the schema of
    ``what`` (``paper_b``, ``sweep autoencoding``, ``demo`` ...): ranges, choices, types. One
    :class:`ConfigError` naming the key, the value and what is allowed; a no-op for names
    without a schema."""
    s = schema.schema_for(what)
    if s is None:
        return
    schema.check(s, cfg)
    for section in ("", "encoder.", "train."):  # 16-mixed needs CUDA: found now, not in the first cell
        prec = OmegaConf.select(cfg, f"{section}precision", default=None)
        if prec is not None:
            schema.check_precision(prec, OmegaConf.select(cfg, "device", default=None), f"{section}precision")


def structured(name: str, scale: str | None = None) -> DictConfig:
    """``configs/NAME.yaml`` (with ``scales.<scale>`` merged in when given) merged into its typed
    schema (``OmegaConf.structured``): OmegaConf rejects unknown keys and wrong types; the ranges
    are then checked by :func:`validate`. Benchmarks include the sweep settings."""
    from omegaconf.errors import OmegaConfBaseException

    name = schema.benchmark_name(name)
    s = _schema(name)
    plain = scaled(name, scale) if scale else OmegaConf.masked_copy(load(name), [k for k in load(name) if k not in
                                                                                  PRESET_KEYS])
    layers = [OmegaConf.structured(s)] + ([load("sweep")] if schema.is_benchmark(name) else []) + [plain]
    try:
        cfg = OmegaConf.merge(*layers)
    except OmegaConfBaseException as e:
        raise ConfigError(f"configs/{name}.yaml does not match its schema: {e.msg}") from None
    validate(name, cfg)
    return cfg


def _schema(name: str) -> type:
    """The typed schema of config ``name``; a :class:`ConfigError` naming the known ones."""
    if name not in schema.SCHEMAS:
        raise ConfigError(f"no settings schema named {name!r}; known: {', '.join(schema.SCHEMAS)}")
    return schema.SCHEMAS[name]


RUNTIME_KEYS = ("benchmark", "dataset")
"""Keys a loader adds to a resolved config that no file sets (the sweep's benchmark name,
benchmark 4's dataset of a cell); :func:`typed` leaves them out where the schema lacks them."""


def typed(name: str, cfg: DictConfig | dict | object) -> object:
    """A resolved config (``name``'s settings, e.g. from :func:`resolve` or a command's loader) as
    an instance of its schema (:data:`lossnet.schema.SCHEMAS`): every value of the declared type,
    sections as dataclasses (``cfg.encoder`` an :class:`~lossnet.schema.sections.Encoder`), keys
    the config lacks at the schema's defaults. An instance already is returned as it is; an
    unknown key or a value of the wrong type is one :class:`ConfigError`."""
    from omegaconf.errors import OmegaConfBaseException

    name = schema.benchmark_name(name)
    s = _schema(name)
    if isinstance(cfg, s):
        return cfg
    plain = cfg if isinstance(cfg, DictConfig) else OmegaConf.create(cfg)
    names = {f.name for f in dataclasses.fields(s)}
    plain = OmegaConf.masked_copy(plain, [k for k in plain.keys()
                                          if k not in PRESET_KEYS and (k in names or k not in RUNTIME_KEYS)])
    for key, tp, _ in schema.leaves(s):  # a single value stands for a one-element list (as validate allows)
        base = typing.get_args(tp)[0] if typing.get_origin(tp) is typing.Union else tp
        v = OmegaConf.select(plain, key, default=None)
        if typing.get_origin(base) is list and v is not None and not isinstance(v, (ListConfig, list)):
            OmegaConf.update(plain, key, [v])
    try:
        return OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(s), plain))
    except OmegaConfBaseException as e:
        raise ConfigError(f"the {name} settings do not match their schema: {e.msg}") from None


def resolve(name: str, overrides: Sequence[str] | Mapping[str, Any] = (), *, defaults: str | None = None,
            sweep: bool | None = None) -> DictConfig:
    """``configs/NAME.yaml`` resolved: its settings (a benchmark's over ``sweep.yaml``'s) <
    ``scales.<scale>`` < ``variants.<variant>`` < the overrides, every key and value checked
    (:func:`parse_overrides`, :func:`validate`); ``scale`` / ``variant`` name the presets.
    ``overrides``: ``key=value`` strings, or a nested mapping (e.g. a stored run's config);
    ``defaults``: the settings (YAML text or a dict) instead of the file (a benchmark registered by a user);
    ``sweep``: merge over the sweep settings (default: for the benchmarks, :func:`lossnet.schema.is_benchmark`)."""
    name = schema.benchmark_name(name)
    raw = OmegaConf.create(defaults) if defaults is not None else load(name)
    sweep = schema.is_benchmark(name) if sweep is None else sweep
    base = OmegaConf.merge(_settings(load("sweep")), raw) if sweep else raw
    if isinstance(overrides, Mapping):
        over = OmegaConf.create(dict(overrides))
        for k in valid_keys(over):
            check_key(base, k, name)
    else:
        over = parse_overrides(overrides, base, name)
    scales, variants = raw.get("scales") or {}, raw.get("variants") or {}
    scale, variant = over.get("scale", base.get("scale")), over.get("variant", base.get("variant"))
    if scales and scale not in scales:
        raise ConfigError(f"unknown scale {scale!r}; choose one of {', '.join(scales)}")
    if variant is not None and variant not in variants:
        raise ConfigError(f"unknown variant {variant!r}; choose one of {', '.join(variants) or '(none)'}")
    layers = [_settings(base)]
    layers += ([scales[scale]] if scales else []) + ([variants[variant]] if variant is not None else [])
    for layer in layers[1:]:  # presets may only set existing keys, too
        for k in valid_keys(layer):
            check_key(base, k, name)
    cfg = OmegaConf.merge(*layers, over)
    if "scale" in cfg:
        cfg.scale = scale
    if "variant" in cfg:
        cfg.variant = variant
    validate(name, cfg)
    return cfg


def _settings(cfg: DictConfig) -> DictConfig:
    """``cfg`` without its presets."""
    return OmegaConf.masked_copy(cfg, [k for k in cfg.keys() if k not in PRESET_KEYS])


def load_typed(name: str, overrides: Sequence[str] = ()) -> object:
    """``configs/NAME.yaml`` resolved with ``overrides`` (:func:`resolve`) as its schema's dataclass
    instance (:func:`typed`): ``load_typed("paper_b").encoder.epochs`` is an ``int``."""
    return typed(name, resolve(name, overrides))


NULL_DEFAULT_TYPES = {"threads": 0, "workers": 0, "patience": 0, "max_encoder": 0, "max_probe": 0, "max_test": 0,
                      "convergence_z": 0, "sigmoid": False, "budget_seconds": 0.0}
"""Example values (for their type) of settings whose default is ``null``, by leaf name."""

_TYPE_NAMES = {bool: "true or false", int: "an integer", float: "a number", list: "a list like [a,b]",
               dict: "a mapping like {a: 1}"}


def check_type(key: str, value, default, text: str = "") -> None:
    """Raise :class:`ConfigError` unless override ``value`` has the type of the base ``default``
    (ints pass as floats; a scalar passes where the default is a list; ``None`` defaults and
    strings accept anything, ``null`` resets any key)."""
    if value is None or default is None or isinstance(default, str):
        return
    if isinstance(value, str) and value.startswith("${"):
        return  # an interpolation, resolved later
    if isinstance(default, DictConfig):
        ok, want = isinstance(value, DictConfig), dict
    elif isinstance(default, ListConfig):
        ok, want = not isinstance(value, DictConfig), list
    elif isinstance(default, bool):
        ok, want = isinstance(value, bool), bool
    elif isinstance(default, int):
        ok, want = isinstance(value, int) and not isinstance(value, bool), int
    elif isinstance(default, float):
        ok, want = isinstance(value, (int, float)) and not isinstance(value, bool), float
    else:
        return
    if not ok:
        shown = text or f"{key}={value}"
        if isinstance(default, (DictConfig, ListConfig)):
            shown_default = str(OmegaConf.to_container(default, resolve=False))  # one line
        else:
            shown_default = str(default).lower() if isinstance(default, bool) else repr(default)
        raise ConfigError(f"{shown}: {key} must be {_TYPE_NAMES[want]} (its default is {shown_default})")


def scaled_defaults(defaults: str | DictConfig, scale: str = "quick") -> DictConfig:
    """Defaults (YAML text or a loaded config with ``scales: {quick: ..., paper: ...}``) with the
    ``scale`` preset merged in and the presets removed."""
    base = OmegaConf.create(defaults) if isinstance(defaults, str) else defaults.copy()
    scales = base.pop("scales")
    base.pop("variants", None)
    if scale not in scales:
        raise ConfigError(f"unknown scale {scale!r}; choose one of {', '.join(scales)}")
    return OmegaConf.merge(base, scales[scale])


def scaled(name: str, scale: str = "quick") -> DictConfig:
    """``configs/NAME.yaml`` with ``scales.<scale>`` merged in (presets removed)."""
    return scaled_defaults(load(name), scale)


def require_dir(value, what: str, doc: str) -> Path:
    """``value`` as an existing directory, else one :class:`ConfigError` naming the setting."""
    if not value:
        raise ConfigError(f"set {what}=DIR (see {doc})")
    p = Path(str(value)).expanduser()
    if not p.is_dir():
        raise ConfigError(f"{what}={value} is not a directory (see {doc})")
    return p
