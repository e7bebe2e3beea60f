"""The value-table wing: kind ``values`` (``kind.py``) and ``kl-grad values`` (``cli.py``)."""
