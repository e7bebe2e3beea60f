"""kl_grad.frameworks: every catalogue term against its hand-written per-token formula (tests/framework_oracles.py),
autograd against finite differences, and kl_loss's framework aggregations and ``term=``."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from kl_grad import KLGradError, kl_loss
from kl_grad.frameworks import FRAMEWORK_TERMS, get_term
from tests import framework_oracles as fo
from tests import framework_oracles_newer as fon
from tests import oracles

# d = lp − ref over every regime: inside all clamps, beyond ±10 values, beyond verl/NeMo's ±20 and
# Open-Instruct's ±40 input clamps; no point sits on a kink.
D = np.array([[-45.0, -30.0, -21.0, -15.0, -5.0], [-2.5, -0.3, 1e-3, 0.7, 3.0], [4.6, 12.0, 19.0, 25.0, 41.0]])
LP = np.array([[-0.5, -1.0, -2.0, -0.1, -3.0], [-0.7, -1.2, -0.05, -2.2, -4.0], [-1.5, -0.3, -0.9, -2.8, -0.6]])
# lp − old: weights from e^−3 to e^3 (beyond OpenRLHF's cap of 10)
SHIFT = np.array([[0.3, -0.2, 3.0, -3.0, 0.1], [2.5, -1.0, 0.0, 0.5, -0.4], [2.4, 1.2, -2.0, 0.9, 2.9]])
SEQUENCE_TERMS = {"trl:k3-bias-corrected-seq"}  # couple the tokens of a sequence: checked separately
TERM = {**fo.TERM, **fon.TERM}


def _run(term, off_policy: bool):
    lp = torch.tensor(LP, dtype=torch.float64, requires_grad=True)
    ref = torch.tensor(LP - D, dtype=torch.float64)
    old = torch.tensor(LP - SHIFT, dtype=torch.float64) if off_policy else None
    s = term.surrogate(lp, ref, old)
    (grad,) = torch.autograd.grad(s.sum(), lp)
    return s.detach().numpy(), grad.numpy()


def test_every_term_has_an_oracle_and_the_catalogue_is_the_expected_size():
    assert set(FRAMEWORK_TERMS) == set(TERM) | SEQUENCE_TERMS and not set(fo.TERM) & set(fon.TERM)
    assert 60 <= len(FRAMEWORK_TERMS) <= 70
    frameworks = {t.framework for t in FRAMEWORK_TERMS.values()}
    assert {"verl", "openrlhf", "trl", "nemo-rl", "slime", "open-instruct", "roll", "skyrl", "tunix", "unsloth",
            "torchforge", "compose-rl", "trinity", "pipelinerl", "areal", "cosmos-rl", "oat", "ms-swift", "marin",
            "liger", "trl-7188", "openrlhf-1335"} <= frameworks
    for t in FRAMEWORK_TERMS.values():
        assert t.source and "/" in t.source, t.name  # repository/file named


@pytest.mark.parametrize("off_policy", [False, True], ids=["on-policy", "off-policy"])
@pytest.mark.parametrize("name", sorted(TERM))
def test_term_value_and_gradient_match_the_hand_formula(name, off_policy):
    value, grad = _run(get_term(name), off_policy)
    want_v, want_g = TERM[name](LP, LP - D, LP - SHIFT if off_policy else None)
    np.testing.assert_allclose(value, want_v, rtol=1e-12, atol=1e-12, err_msg=name)
    # Autograd of w·k3 adds w·k3 and w·k3' (each ~e^|d|) to form w·d: float64 rounding of terms the size of
    # the value, hence an absolute tolerance of 1e-12 × |value| per token on top of 1e-12 relative.
    assert (np.abs(grad - want_g) <= 1e-12 * (np.abs(want_g) + np.abs(want_v) + 1)).all(), (name, grad, want_g)


def test_clamps_fire_where_their_formulas_say():
    # a few hand-picked consequences, independent of the oracle file
    _, g = _run(get_term("openrlhf:k1"), False)
    assert (g[np.abs(D) > 10] == 0).all() and (g[np.abs(D) < 10] == 1).all()  # k1 loss: no gradient beyond 10
    _, g = _run(get_term("verl:low_var_kl"), False)
    assert (g[np.abs(D) > 20] == 0).all()
    _, g = _run(get_term("verl:k3+"), False)
    np.testing.assert_allclose(g, D, rtol=1e-12)  # straight-through: k2's gradient d, never clamped
    _, g = _run(get_term("trl:k3"), False)
    assert (g != 0).all()  # TRL does not clamp


def test_sequence_level_ratio_couples_the_tokens_of_a_sequence():
    term = get_term("trl:k3-bias-corrected-seq")
    mask = np.array([[1, 1, 0, 1, 0], [0, 0, 0, 0, 0], [1, 1, 1, 1, 1]], dtype=np.float64)  # an empty row
    lp = torch.tensor(LP, dtype=torch.float64, requires_grad=True)
    for old in (None, LP - SHIFT):
        s = term.surrogate(lp, torch.tensor(LP - D), None if old is None else torch.tensor(old), torch.tensor(mask))
        (grad,) = torch.autograd.grad((s * torch.tensor(mask)).sum(), lp)
        want_v, want_g = fo.trl_seq(LP, LP - D, old, mask)
        np.testing.assert_allclose(s.detach().numpy() * mask, want_v * mask, rtol=1e-12)
        np.testing.assert_allclose(grad.numpy(), want_g, rtol=1e-12, atol=1e-12)


# Terms whose value is an honest function of lp (given a fixed old_logp): autograd must equal finite differences.
# Excluded: straight-through "+" terms, reward terms and detached weights, whose gradient is by design not the
# value's derivative.
FD_TERMS = sorted(n for n, t in FRAMEWORK_TERMS.items() if t.placement == "loss" and "+" not in n
                  and n not in ("nemo-rl:k3-legacy", "openrlhf:k3-unbiased-gradient", "ms-swift:k3-rollout-is"))
# The reward terms read the sampler's log-probs for their value; their surrogate w·sg(value) is checked above.


@pytest.mark.parametrize("name", FD_TERMS)
def test_autograd_equals_finite_differences_off_policy(name):
    term = get_term(name)
    mask = torch.ones(LP.shape, dtype=torch.float64)
    ref, old = torch.tensor(LP - D), torch.tensor(LP - SHIFT)
    lp = torch.tensor(LP, dtype=torch.float64, requires_grad=True)
    (grad,) = torch.autograd.grad(term.surrogate(lp, ref, old, mask).sum(), lp)
    h = 1e-6
    fd = np.zeros_like(LP)
    for idx in np.ndindex(LP.shape):
        bump = np.zeros_like(LP)
        bump[idx] = h
        up = term.surrogate(torch.tensor(LP + bump), ref, old, mask).sum().item()
        down = term.surrogate(torch.tensor(LP - bump), ref, old, mask).sum().item()
        fd[idx] = (up - down) / (2 * h)
    scale = np.abs(term.surrogate(torch.tensor(LP), ref, old, mask).detach().numpy()).max() + 1
    np.testing.assert_allclose(grad.numpy(), fd, rtol=1e-6, atol=1e-7 * scale, err_msg=name)


def test_unknown_term_lists_the_catalogue():
    with pytest.raises(KLGradError) as info:
        get_term("verl:k4")
    msg = str(info.value)
    assert msg.startswith("unknown framework KL term 'verl:k4'; expected one of verl:kl") and "trl:k3" in msg


# --- kl_loss: framework aggregations, horizon, per-token, term= -------------------------------------------

B, T = 3, 5
MASK = [[1, 1, 1, 0, 0], [0, 0, 0, 0, 0], [1, 0, 1, 1, 1]]  # an empty row


def _batch():
    g = torch.Generator().manual_seed(7)
    logp = (-torch.rand(B, T, generator=g, dtype=torch.float64) * 3).requires_grad_()
    ref = -torch.rand(B, T, generator=g, dtype=torch.float64) * 3
    return logp, ref


@pytest.mark.parametrize("horizon", [None, 8, 2.5])
@pytest.mark.parametrize("mode", ["seq-mean-token-sum-norm", "dr-grpo"])
def test_length_normalised_modes_match_loops_with_horizon(mode, horizon):
    logp, ref = _batch()
    k2 = oracles.VALUE["k2"]((logp - ref).detach().numpy()).tolist()
    got = kl_loss(logp, ref, mask=torch.tensor(MASK, dtype=torch.float64), estimator="k2", placement="loss",
                  aggregation=mode, horizon=horizon)
    assert got.item() == pytest.approx(oracles.aggregate_loop(k2, MASK, mode, horizon), rel=1e-12)


@pytest.mark.parametrize("alias, mode", [("grpo", "seq-mean-token-mean"), ("bnpo", "token-mean"),
                                         ("dapo", "token-mean"), ("dr_grpo", "dr-grpo")])
def test_trl_loss_type_names_are_aliases(alias, mode):
    logp, ref = _batch()
    mask = torch.tensor(MASK, dtype=torch.float64)
    k3 = oracles.VALUE["k3"]((logp - ref).detach().numpy()).tolist()
    got = kl_loss(logp, ref, mask=mask, estimator="k3", placement="loss", aggregation=alias)
    assert got.item() == pytest.approx(oracles.aggregate_loop(k3, MASK, mode), rel=1e-12)


def test_per_token_mode_returns_masked_values_with_their_gradients():
    logp, ref = _batch()
    mask = torch.tensor(MASK, dtype=torch.float64)
    per_token = kl_loss(logp, ref, mask=mask, estimator="k2", placement="loss", aggregation="none")
    d = (logp - ref).detach().numpy()
    assert per_token.shape == logp.shape
    np.testing.assert_allclose(per_token.detach().numpy(), 0.5 * d * d * np.array(MASK), rtol=1e-12)
    (grad,) = torch.autograd.grad(per_token.sum(), logp)
    np.testing.assert_allclose(grad.numpy(), d * np.array(MASK), rtol=1e-12)


@pytest.mark.parametrize("name", ["verl:low_var_kl", "trl:k3-bias-corrected", "nemo-rl:k3", "verl:reward:kl"])
def test_kl_loss_term_is_the_catalogue_surrogate_aggregated(name):
    logp, ref = _batch()
    ref = ref - 12.0  # push some tokens past the ±10 value clamps
    mask = torch.tensor(MASK, dtype=torch.float64)
    got = kl_loss(logp, ref, mask=mask, term=name, aggregation="sum")
    want_v, want_g = fo.TERM[name](logp.detach().numpy(), ref.numpy(), None)
    assert got.item() == pytest.approx(float((want_v * np.array(MASK)).sum()), rel=1e-12)
    (grad,) = torch.autograd.grad(got, logp)
    np.testing.assert_allclose(grad.numpy(), want_g * np.array(MASK), rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("kwargs, message", [
    (dict(aggregation="seq-mean"), "unknown aggregation 'seq-mean'"),
    (dict(aggregation="dr-grpo", horizon=0), "horizon must be a positive finite number"),
    (dict(aggregation="dr-grpo", horizon=float("inf")), "horizon must be a positive finite number"),
    (dict(term="verl:nope"), "unknown framework KL term 'verl:nope'"),
    (dict(estimator="low_var_kl"), "estimator 'low_var_kl' is retired"),
])
def test_bad_kl_loss_arguments_are_one_line_errors(kwargs, message):
    logp, ref = _batch()
    with pytest.raises(KLGradError, match=message):
        kl_loss(logp, ref, **kwargs)


@pytest.mark.parametrize("name", ["verl:kl", "verl:reward:kl", "trl:rloo-reward:k1", "trl:ppo-reward:k3"])
def test_sequence_surrogate_sums_losses_and_gives_rewards_their_returns(name):
    # per token t of a (rows, L) batch: ∂/∂lp_t of loss Σ_t v_t is v'_t; of a reward penalty w_t·(Σ_{t'≥t} v_t') on
    # policy (w_t value 1, gradient 1); of a sequence penalty (RLOO) w_t·Σ_t' v_t'. Values v from the hand formulas.
    lp = torch.tensor(LP, dtype=torch.float64, requires_grad=True)
    term = get_term(name)
    (grad,) = torch.autograd.grad(term.sequence_surrogate(lp, torch.tensor(LP - D)).sum(), lp)
    value, slope = TERM[name](LP, LP - D, None)
    returns = {"loss": slope, "reward": np.cumsum(value[:, ::-1], axis=1)[:, ::-1],
               "reward-seq": np.repeat(value.sum(1, keepdims=True), LP.shape[1], axis=1)}[term.placement]
    np.testing.assert_allclose(grad.numpy(), returns, rtol=1e-12, atol=1e-12)


def test_framework_names_are_read_in_any_case():
    from kl_grad.lab.catalogue.cli import _terms

    for spelled, name in (("Verl", "verl"), ("NEMO-RL", "nemo-rl"), (" openrlhf ", "openrlhf")):
        terms = _terms(spelled)
        assert terms and {t.framework for t in terms} == {name}
