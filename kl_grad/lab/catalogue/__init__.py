"""The framework-catalogue wing: kind ``frameworks`` (each term measured) and ``kl-grad frameworks``."""

from .table import KIND

__all__ = ["KIND"]
