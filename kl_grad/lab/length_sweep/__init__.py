"""The length-sweep wing: kind ``length_sweep`` (sequence placements against length L)."""

from .table import KIND

__all__ = ["KIND"]
