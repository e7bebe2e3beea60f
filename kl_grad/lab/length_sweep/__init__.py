"""The length-sweep wing: kind ``length_sweep`` (sequence placements against length L)."""

import importlib

_NAMES = {'KIND': 'table'}
# (loaded on first use: importing the wing, e.g. for its cli, stays light)


def __getattr__(name: str):
    if name in _NAMES:
        return getattr(importlib.import_module(f".{_NAMES[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = sorted(_NAMES)
