"""Checks shared by every configuration section (one place, so every error reads the same).

Kept apart from :mod:`heatvit.config` so that the section modules (``nonlinear_config``,
``toksel_config``, ``shell_config``) can use them while ``config`` composes those sections.
"""

from __future__ import annotations

import dataclasses


def check_int(owner: str, name: str, value, lo: int, hi: int | None = None) -> None:
    """Raise ``ValueError`` unless ``lo <= value <= hi`` and ``value`` is an ``int``."""
    if not isinstance(value, int) or isinstance(value, bool):
        raise ValueError(f"{owner}.{name} must be an int, got {type(value).__name__} {value!r}")
    if value < lo or (hi is not None and value > hi):
        allowed = f"[{lo}, {hi}]" if hi is not None else f">= {lo}"
        raise ValueError(f"{owner}.{name} = {value} is out of range; allowed {allowed}")


def ceil_div(a: int, b: int) -> int:
    return -(-a // b)


def check_keys(cls, d) -> None:
    """Raise ``ValueError`` unless ``d`` is a dict whose keys are all fields of dataclass ``cls``."""
    if not isinstance(d, dict):
        raise ValueError(f"{cls.__name__}: expected a JSON object, got {type(d).__name__}")
    known = {f.name for f in dataclasses.fields(cls)}
    extra = set(d) - known
    if extra:
        raise ValueError(f"{cls.__name__}: unknown keys {sorted(extra)}; known {sorted(known)}")


def section_from_dict(cls, d: dict):
    """Build the frozen dataclass ``cls`` from a dict, naming unknown keys instead of ignoring them."""
    check_keys(cls, d)
    return cls(**d)
