"""The aggregation wing: kind ``length_weights`` (``table.py``: kl_loss aggregations on variable-length
sequences)."""
