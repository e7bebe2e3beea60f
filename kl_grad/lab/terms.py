"""KL terms under measurement: a registered estimator in a placement (a ``Case``), validated from names.

A term decides the per-sample surrogate whose autograd gradient is measured. The
registered terms are estimator × placement pairs; the value tables measure
estimators alone (``value_estimators``).
"""

from __future__ import annotations

from dataclasses import dataclass

from ..directions import POLICY_REF, REF_POLICY
from ..errors import KLGradError, split_names
from ..estimators import ESTIMATORS, Estimator, get_estimator
from ..full import FULL_PLACEMENTS, full_surrogate, step_kl
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


@dataclass(frozen=True)
class FullEstimator:
    """The analytic per-position KL of the whole next-token distributions (``kl_grad.full``): not a function
    of one sampled log-ratio, so it has no k(d); the attributes the runners ask an estimator for."""

    name: str
    direction: str
    formula: str
    kinked: bool = False
    clamp_active = None
    gradient_only: bool = False

    def of_log_ratio(self, d):  # k(0) = 0 for padding checks: a padded position's KL_t is masked to 0
        return d * 0


@dataclass(frozen=True)
class FullPlacement:
    name: str
    formula: str


FULL_ESTIMATORS = {
    "full": FullEstimator("full", POLICY_REF, "KL(π_θ(·|y_<t) ‖ π_ref(·|y_<t)) per position (the whole vocabulary)"),
    "reverse_full": FullEstimator("reverse_full", REF_POLICY, "KL(π_ref(·|y_<t) ‖ π_θ(·|y_<t)) per position"),
}


@dataclass(frozen=True)
class FullCase:
    """The full-vocabulary KL in a ``kl_grad.full.FULL_PLACEMENTS`` placement; the runner hands it both
    distributions (``per_sample_full``), since it reads every position's whole next-token distribution."""

    estimator: FullEstimator
    placement: FullPlacement
    full = True

    @property
    def key(self) -> tuple[str, str]:
        return (self.estimator.name, self.placement.name)

    def per_sample_full(self, policy, ref, points, logp, sampler_logp):
        """Per-point surrogate (logp's shape without the token axis for sequences): Σ_t of the placement's
        per-token terms, from ``step_log_probs`` of both distributions (…, L, V)."""
        one = logp.dim() == points.dim() and not hasattr(policy, "log_trans")  # single tokens: L = 1
        tokens = points.unsqueeze(-1) if one else points
        token_logp = logp.unsqueeze(-1) if one else logp
        base = None if sampler_logp is None else (sampler_logp.unsqueeze(-1) if one else sampler_logp)
        kl = step_kl(policy.step_log_probs(points), ref.step_log_probs(points), self.estimator.direction)
        mask = policy.mask(tokens) if hasattr(policy, "mask") else None
        return full_surrogate(kl, token_logp, base, mask, self.placement.name).sum(-1)


def _full_case(e: str, p: str, others: bool):
    """The FullCase for estimator ``e`` × placement ``p``; None where the pair does not exist but another
    requested estimator takes ``p`` (``others``)."""
    if p.strip() not in FULL_PLACEMENTS:
        if others:
            return None
        raise KLGradError(f"{e.strip()} takes the placements {', '.join(FULL_PLACEMENTS)}, got {p.strip()!r}")
    return FullCase(FULL_ESTIMATORS[e.strip()], FullPlacement(p.strip(), FULL_PLACEMENTS[p.strip()]))


def make_cases(estimators: list[str] | str, placements: list[str] | str, sequence: bool = False) -> list[Case]:
    """Validated estimator × placement pairs (errors list the allowed names); "k1,k2" strings also work.
    ``sequence``: placements come from ``kl_grad.sequences.SEQUENCE_PLACEMENTS`` (sequence families).
    ``full``/``reverse_full`` take ``kl_grad.full.FULL_PLACEMENTS``; in a mixed list each estimator gets the
    requested placements that exist for it (``rb`` only for the full KL)."""
    estimators, placements = split_names(estimators), split_names(placements)
    if not estimators:
        raise KLGradError("no estimators given; pass at least one, e.g. k1,k2,k3")
    if not placements:
        raise KLGradError("no placements given; pass at least one, e.g. loss")
    full = {e for e in estimators if e.strip() in FULL_ESTIMATORS}
    cases, spelled = [], {}
    for e in estimators:
        for p in placements:
            if e in full:
                case = _full_case(e, p, len(full) < len(estimators))
                if case is None:
                    continue
            elif full and p.strip() in FULL_PLACEMENTS and p.strip() not in {"loss", "reward"}:
                continue  # rb: the full KL's alone
            else:
                case = Case(get_estimator(e), (get_sequence_placement if sequence else get_placement)(p))
            if case.key in spelled:
                first = spelled[case.key]
                alias = f" ({first} and {e} are the same estimator)" if first != e.strip() else ""
                where = f" in placement {case.key[1]}" if len(placements) > 1 else ""
                raise KLGradError(f"{case.key[0]}{where} is given twice{alias}")
            spelled[case.key] = e.strip()
            cases.append(case)
        if not any(c.estimator.name == get_name(e) for c in cases):
            takes = ", ".join(FULL_PLACEMENTS) if e in full else "the sequence or token placements (not rb)"
            given = ", ".join(p.strip() for p in placements)
            raise KLGradError(f"{e.strip()} has none of the placements given ({given}); it takes {takes}")
    return cases


def get_name(e: str) -> str:
    """The registered name behind a spelling (aliases included)."""
    e = e.strip()
    return FULL_ESTIMATORS[e].name if e in FULL_ESTIMATORS else get_estimator(e).name


def value_estimators(names: list[str] | str) -> list[Estimator]:
    """Validated estimators whose value estimates a KL (gradient-only surrogates such as r are refused)."""
    ests = [case.estimator for case in make_cases(names, "loss")]  # names, emptiness and duplicates checked there
    for e in ests:
        if isinstance(e, FullEstimator):
            raise KLGradError(f"{e.name} is the KL of whole next-token distributions, exact by construction: value "
                              "tables take per-sample estimators (k1, k2, k3, ...); kl-grad table measures its "
                              "gradient")
        if e.gradient_only:
            allowed = ", ".join(name for name, est in ESTIMATORS.items() if not est.gradient_only)
            raise KLGradError(f"{e.name} ({e.formula}) is a gradient surrogate, not a KL value estimator; "
                              f"value estimators: {allowed}")
    return ests
