"""Field helpers of the typed schemas (ranges and choices declared once) and the checks that apply them.

Each numeric field declares its range and each choice its allowed values, once, in the field's
metadata (:func:`num`, :func:`choice`, :func:`items`, :func:`text`); :func:`check` walks a
settings mapping against a schema and raises one :class:`~lossnet.errors.ConfigError` naming the
key, the value and what is allowed. ``lossnet.config`` applies it to the YAML files and every
``key=value`` override, ``lossnet.cli`` to the flags of the commands without a config file, all
before any data are read or generated. A leaf of the config layer: imports nothing of lossnet but
:mod:`lossnet.errors` (torch only when ``precision=16-mixed`` needs CUDA checked).

"""

from __future__ import annotations

import math
import re
import types
from dataclasses import MISSING, dataclass, field, fields, is_dataclass
from typing import Any, Dict, Iterator, List, Optional, Union, get_args, get_origin, get_type_hints

from lossnet.errors import ConfigError

__all__ = ["build", "check", "check_precision", "check_value", "choice", "count", "identity", "in_identity", "items",
           "leaves", "num", "text"]

BIG = 1 << 20
"""Upper bound of counts (epochs, images, patches ...): over a million is a typo, not a plan."""
SEED_MAX = 2**32 - 1
"""numpy's seed range."""
MAX_SIDE = 1024
"""Largest image side in pixels (a 100000 px side would allocate hundreds of GB)."""
MAX_THREADS = 1024
PROCEDURES = ("I-I-PW", "I-I-PS", "F-I-PW", "F-I-PS", "I-F-FP", "F-F-FP")
DEVICE = r"cpu|cuda(:\d+)?|mps"
DEVICE_TEXT = "cpu, cuda, cuda:N or mps"


def num(default: Any = MISSING, *, ge=None, gt=None, le=None, lt=None, doc: str = "") -> Any:
    """A number field: ``ge``/``gt`` lower, ``le``/``lt`` upper bound; NaN and inf never pass."""
    return field(default=default, metadata={"ge": ge, "gt": gt, "le": le, "lt": lt, "doc": doc})


def count(default: Any = MISSING, lo: int = 1, hi: int = BIG, doc: str = "") -> Any:
    """An integer in ``[lo, hi]``."""
    return num(default, ge=lo, le=hi, doc=doc)


def choice(default: Any, *allowed: str, pattern: str | None = None, shown: str | None = None, doc: str = "") -> Any:
    """A string among ``allowed`` (or matching the regular expression ``pattern``)."""
    return field(default=default, metadata={"choices": allowed, "pattern": pattern, "shown": shown, "doc": doc})


def items(default: list | None, *, min_len: int = 1, doc: str = "", **rule) -> Any:
    """A list (a single value passes as a one-element list): at least ``min_len`` elements, each
    checked by ``rule`` (``ge``/``le``/... or ``choices``)."""
    meta = {"min_len": min_len, "doc": doc, **rule}
    if default is None:
        return field(default=None, metadata=meta)
    return field(default_factory=lambda: list(default), metadata=meta)


def text(default: Any = None, doc: str = "") -> Any:
    """A free string (a path, a name) with its doc."""
    return field(default=default, metadata={"doc": doc})


def device(doc: str = "cpu, cuda, cuda:N or mps (null: CUDA when present)") -> Any:
    return choice(None, pattern=DEVICE, shown=DEVICE_TEXT, doc=doc)


def precision() -> Any:
    return choice("32", "32", "bf16", "16-mixed", doc="autocast precision (16-mixed: CUDA only)")


def seed(doc: str = "seed") -> Any:
    return count(0, 0, SEED_MAX, doc)


def threads(doc: str = "torch CPU threads (null: torch's default)") -> Any:
    return count(None, 0, MAX_THREADS, doc)


def fraction(default: float, doc: str = "") -> Any:
    return num(default, gt=0.0, lt=1.0, doc=doc)


def in_identity(f: Any, when: str) -> Any:
    """Mark when field ``f`` enters a cell's identity (:func:`identity`): ``"never"`` (how a cell
    runs, not what it computes: precision, the logger ...) or ``"when set"`` (a null or absent
    value keeps the ids of configs without the key); unmarked fields always do."""
    f.metadata = {**f.metadata, "identity": when}
    return f


# --------------------------------------------------------------------------------------------
# Identity
# --------------------------------------------------------------------------------------------

_CASTS = {int: int, float: float, str: str, bool: bool}


def _cast(v: Any, tp) -> Any:
    """``v`` as the scalar type of annotation ``tp`` (YAML ints pass for floats); lists, mappings
    and None as they are."""
    base, _ = _unwrap(tp)
    return _CASTS[base](v) if v is not None and base in _CASTS and not isinstance(v, (list, dict)) else v


def section_items(section: Any) -> dict:
    """A config section (a mapping, DictConfig or dataclass instance) as a dict of its top-level keys."""
    if section is None:
        return {}
    if is_dataclass(section) and not isinstance(section, type):
        return {f.name: getattr(section, f.name) for f in fields(section)}
    return dict(section.items())


def build(cls: type, section: Any, **extra: Any) -> Any:
    """An instance of dataclass ``cls`` (``FitConfig``, ``EncoderConfig`` ...) from a config
    ``section``: the section's keys that ``cls`` has, cast to its field types; the others are
    ignored, nulls keep the defaults; ``extra`` keyword arguments win."""
    hints = _hints(cls)
    values = {k: v for k, v in section_items(section).items() if k in hints}
    values.update(extra)
    return cls(**{k: _cast(v, hints[k]) for k, v in values.items() if v is not None})


def identity(section: Any, schema: type | None = None, *, drop: tuple[str, ...] = ()) -> dict:
    """What of config ``section`` (a mapping, DictConfig or an instance of ``schema``) enters a
    cell's id: every field of ``schema`` (default: the section's own class) cast to its declared
    type, except those marked by :func:`in_identity` (``"when set"`` ones only when not null or
    absent; ``id_key`` in a field's metadata renames it) and the names in ``drop``. Another key the
    section lacks takes the schema's default."""
    schema = schema or type(section)
    get = (lambda k, d: getattr(section, k, d)) if is_dataclass(section) else (lambda k, d: section.get(k, d))
    hints = _hints(schema)
    out = {}
    for f in fields(schema):
        when = f.metadata.get("identity", "always")
        if when == "never" or f.name in drop:
            continue
        default = f.default_factory() if f.default_factory is not MISSING else f.default  # type: ignore[misc]
        v = get(f.name, None if default is MISSING or when == "when set" else default)
        if v is None and when == "when set":
            continue
        out[f.metadata.get("id_key", f.name)] = _cast(v, hints[f.name])
    return out


# --------------------------------------------------------------------------------------------
# Checking
# --------------------------------------------------------------------------------------------


def _hints(schema: type) -> dict:
    return get_type_hints(schema)


def _unwrap(tp) -> tuple[Any, bool]:
    """(the type without Optional, whether None is allowed)."""
    if get_origin(tp) in (Union, types.UnionType):
        args = [a for a in get_args(tp) if a is not type(None)]
        return (args[0] if len(args) == 1 else Any), True
    return tp, tp is Any


def leaves(schema: type, prefix: str = "") -> Iterator[tuple[str, Any, Any]]:
    """Every leaf setting of ``schema`` as (dotted key, type, field), sections walked."""
    hints = _hints(schema)
    for f in fields(schema):
        tp, _ = _unwrap(hints[f.name])
        if is_dataclass(tp):
            yield from leaves(tp, f"{prefix}{f.name}.")
        else:
            yield f"{prefix}{f.name}", hints[f.name], f


def field_of(schema: type, key: str):
    """(type, field) of dotted ``key`` in ``schema``, or None when it is not a leaf there."""
    node = schema
    parts = key.split(".")
    for i, part in enumerate(parts):
        if not (isinstance(node, type) and is_dataclass(node)):
            return None
        f = next((f for f in fields(node) if f.name == part), None)
        if f is None:
            return None
        tp = _hints(node)[part]
        if i == len(parts) - 1:
            return tp, f
        node, _ = _unwrap(tp)
    return None


def _bounds(m: dict) -> str:
    lo = f">= {m['ge']}" if m.get("ge") is not None else (f"> {m['gt']}" if m.get("gt") is not None else "")
    hi = f"<= {m['le']}" if m.get("le") is not None else (f"< {m['lt']}" if m.get("lt") is not None else "")
    return " and ".join(s for s in (lo, hi) if s)


def _scalar(key: str, v: Any, tp, m: dict) -> str | None:
    """Why scalar ``v`` is not a valid ``tp`` under rule ``m``; None when it is."""
    if isinstance(v, str) and v.startswith("${"):
        return None  # an interpolation, resolved later
    if tp is bool:
        return None if isinstance(v, bool) else "true or false"
    if tp is int or tp is float:
        want = "an integer" if tp is int else "a number"
        if isinstance(v, bool) or not isinstance(v, (int, float)) or (tp is int and not isinstance(v, int)):
            return want + (f" {_bounds(m)}" if _bounds(m) else "")
        if not math.isfinite(v):
            return f"a finite number {_bounds(m)}".rstrip()
        bad = ((m.get("ge") is not None and v < m["ge"]) or (m.get("gt") is not None and v <= m["gt"])
               or (m.get("le") is not None and v > m["le"]) or (m.get("lt") is not None and v >= m["lt"]))
        return f"{want} {_bounds(m)}" if bad else None
    if m.get("choices") or m.get("pattern"):
        if isinstance(v, (dict, list)) or v is None:
            return _allowed(m)
        s = str(v)
        ok = s in m.get("choices", ()) or (m.get("pattern") and re.fullmatch(m["pattern"], s))
        return None if ok else _allowed(m)
    if tp is str and isinstance(v, (dict, list)):
        return "a single value, not a list or mapping"
    if tp is str and isinstance(v, str) and not v.strip():
        return "a non-empty string (or null where null is allowed)"
    return None


def _allowed(m: dict) -> str:
    return "one of " + (m.get("shown") or ", ".join(m["choices"]))


def check_value(key: str, value: Any, tp, f) -> None:
    """Raise one :class:`ConfigError` unless ``value`` is valid for field ``f`` of type ``tp``."""
    m = dict(f.metadata)
    base, nullable = _unwrap(tp)
    shown = "null" if value is None else repr(value) if isinstance(value, str) else str(value)
    if value is None:
        if nullable:
            return
        raise ConfigError(f"{key}={shown}: {key} must be set (it has no null value)")
    if get_origin(base) in (list, List):
        (elem,) = get_args(base) or (Any,)
        vals = list(value) if isinstance(value, (list, tuple)) else [value]
        lo, hi = m.get("min_len", 0), m.get("max_len")
        if len(vals) < lo or (hi is not None and len(vals) > hi):
            n = f"exactly {lo}" if lo == hi else f"at least {lo}" if hi is None else f"{lo} to {hi}"
            raise ConfigError(f"{key}={shown}: {key} must hold {n} value(s)")
        for v in vals:
            why = _scalar(key, v, elem, m)
            if why:
                raise ConfigError(f"{key}={shown}: {_unknown(key, v, m, True)}each value of {key} must be {why}")
        return
    why = _scalar(key, value, base, m)
    if why:
        raise ConfigError(f"{key}={shown}: {_unknown(key, value, m)}{key} must be {why}")


def _unknown(key: str, v: Any, m: dict, element: bool = False) -> str:
    """``unknown dataset 'mnist'; `` for a value outside a choice's allowed values, else ``""``
    (``element``: a list's element, named in the singular: ``unknown procedure 'X'``)."""
    if not (m.get("choices") or m.get("pattern")) or isinstance(v, (dict, list)) or v is None:
        return ""
    name = key.rsplit(".", 1)[-1]
    return f"unknown {name[:-1] if element and name.endswith('s') else name} {str(v)!r}; "


def check(schema: type, cfg: Any, prefix: str = "") -> None:
    """Check every setting of mapping ``cfg`` (a dict or DictConfig; interpolations are left
    alone) that ``schema`` declares; keys the schema does not know are left to the caller's
    unknown-key check. Raises one :class:`ConfigError` for the first bad value."""
    if not isinstance(cfg, dict):
        from omegaconf import OmegaConf

        cfg = OmegaConf.to_container(cfg, resolve=False)
    for k, v in cfg.items():
        key = f"{prefix}{k}"
        found = field_of(schema, key)
        if found is None:
            continue
        tp, f = found
        if is_dataclass(_unwrap(tp)[0]):
            if isinstance(v, dict):
                check(schema, v, key + ".")
            elif v is not None:
                raise ConfigError(f"{key}={v}: {key} is a section; set its keys ({key}.KEY=VALUE)")
            continue
        check_value(key, v, tp, f)


def check_precision(precision: Any, device: Any, key: str = "precision") -> None:
    """``16-mixed`` needs CUDA: one :class:`ConfigError` when the device is not CUDA or none is present."""
    if str(precision) != "16-mixed":
        return
    if device is not None and not str(device).startswith("cuda"):
        raise ConfigError(f"{key}=16-mixed needs CUDA, but device={device}; use precision=bf16 or 32 on the CPU")
    import torch

    if not torch.cuda.is_available():
        raise ConfigError(f"{key}=16-mixed needs CUDA, which this machine lacks; use bf16 or 32")
