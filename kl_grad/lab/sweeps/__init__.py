"""The sweep wing: kind ``sweep`` (``sweep.table.sweep``: exact curves as the reference moves)."""

from .kind import KIND
from .table import sweep

__all__ = ["KIND", "sweep"]
