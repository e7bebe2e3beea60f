"""The audit wing: ``audit(fn)``, kind ``audit`` and ``kl-grad audit``."""

from .auditor import AuditResult, audit
from .kind import KIND

__all__ = ["KIND", "AuditResult", "audit"]
