"""The training-dynamics wing: kind ``train`` (``kind.py``) and ``kl-grad train`` (``cli.py``)."""
