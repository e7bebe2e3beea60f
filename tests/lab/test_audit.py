"""kl_grad.audit on KL terms written the way trainers write them (examples/trainer_kl_terms.py).

Oracles are independent of kl_grad: Normal KL gradients in both directions by hand (closed forms of
KL(N(m1,s1)‖N(m2,s2)) differentiated in m1, s1), and the clamp region's probability by scipy (brentq for
the boundary of {x: k3(d(x)) > 10}, the normal cdf for its mass). Verdicts are the audit's, which keep the
lab's false-alarm rate (6.3e-5 per parameter for MC); the zero-mass check allows 4.5 binomial se
(two-sided false-alarm rate 7e-6).
"""

import functools
import math
import os

import numpy as np
import pytest
import torch
from scipy import optimize, stats

from kl_grad.errors import KLGradError
from kl_grad.lab.auditing.auditor import audit
from kl_grad.lab.target import load_target

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
EXAMPLES = os.path.join(ROOT, "examples", "trainer_kl_terms.py")
FAST = ["gauss-near", "gauss-wide-ref", "tokens-3"]  # a Gaussian pair each side of the policy's width, tokens


def term(name):
    return load_target(f"{EXAMPLES}:{name}")


@functools.lru_cache(maxsize=None)
def audited(name, problems=None):
    return audit(term(name), name=name, problems=None if problems is None else list(problems))


def normal_kl_grads(m1, s1, m2, s2):
    """Hand-derived ∇_(m1, s1) of KL(q‖p) and KL(p‖q), q = N(m1, s1), p = N(m2, s2).

    KL(q‖p) = log(s2/s1) + (s1² + (m1−m2)²)/(2 s2²) − ½;  KL(p‖q) = log(s1/s2) + (s2² + (m2−m1)²)/(2 s1²) − ½.
    """
    qp = ((m1 - m2) / s2**2, -1 / s1 + s1 / s2**2)
    pq = ((m1 - m2) / s1**2, 1 / s1 - (s2**2 + (m2 - m1) ** 2) / s1**3)
    return {"policy||ref": qp, "ref||policy": pq}


@pytest.mark.parametrize("name, follows", [
    ("k2_loss", "policy||ref"), ("k3_loss", "ref||policy"), ("k1_loss", "zero"), ("k3_weighted", "policy||ref"),
    ("k1_reward", "policy||ref"), ("k3_plus", "policy||ref"),
])
def test_trainer_terms_are_classified(name, follows):
    result = audited(name)
    assert result.follows == follows, (result.follows, [(p["problem"], p["follows"]) for p in result.problems])
    assert all(p["mode"] == "exact" for p in result.problems)  # smooth float64 terms: no MC needed


@pytest.mark.parametrize("name, direction", [("k2_loss", "policy||ref"), ("k3_loss", "ref||policy")])
def test_mean_gradient_matches_the_hand_derived_normal_kl_gradient(name, direction):
    near = next(p for p in audited(name).problems if p["problem"] == "gauss-near")
    assert (near["policy"], near["ref"]) == ("normal:0,1", "normal:0.3,1.1")
    want = normal_kl_grads(0.0, 1.0, 0.3, 1.1)[direction]
    for q, true in zip(near["params"], want):
        assert abs(q["mean_grad"] - true) <= q["se"] + 1e-12 * abs(true), (q, true)


def test_off_policy_problems_run_only_for_functions_taking_old_logp():
    assert {p["on_policy"] for p in audited("k2_loss").problems} == {True}
    off = [p for p in audited("k3_weighted").problems if not p["on_policy"] and not p["sequence"]]
    assert [p["problem"] for p in off] == ["gauss-near-offpolicy", "tokens-3-offpolicy"]
    assert all(p["follows"] == "policy||ref" for p in off)  # w·k3 with a differentiable w is unbiased off-policy
    # the REINFORCE reward computed from the rollout's log-probs is not (its d is log m − log p, not log q − log p)
    assert all(p["follows"] == "none" for p in audited("k1_reward").problems if not p["on_policy"]
               and not p["sequence"])


def clamp_mass_scipy(m2, s2, cap=10.0):
    """P_{x~N(0,1)}(k3(d(x)) > cap), d = log N(x;0,1) − log N(x;m2,s2): the region's end points by brentq
    between the sign changes of k3(d(x)) − cap on a fine grid over [−40, 40], its mass by the normal cdf."""
    def excess(x):
        d = stats.norm.logpdf(x) - stats.norm.logpdf(x, m2, s2)
        return math.exp(-d) - 1 + d - cap

    grid = np.linspace(-40, 40, 80_001)
    d = stats.norm.logpdf(grid) - stats.norm.logpdf(grid, m2, s2)
    signs = np.sign(np.exp(-d) - 1 + d - cap)
    ends = [-math.inf] + [optimize.brentq(excess, grid[i], grid[i + 1], xtol=1e-14)
                          for i in np.flatnonzero(signs[:-1] != signs[1:])] + [math.inf]
    inside = signs[0] > 0  # the region starts at −∞ when the first grid point is in it
    mass = 0.0
    for lo, hi in zip(ends[:-1], ends[1:]):
        if inside:
            mass += stats.norm.cdf(hi) - stats.norm.cdf(lo)
        inside = not inside
    return mass


def test_verl_clamp_zero_mass_matches_scipy_on_the_far_pair():
    result = audit(term("verl_low_var_kl"), problems=["gauss-far"])
    (far,) = result.problems
    assert (far["policy"], far["ref"]) == ("normal:0,1", "normal:3.5,1.2")
    want = clamp_mass_scipy(3.5, 1.2)
    assert 0.005 < want < 0.008  # the region is visible at this pair (0.64%)
    assert abs(far["zero_mass"] - want) <= 4.5 * far["zero_mass_se"], (far["zero_mass"], far["zero_mass_se"], want)
    assert far["mode"] == "mc"  # a kink: measured by Monte Carlo with standard errors
    (line,) = [w for w in result.warnings if w.startswith("clamp:")]
    assert "gauss-far" in line and f"{100 * far['zero_mass']:.2g}%" in line
    assert far["follows"] == "none"  # the clamped samples' missing gradient is a bias both ways


def test_a_reduced_clamped_loss_shows_the_same_zero_mass():
    def verl_mean(logp, ref_logp):  # the clamped k3 already reduced to a scalar loss, as trainers return it
        kl = torch.clamp(ref_logp - logp, min=-20, max=20)
        return torch.clamp(torch.exp(kl) - kl - 1, min=-10, max=10).mean()

    (reduced,) = audit(verl_mean, problems=["gauss-far"]).problems
    (per_sample,) = audit(term("verl_low_var_kl"), problems=["gauss-far"]).problems
    assert reduced["zero_mass"] == per_sample["zero_mass"] > 0  # the same probe points, the same zeros
    assert [q["mean_grad"] for q in reduced["params"]] == pytest.approx([q["mean_grad"] for q in per_sample["params"]],
                                                                         rel=1e-12)


def test_detached_logp_is_one_line_error():
    with pytest.raises(KLGradError, match="no gradient reaches logp") as err:
        audit(term("k2_detached"))
    assert "\n" not in str(err.value)


def test_float32_function_is_classified_with_a_dtype_note():
    result = audited("k3_float32", tuple(FAST))
    assert result.follows == "ref||policy"
    assert {p["mode"] for p in result.problems} == {"mc"} and {p["dtype"] for p in result.problems} == {"float32"}
    assert any(w.startswith("dtype:") and "float32" in w for w in result.warnings)


def test_float32_inside_a_float64_function_is_detected():
    def k3_cast_back(logp, ref_logp):  # mixed precision: computed in float32, cast back to the input dtype
        d = (logp - ref_logp).float()
        return (torch.exp(-d) - 1 + d).to(logp.dtype)

    result = audit(k3_cast_back, problems=FAST)
    assert result.follows == "ref||policy" and {p["mode"] for p in result.problems} == {"mc"}
    assert any(w.startswith("dtype:") and "lower precision inside" in w for w in result.warnings)
    assert all(p["frozen"] == 0 for p in audited("k2_loss").problems)  # a float64 function is never frozen
    assert all(p["frozen"] == 0 for p in audited("k3_plus").problems)  # nor a straight-through one


def test_reduced_scalar_output_gives_the_per_sample_gradient():
    def k2_mean(logp, ref_logp):
        return (0.5 * (logp - ref_logp) ** 2).mean()

    result = audit(k2_mean, problems=["gauss-near"])
    assert result.follows == "policy||ref"
    for q, true in zip(result.problems[0]["params"], normal_kl_grads(0.0, 1.0, 0.3, 1.1)["policy||ref"]):
        assert abs(q["mean_grad"] - true) <= q["se"] + 1e-12, (q, true)


def test_placement_wraps_a_value_style_function_and_kwargs_bind():
    def kl_value(logp, ref_logp, kl_penalty="kl"):  # a framework-style dispatch on a keyword
        d = logp - ref_logp
        return d if kl_penalty == "kl" else 0.5 * d * d

    assert audit(kl_value, placement="reward", problems=FAST).follows == "policy||ref"  # w·sg(k1): REINFORCE
    assert audit(kl_value, problems=FAST).follows == "zero"  # k1 as a loss
    assert audit(kl_value, kwargs={"kl_penalty": "mse"}, problems=FAST).follows == "policy||ref"  # k2
    with pytest.raises(KLGradError, match="takes no parameter"):
        audit(kl_value, kwargs={"coef": 1})


def test_float32_instability_is_detected_from_the_gradients():
    def shifted_k2(logp, ref_logp):  # adds then subtracts 1e4: float32 keeps ~1e-3 of d, float64 all of it
        return 0.5 * ((logp + 1e4) - (ref_logp + 1e4)) ** 2

    unstable = audit(shifted_k2, problems=["gauss-near"]).warnings
    assert any(w.startswith("float32: numerically unstable") for w in unstable)
    assert not any(w.startswith("float32") for w in audited("k2_loss").warnings)


@pytest.mark.parametrize("fn, match", [
    (lambda logp, ref_logp: (logp - ref_logp).mean(0), "returned shape"),  # tokens last: (rows, cols, 1) in
    (lambda logp, ref_logp: logp * float("nan"), "NaN for every sample"),
    (lambda logp, ref_logp: [logp], "expected a torch.Tensor"),
    (lambda logp: logp, "wrong signature"),
    (lambda logp, ref_logp: logp.undefined_method(), "raised AttributeError"),
])
def test_bad_functions_are_one_line_errors(fn, match):
    with pytest.raises(KLGradError, match=match) as err:
        audit(fn, problems=["tokens-3"])
    assert "\n" not in str(err.value)


def test_negative_values_warning_and_determinism():
    from kl_grad.lab.auditing.auditor import audit_problem
    from kl_grad.lab.auditing.battery import battery
    from kl_grad.lab.auditing.user_term import UserTerm

    assert any(w.startswith("negative values") for w in audited("k1_loss").warnings)
    assert not any(w.startswith("negative values") for w in audited("k2_loss").warnings)
    far = next(ap for ap in battery(False) if ap.name == "gauss-far")
    t = UserTerm(term("verl_low_var_kl"), "verl")
    first, second = audit_problem(t, far)[0], audit_problem(t, far)[0]
    assert first == second  # seeded MC and probe: the same digits on a rerun


def test_audit_is_reachable_from_the_top_level():
    import kl_grad
    from kl_grad.lab.auditing.auditor import audit as lab_audit

    assert kl_grad.audit is lab_audit
