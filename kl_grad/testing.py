"""Assertions on a KL term's gradient for your own test suite (pytest or any other runner).

    from kl_grad.testing import assert_unbiased_kl_gradient, assert_kl_gradient_follows

    def test_my_kl_term():
        assert_unbiased_kl_gradient(my_kl_loss, direction="policy||ref")

Both run ``kl_grad.audit`` (the lab's problem battery, float64, exact where quadrature or enumeration
converges and seeded Monte Carlo elsewhere), so they are deterministic by default: the same function gives
the same verdict on every run. A failure is an ``AssertionError`` naming the problem, the parameter, the
measured mean gradient, the KL gradient, the bias, its uncertainty and the threshold (MC: t·se at the lab's
false-alarm rate 6.3e-5 per parameter; exact: the mean's numerical error, at least 1e-8 relative).

Importing this module loads the lab (pandas, scipy); the pytest plugin (``kl_grad.pytest_plugin``) gives the
same checks as the ``kl_audit`` fixture.
"""

from __future__ import annotations

from typing import Callable

from .directions import POLICY_REF, ZERO, resolve_direction

__all__ = ["assert_kl_gradient_follows", "assert_unbiased_kl_gradient"]


def _audit(fn, kwargs, placement, seed, problems):
    __tracebackhide__ = True  # pytest shows the caller's assertion, not these frames
    from .errors import KLGradError
    from .lab.auditing.auditor import SEED, audit

    if (placement or "").strip() == "group-reward":  # its rows carry a norm verdict, no per-parameter tolerances
        raise KLGradError("kl_grad.testing does not take placement 'group-reward'; read kl_grad.audit(fn, "
                          "placement='group-reward', group=...).follows_sequence instead")
    return audit(fn, kwargs=kwargs, placement=placement, seed=SEED if seed is None else seed, problems=problems)


def _checked(result, off_policy: bool, sequences: bool) -> list[dict]:
    """The problems an assertion judges; none is an error (a filter that selects nothing must not pass)."""
    __tracebackhide__ = True
    kept = [p for p in result.problems
            if (p["on_policy"] or off_policy) and (sequences or not p.get("sequence"))]
    if not kept:
        names = [p["problem"] for p in result.problems]
        kind = ("" if off_policy else "on-policy ") + ("" if sequences else "single-token ")
        raise AssertionError(f"{result.name}: no problem was checked: problems={names} holds no {kind}problem "
                             "(pass off_policy=True or sequences=True, or choose other problems)")
    return kept


def _failures(result, direction: str, off_policy: bool, sequences: bool = False) -> list[tuple[bool, str]]:
    """(is it a sequence problem, the line) for each problem or parameter off ∇KL(direction)."""
    __tracebackhide__ = True
    lines = []
    for p in _checked(result, off_policy, sequences):
        seq = bool(p.get("sequence"))
        if direction in p["follows"].split(" and "):
            continue
        if p["follows"] == "unknown":
            lines.append((seq, f"{p['problem']}: no verdict ({p['mode']}): the gradient's variance or tail refused it"))
            continue
        for q in p["params"]:
            true, tol = q[f"true_grad_vs_{direction}"], q[f"tolerance_vs_{direction}"]
            bias = q["mean_grad"] - true
            if abs(bias) > tol:
                lines.append((seq, f"{p['problem']} (policy {p['policy']}, ref {p['ref']}, sampler {p['sampler']}, "
                             f"{p['mode']}), d/d{q['param']}: mean gradient {q['mean_grad']:.6g} vs ∇KL({direction}) "
                             f"{true:.6g}: bias {bias:.3g} ± {q['se']:.2g} (se), threshold {tol:.3g}"))
    return lines


def assert_unbiased_kl_gradient(fn: Callable, direction: str = POLICY_REF, *, kwargs: dict | None = None,
                                placement: str | None = None, off_policy: bool = False, seed: int | None = None,
                                problems: list[str] | None = None, sequences: bool = False) -> None:
    """Fail unless E[autograd gradient of ``fn``] equals ∇KL in ``direction`` on every on-policy problem.

    Args:
        fn: ``fn(logp, ref_logp)`` or ``fn(logp, ref_logp, old_logp)``, as ``kl_grad.audit`` takes it.
        direction: ``policy||ref`` (KL(π_θ‖π_ref)) or ``ref||policy`` (aliases as ``resolve_direction``).
        kwargs, placement: as for ``kl_grad.audit``.
        off_policy: also require it on the off-policy problems (a function taking old_logp; samples from a
            behaviour policy m ≠ π_θ).
        seed: the Monte-Carlo seed (default: the audit's fixed one, so the verdict is deterministic).
        problems: battery problem names to check (default: all), e.g. ["gauss-near", "tokens-3"] for speed.
        sequences: also require it on the sequence problems (Markov chains; fn gets per-token log-probs
            (..., L), tokens last), against the sequence-level KL. Off by default: a per-token loss that is
            unbiased for one token gives only the token-level partial gradient there (issue 12).
    """
    __tracebackhide__ = True
    direction = resolve_direction(direction)
    result = _audit(fn, kwargs, placement, seed, problems)
    lines = _failures(result, direction, off_policy, sequences)
    if lines:
        fields = ([f"follows {result.follows} (expected {direction})"] if any(not s for s, _ in lines) else []) + (
            [f"follows_sequence {result.follows_sequence} (expected {direction})"] if any(s for s, _ in lines) else [])
        raise AssertionError(f"{result.name}: {'; '.join(fields)}: the expected gradient is not an unbiased "
                             f"∇KL({direction}) on:\n  " + "\n  ".join(line for _, line in lines))


def assert_kl_gradient_follows(fn: Callable, direction: str, *, kwargs: dict | None = None,
                               placement: str | None = None, seed: int | None = None,
                               problems: list[str] | None = None, sequences: bool = False) -> None:
    """Fail unless the audit's overall ``follows`` is ``direction`` (``policy||ref``, ``ref||policy`` or
    ``zero``): the direction every on-policy single-token problem's expected gradient agrees on; with
    ``sequences``, ``follows_sequence`` (the sequence problems') must be it too. Options as for
    ``assert_unbiased_kl_gradient``."""
    __tracebackhide__ = True
    target = direction if direction == ZERO else resolve_direction(direction)
    result = _audit(fn, kwargs, placement, seed, problems)
    _checked(result, False, sequences)
    ran_sequences = any(p.get("sequence") for p in result.problems)
    if sequences and not ran_sequences:
        raise AssertionError(f"{result.name}: sequences=True but no sequence problem was run "
                             f"(problems={[p['problem'] for p in result.problems]})")
    if result.follows == target and (not sequences or not ran_sequences or result.follows_sequence == target):
        return
    if target == ZERO:
        lines = [f"{p['problem']}: follows {p['follows']}" for p in result.problems
                 if p["on_policy"] and p["follows"] != ZERO and (sequences or not p.get("sequence"))]
    else:
        lines = [line for _, line in _failures(result, target, False, sequences)]
    field = ("follows", result.follows) if result.follows != target else ("follows_sequence", result.follows_sequence)
    raise AssertionError(f"{result.name}: {field[0]} {field[1]} (expected {target}):\n  "
                         + "\n  ".join(lines or ["(no on-policy problem gave a verdict)"]))
