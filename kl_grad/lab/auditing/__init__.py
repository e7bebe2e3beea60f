"""The audit wing: ``audit(fn)`` (``auditor.py``), kind ``audit`` (``kind.py``) and ``kl-grad audit``."""
