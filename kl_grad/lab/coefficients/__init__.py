"""The c(d) wing: kind ``coefficients`` (``kind.py``) and ``kl-grad coefficients`` (``cli.py``)."""
