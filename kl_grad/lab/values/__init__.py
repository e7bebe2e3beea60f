"""The value-table wing: kind ``values`` and ``kl-grad values``."""

from .kind import KIND

__all__ = ["KIND"]
