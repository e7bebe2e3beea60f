"""∇θ of the sequence KL of a bigram chain (markov, markov-eos; categorical is L = 1), written so that every
component keeps its digits: no 1 − p, no log-normaliser, no q − p formed by subtraction of near-equal numbers.

With Q_i = softmax(z_i) the policy's rows (z: transition logits; q_0 = softmax(z_0) the first token), P_i and
p_0 the reference's (logits y), D_ij = log Q_ij − log P_ij, and H_t(i) the KL still to come from position t
given y_{t−1} = i (the chain rule of KL, Cover & Thomas, Elements of Information Theory, Thm 2.5.3):

    KL(π_θ‖π_ref) = Σ_j q_0j (D_0j + H_1(j)),   H_t(i) = Σ_j Q_ij (D_ij + H_{t+1}(j)),   H_L = 0

Differentiating a softmax-weighted sum Σ_j Q_j a_j (a_j = D_j + H(j); Σ_j Q_j ∂D_j/∂z_k = 0) gives
Q_k Σ_j Q_j (a_k − a_j), and a_k − a_j = (z_k − z_j) − (y_k − y_j) + H(k) − H(j) comes from logit
differences, so

    ∂KL(π_θ‖π_ref)/∂z_{ik} = Σ_{t=1}^{L−1} μ_{t−1}(i) · Q_ik Σ_j Q_ij (a_k − a_j),   a = D_i + H_{t+1}
    ∂KL(π_ref‖π_θ)/∂z_{ik} = Σ_{t=1}^{L−1} ν_{t−1}(i) · (Q_ik − P_ik)

(μ, ν the state marginals under the policy and the reference; the reverse direction's weights do not depend
on θ). Q_k − P_k = Σ_{j≠k} (Q_k P_j − P_k Q_j), each pair as −Q_k P_j·expm1(δ) with δ = (z_j − z_k) −
(y_j − y_k) where |δ| < 1 (no cancellation), as a plain difference elsewhere. With an EOS token (markov-eos)
a sequence ends at it: H(EOS) = 0 and the marginals carry only the mass still running. Float64 numpy.
"""

from __future__ import annotations

import numpy as np

from ...directions import POLICY_REF, REF_POLICY


def log_softmax(z: np.ndarray) -> np.ndarray:
    """Rows of logits (…, V) → log-probs, log p_m = −log1p(Σ_{i≠m} e^{z_i − z_m}) at the argmax m."""
    z = np.asarray(z, dtype=float)
    top = np.argmax(z, axis=-1)[..., None]
    shifted = z - np.take_along_axis(z, top, -1)
    hot = np.zeros(z.shape, dtype=bool)
    np.put_along_axis(hot, top, True, -1)
    lse = np.log1p(np.where(hot, 0.0, np.exp(shifted)).sum(-1, keepdims=True))
    return np.where(hot, -lse, shifted - lse)


def _push(lq: np.ndarray, a_diff: np.ndarray) -> np.ndarray:
    """∂/∂z_k Σ_j Q_j a_j = Q_k Σ_j Q_j (a_k − a_j) for one softmax row; ``a_diff[k, j]`` = a_k − a_j."""
    return (np.exp(lq[:, None] + lq[None, :]) * a_diff).sum(1)


def _gap(lq: np.ndarray, lp: np.ndarray, z: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Q_k − P_k of one row without subtracting near-equal numbers (module docstring)."""
    delta = (z[None, :] - z[:, None]) - (y[None, :] - y[:, None])  # [k, j] = (z_j − z_k) − (y_j − y_k)
    qp = np.exp(lq[:, None] + lp[None, :])  # Q_k P_j
    pq = np.exp(lp[:, None] + lq[None, :])  # P_k Q_j
    with np.errstate(over="ignore", invalid="ignore"):
        pair = np.where(np.abs(delta) < 1, -qp * np.expm1(np.clip(delta, -1, 1)), qp - pq)
    np.fill_diagonal(pair, 0.0)
    return pair.sum(1)


def chain_kl_gradients(z0, z, y0, y, length: int, eos: int | None = None) -> dict[str, np.ndarray]:
    """{direction: (V + V²,) gradient} (init then trans row-major; (V,) when ``z`` is None: one token).
    z0, y0: (V,) first-token logits of policy and reference; z, y: (V, V) transition logits or None."""
    z0, y0 = np.asarray(z0, dtype=float), np.asarray(y0, dtype=float)
    v = len(z0)
    lq0, lp0 = log_softmax(z0), log_softmax(y0)
    diff0 = (z0[:, None] - z0[None, :]) - (y0[:, None] - y0[None, :])
    if z is None or length == 1:
        zero = np.zeros(v * v) if z is not None else np.zeros(0)
        return {POLICY_REF: np.concatenate([_push(lq0, diff0), zero]),
                REF_POLICY: np.concatenate([_gap(lq0, lp0, z0, y0), zero])}
    z, y = np.asarray(z, dtype=float), np.asarray(y, dtype=float)
    lq, lp = log_softmax(z), log_softmax(y)
    q, p = np.exp(lq), np.exp(lp)
    running = np.ones(v)
    if eos is not None:
        running[eos] = 0.0
    rows = (q * (lq - lp)).sum(1) * running  # KL(Q_i‖P_i); a stopped state contributes nothing
    diff = (z[:, :, None] - z[:, None, :]) - (y[:, :, None] - y[:, None, :])  # [i, k, j]
    h = [np.zeros(v)] * (length + 1)  # h[t]: KL still to come from position t, given the token at t − 1
    for t in range(length - 1, 0, -1):
        h[t] = (rows + q @ h[t + 1]) * running
    mu, nu = [np.exp(lq0)], [np.exp(lp0)]
    for _ in range(1, length - 1):
        mu.append((mu[-1] * running) @ q)
        nu.append((nu[-1] * running) @ p)
    fwd, rev = np.zeros((v, v)), np.zeros((v, v))
    gaps = np.stack([_gap(lq[i], lp[i], z[i], y[i]) for i in range(v)])
    for t in range(1, length):
        weight_mu, weight_nu = mu[t - 1] * running, nu[t - 1] * running
        future = h[t + 1][:, None] - h[t + 1][None, :]
        fwd += weight_mu[:, None] * np.stack([_push(lq[i], diff[i] + future) for i in range(v)])
        rev += weight_nu[:, None] * gaps
    init_fwd = _push(lq0, diff0 + (h[1][:, None] - h[1][None, :]))
    return {POLICY_REF: np.concatenate([init_fwd, fwd.ravel()]),
            REF_POLICY: np.concatenate([_gap(lq0, lp0, z0, y0), rev.ravel()])}
