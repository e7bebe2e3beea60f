"""The aggregation wing: kind ``length_weights`` (kl_loss aggregations on variable-length sequences)."""

from .table import KIND

__all__ = ["KIND"]
