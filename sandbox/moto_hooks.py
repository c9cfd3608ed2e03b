"""Replace attributes of moto's classes once, remembering the originals.

The sandbox extends moto through its Python API only: it puts its own methods
on moto's response and model classes. Installing twice (several sandboxes
started one after another in one process) must not wrap a wrapper, so the
original of every replaced attribute is kept here and reused.
"""

from __future__ import annotations

from typing import Any

_ORIGINALS: dict[tuple[Any, str], Any] = {}


def replace(cls: Any, name: str, replacement: Any) -> None:
    """Set ``cls.name`` (a class or module attribute) to ``replacement``; the first call remembers what was there."""
    key = (cls, name)
    if key not in _ORIGINALS:
        _ORIGINALS[key] = cls.__dict__.get(name)
    setattr(cls, name, replacement)


def original(cls: Any, name: str) -> Any:
    """What ``cls.name`` was before the sandbox replaced it."""
    return _ORIGINALS[(cls, name)]
