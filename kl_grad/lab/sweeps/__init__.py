"""The sweep wing: kind ``sweep`` (``kind.py``; ``table.sweep``: exact curves as the reference moves)."""
