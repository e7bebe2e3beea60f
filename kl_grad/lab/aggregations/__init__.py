"""The aggregation wing, how a trainer reduces a batch of sequences: kind ``length_weights`` (``table.py``: kl_loss's
token aggregations on variable-length sequences) and kind ``group_reward`` (``group_table.py``, ``group_expect.py``:
the KL in a group-normalised reward, GRPO with the KL in the reward)."""
