"""The one exception type for bad input, and the one lookup that names what is allowed.

The CLI turns ``KLGradError`` into a one-line error with exit status 2. Every
lookup of a user-supplied name in a closed set goes through ``choose``, so
every "unknown X; expected one of ..." message is written here and only here.
"""

from __future__ import annotations

from typing import Mapping


class KLGradError(ValueError):
    """Invalid user input (unknown name, malformed spec, out-of-range number)."""


def choose(kind: str, name: str, registry: Mapping, aliases: Mapping[str, str] | None = None,
           retired: Mapping[str, str] | None = None) -> object:
    """``registry[name]`` (or ``registry[aliases[name]]``), else an error listing the allowed keys and aliases.
    ``retired``: {old name: what to use instead}; a retired name gets that message, not a lookup."""
    if retired and isinstance(name, str) and name in retired:
        raise KLGradError(f"{kind} {name!r} is retired: {retired[name]}")
    try:
        return registry[(aliases or {}).get(name, name)]
    except (KeyError, TypeError):  # TypeError: an unhashable name, e.g. a TOML list
        allowed = ", ".join([*registry, *(aliases or {})])
        raise KLGradError(f"unknown {kind} {name!r}; expected one of {allowed}") from None


def split_names(names) -> list[str]:
    """A list of names from a list or a comma-separated string ("k1, k2"), blanks dropped."""
    if isinstance(names, str):
        names = names.split(",")
    return [n.strip() for n in names if n.strip()]
