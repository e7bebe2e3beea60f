"""The group-reward wing: kind ``group_reward`` (``table.py``: the KL part of a group-normalised policy gradient,
GRPO with the KL in the reward; ``expect.py``: its exact and Monte-Carlo expectation)."""
