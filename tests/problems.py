"""Reference problems shared by the tests: policy, reference and (off-policy) sampler, each with its source.

Specs are text (``normal:LOC,SCALE``, ``categorical:L0,L1,...``) so that the package reads them with
``parse_spec`` and the oracles (tests/oracles.py) by hand. Generic tests loop over ``PROBLEMS`` (or one of
the selections below it); a test about one configuration uses its name (``SEED003``, ...).
``TAILS`` holds the heavy- and far-tailed references behind exact mode's refusals.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class RefProblem:
    name: str  # pytest id
    policy: str  # π_θ: its parameters are differentiated
    ref: str  # π_ref
    sampler: str | None = None  # off-policy sampling distribution m; None: on-policy (m = π_θ)
    finite: bool = True  # in every placement, every seed-003 estimator's per-sample gradient has a finite mean
    #                      and variance within the quadrature's reach: exact mode refuses neither (a 4th-moment
    #                      warning may remain)

    @property
    def family(self) -> str:
        return self.policy.partition(":")[0]

    @property
    def on_policy(self) -> bool:
        return self.sampler is None

    @property
    def args(self) -> tuple[str, str, str | None]:
        return self.policy, self.ref, self.sampler


# --- Normal, on-policy ---------------------------------------------------------------------------
# Seed 003's reference pair, π_θ = N(0,1), π_ref = N(1,1.1): the README's headline table, seed 003's
# script and tables (experiments/seed003_*.toml), and seed 001's on-policy table (seed001_onpolicy_*).
SEED003 = RefProblem("seed003", "normal:0,1", "normal:1,1.1")
# Schulman (2020), "Approximating KL divergence": q = N(0,1), p = N(0.1,1) and p = N(1,1), his two value
# tables (experiments/schulman_{close,far}_*.toml).
SCHULMAN_CLOSE = RefProblem("schulman-close", "normal:0,1", "normal:0.1,1")
SCHULMAN_FAR = RefProblem("schulman-far", "normal:0,1", "normal:1,1")
# Both policy parameters away from the standard ones, reference wider (σ_ref/σ_θ = 1.22 < √2): written for
# the exact-mode tests, so that no component is 0 and loc and scale both move.
SHIFTED = RefProblem("shifted", "normal:0.3,0.9", "normal:-0.5,1.1")
# A narrower reference two standard deviations away (exact-mode tests).
NARROW_REF = RefProblem("narrow-ref", "normal:0,1", "normal:2,0.8")
# A close, slightly narrower reference (the third MC-vs-exact configuration of the exact-mode tests).
CLOSE_NARROW = RefProblem("close-narrow", "normal:0,1", "normal:0.5,0.9")
# verl's clamps bite: the reference 3.5σ away and wider, k3 > 10 on 0.64% of samples
# (experiments/clamps_far_reference.toml). Means are exact; the r-based variances do not settle.
CLAMPS = RefProblem("clamps", "normal:0,1", "normal:3.5,1.2", finite=False)

# --- Normal, off-policy --------------------------------------------------------------------------
# Seed 001's off-policy table: seed 003's pair, samples from a behaviour policy N(0.3,1.2)
# (experiments/seed001_offpolicy_*.toml).
SEED001_OFF = RefProblem("seed001-off", "normal:0,1", "normal:1,1.1", "normal:0.3,1.2")

# --- Normal, only for closed forms (true gradients) ----------------------------------------------
# Wide ranges of loc and scale for the closed-form KL gradients; written for the true-gradient tests.
# Their r-based gradients have infinite variance (σ_ref ≥ √2 σ_θ) or mass beyond the quadrature's reach.
WIDE_REF = RefProblem("wide-ref", "normal:0.3,0.7", "normal:-0.5,2", finite=False)
NARROW_FAR_REF = RefProblem("narrow-far-ref", "normal:-1.5,2.5", "normal:0.25,0.4", finite=False)
NARROW_POLICY = RefProblem("narrow-policy", "normal:2,0.3", "normal:-3,1.7", finite=False)

# --- Categorical (one token position of a language model; θ = the logits) -----------------------
# The README's token example: softmax over 4 tokens (experiments/tokens_placements_*.toml).
TOKENS = RefProblem("tokens", "categorical:0,0.5,-1,0.2", "categorical:0.3,-0.2,0.4,0")
# Three tokens, with a uniform behaviour policy for the off-policy case (written for the autograd-form tests).
TOKENS3 = RefProblem("tokens3", "categorical:0,0.5,-1", "categorical:1,0,0")
TOKENS3_OFF = RefProblem("tokens3-off", "categorical:0,0.5,-1", "categorical:1,0,0", "categorical:0,0,0")

PROBLEMS = [SEED003, SCHULMAN_CLOSE, SCHULMAN_FAR, SHIFTED, NARROW_REF, CLOSE_NARROW, CLAMPS, SEED001_OFF,
            WIDE_REF, NARROW_FAR_REF, NARROW_POLICY, TOKENS, TOKENS3, TOKENS3_OFF]


def select(*, family: str | None = None, on_policy: bool | None = None, finite: bool | None = None):
    """The problems with these properties (None: either)."""
    return [p for p in PROBLEMS
            if (family is None or p.family == family) and (on_policy is None or p.on_policy == on_policy)
            and (finite is None or p.finite == finite)]


# --- Tails: exact mode's refusals (lab/tails.py), policy N(0,1) ----------------------------------
# For r-based estimators (k3, reverse_k*) the variance integrand r²·q = p²/q grows like exp(c·x²) with
# c = (1 − 2/σ_ref²)/2 for σ_θ = 1: E_q[r²] diverges once σ_ref ≥ √2 σ_θ (README, "Heavy and far tails").
# The README's far reference: E[∇k3] = ∇KL(ref‖policy) = (−30, −900) is carried by x ≈ 30σ, where no policy
# sample lands; exact mode integrates it where it lies.
FAR_MEAN = RefProblem("far-mean", "normal:0,1", "normal:30,1", finite=False)
# The README's overflowing reference: r = e^1800 at x = 60, where the mean's mass lies: refused, never wrong.
FAR_OVERFLOW = RefProblem("far-overflow", "normal:0,1", "normal:60,1", finite=False)
# The mean integrand p·s peaks at 10σ; the variance's r²·s²·q = p²/q·s² at 20σ, where it is e^100 large.
FAR_VARIANCE = RefProblem("far-variance", "normal:0,1", "normal:10,1", finite=False)
# σ_ref = 1.4 < √2: a finite variance whose mass lies beyond reach ("far", not "infinite").
FINITE_UNREACHABLE = RefProblem("finite-unreachable", "normal:0,1", "normal:0.5,1.4", finite=False)
# σ_ref = 1.45 > √2: the variance diverges.
JUST_INFINITE = RefProblem("just-infinite", "normal:0,1", "normal:0.5,1.45", finite=False)
# σ_ref = 2 = 2σ_θ: infinite variance with a finite, correct mean.
HEAVY = RefProblem("heavy", "normal:0,1", "normal:0.3,2", finite=False)
HEAVY_CENTRED = RefProblem("heavy-centred", "normal:0,1", "normal:0,2", finite=False)
# Equal locations: ∇_loc KL = 0 in both directions (closed form), so relative columns are undefined.
ZERO_LOC_GRADIENT = RefProblem("zero-loc-gradient", "normal:0,1", "normal:0,1.1")

TAILS = [FAR_MEAN, FAR_OVERFLOW, FAR_VARIANCE, FINITE_UNREACHABLE, JUST_INFINITE, HEAVY, HEAVY_CENTRED]
