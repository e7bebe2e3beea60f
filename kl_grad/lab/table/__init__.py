"""The gradient-table wing: kind ``gradients``, ``kl-grad table`` and ``kl-grad estimators``."""

from .kind import KIND

__all__ = ["KIND"]
