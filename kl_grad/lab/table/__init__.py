"""The gradient-table wing: kind ``gradients`` (``kind.py``), ``kl-grad table`` and ``kl-grad estimators``
(``cli.py``)."""
