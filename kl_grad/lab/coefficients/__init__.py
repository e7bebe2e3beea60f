"""The c(d) wing: kind ``coefficients`` and ``kl-grad coefficients``."""

from .kind import KIND

__all__ = ["KIND"]
