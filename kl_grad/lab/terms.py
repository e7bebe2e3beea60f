"""KL terms under measurement: a registered estimator in a placement (a ``Case``), validated from names.

A term decides the per-sample surrogate whose autograd gradient is measured. The
registered terms are estimator × placement pairs; the value tables measure
estimators alone (``value_estimators``).
"""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import KLGradError, split_names
from ..estimators import ESTIMATORS, Estimator, get_estimator
from ..placements import Placement, get_placement, surrogate
from ..sequences import SequencePlacement, get_sequence_placement, sequence_surrogate


@dataclass(frozen=True)
class Case:
    """One gradient experiment: an estimator in a placement."""

    estimator: Estimator
    placement: Placement | SequencePlacement

    @property
    def key(self) -> tuple[str, str]:
        return (self.estimator.name, self.placement.name)

    def per_sample(self, logp, ref_logp, sampler_logp=None, log_ratio=None):
        """Per-sample surrogate (``placements.surrogate``: logp's shape), or per-sequence for a sequence placement
        (``sequences.sequence_surrogate``: logp (..., L) → (...)); the runner asks every term this."""
        if isinstance(self.placement, SequencePlacement):
            return sequence_surrogate(self.estimator, self.placement, logp, ref_logp, sampler_logp)
        return surrogate(self.estimator, self.placement, logp, ref_logp, sampler_logp, log_ratio)


def make_cases(estimators: list[str] | str, placements: list[str] | str, sequence: bool = False) -> list[Case]:
    """Validated estimator × placement pairs (errors list the allowed names); "k1,k2" strings also work.
    ``sequence``: placements come from ``kl_grad.sequences.SEQUENCE_PLACEMENTS`` (sequence families)."""
    estimators, placements = split_names(estimators), split_names(placements)
    if not estimators:
        raise KLGradError("no estimators given; pass at least one, e.g. k1,k2,k3")
    if not placements:
        raise KLGradError("no placements given; pass at least one, e.g. loss")
    cases, spelled = [], {}
    for e in estimators:
        for p in placements:
            case = Case(get_estimator(e), (get_sequence_placement if sequence else get_placement)(p))
            if case.key in spelled:
                first = spelled[case.key]
                alias = f" ({first} and {e} are the same estimator)" if first != e.strip() else ""
                where = f" in placement {case.key[1]}" if len(placements) > 1 else ""
                raise KLGradError(f"{case.key[0]}{where} is given twice{alias}")
            spelled[case.key] = e.strip()
            cases.append(case)
    return cases


def value_estimators(names: list[str] | str) -> list[Estimator]:
    """Validated estimators whose value estimates a KL (gradient-only surrogates such as r are refused)."""
    ests = [case.estimator for case in make_cases(names, "loss")]  # names, emptiness and duplicates checked there
    for e in ests:
        if e.gradient_only:
            allowed = ", ".join(name for name, est in ESTIMATORS.items() if not est.gradient_only)
            raise KLGradError(f"{e.name} ({e.formula}) is a gradient surrogate, not a KL value estimator; "
                              f"value estimators: {allowed}")
    return ests
