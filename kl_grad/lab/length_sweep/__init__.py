"""The length-sweep wing: kind ``length_sweep`` (``table.py``: sequence placements against length L)."""
