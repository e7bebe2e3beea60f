"""The framework-catalogue wing: kind ``frameworks`` (``table.py``: each term measured) and ``kl-grad frameworks``."""
