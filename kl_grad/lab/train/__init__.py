"""The training-dynamics wing: kind ``train`` and ``kl-grad train``."""

from .kind import KIND

__all__ = ["KIND"]
