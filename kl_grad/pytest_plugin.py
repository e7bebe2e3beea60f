"""pytest plugin (registered by ``pip install kl_grad`` through the ``pytest11`` entry point): the ``kl_audit``
fixture.

    def test_kl_term(kl_audit):
        kl_audit.assert_unbiased(my_kl_loss)                   # policy||ref by default
        kl_audit.assert_follows(my_k3_loss, "ref||policy")
        result = kl_audit.audit(my_kl_loss)                    # the full AuditResult

The lab is imported only when a test uses the fixture.
"""

from __future__ import annotations

import pytest

from .directions import POLICY_REF


class KLAudit:
    """The fixture's value: ``kl_grad.testing``'s assertions and ``kl_grad.audit`` as methods."""

    def assert_unbiased(self, fn, direction: str = POLICY_REF, **options) -> None:
        __tracebackhide__ = True
        from .testing import assert_unbiased_kl_gradient

        assert_unbiased_kl_gradient(fn, direction, **options)

    def assert_follows(self, fn, direction: str, **options) -> None:
        __tracebackhide__ = True
        from .testing import assert_kl_gradient_follows

        assert_kl_gradient_follows(fn, direction, **options)

    def audit(self, fn, **options):
        from .lab.auditing.auditor import audit

        return audit(fn, **options)


@pytest.fixture
def kl_audit() -> KLAudit:
    """Assertions on a KL term's expected autograd gradient (see ``kl_grad.testing``)."""
    return KLAudit()
