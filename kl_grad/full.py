"""The full-vocabulary KL: every position's analytic KL between the two next-token distributions, and the
Rao–Blackwellised sequence gradient built on it.

A trainer holds both models' logits at every position, so instead of a one-sample estimate k(d_t) it can use

    KL_t = KL(π_θ(·|y_<t) ‖ π_ref(·|y_<t)) = Σ_v p_v (log p_v − log r_v)        (exact, no sampling noise)

(Amini, Vieira & Cotterell, "Better Estimation of the KL Divergence Between Language Models", arXiv
2504.10637, NeurIPS 2025; code rycolab/kl-rb). Placements (per token t, mask m_t; W_{t−1} = Π_{τ<t} w_τ,
w_τ = π_θ(y_τ|y_<τ)/sg(old_τ), old = the sampler's log-probs, on-policy sg(π_θ): value 1, gradient the score):

    loss     KL_t                          gradient Σ_t ∇KL_t: the token-level partial gradient (prefixes fixed)
    rb       W_{t−1}·KL_t                  gradient Σ_t ∇KL_t + Σ_τ s_τ·Σ_{t>τ} KL_t on-policy: ∇ of the sequence
                                           KL(π_θ‖π_ref) = E[Σ_t KL_t], unbiased off-policy too (prefix weights)
    reward   w_t·sg(Σ_{t'>t} KL_t')        REINFORCE of the analytic KL with reward-to-go: the score part only

Direction ``ref||policy`` uses KL(π_ref(·|y_<t) ‖ π_θ(·|y_<t)) per position; under samples from π_θ its
sequence sum is not KL(π_ref‖π_θ) of the sequence (that expectation runs under π_ref), except for one token.

``full_kl_loss`` takes (batch, tokens, vocab) logits and forms each position's KL and token log-prob with a
``torch.autograd.Function`` that works on row chunks (``chunk_elements`` logits at a time, float32; float64
for float64 logits) and
recomputes them in backward, so beyond the logits' own gradient it allocates a chunk, not another
(batch·tokens, vocab) tensor.
"""

from __future__ import annotations

import torch

from .aggregations import AGGREGATION_ALIASES, AGGREGATIONS, PER_TOKEN
from .directions import POLICY_REF, resolve_direction
from .errors import KLGradError, choose
from .placements import SECOND_DERIVATIVE
from .sequences import exclusive_prefix, to_come

Tensor = torch.Tensor
FULL_PLACEMENTS = {
    "loss": "KL_t (the token-level partial gradient)",
    "rb": "W_{t−1}·KL_t (Rao–Blackwellised: the sequence gradient, on- and off-policy)",
    "reward": "w_t·sg(Σ_{t'>t} KL_t') (REINFORCE of the analytic KL, reward-to-go)",
}
CHUNK_ELEMENTS = 1 << 22  # logits per chunk (16 MiB in float32, a few such temporaries live at once)


def step_kl(logp_all: Tensor, ref_all: Tensor, direction: str = POLICY_REF) -> Tensor:
    """(…, V) normalised log-probs of the policy and the reference → (…,) analytic KL in ``direction``
    (plain torch operations: autograd differentiates it as written). 0·log 0 terms are 0."""
    a, b = (logp_all, ref_all) if direction == POLICY_REF else (ref_all, logp_all)
    pa = torch.exp(a)
    # the where sits inside the product: a −inf log-prob (p = 0) then gives gradient 0, not 0·(−inf) = NaN
    return (pa * torch.where(pa > 0, a - b, torch.zeros((), dtype=pa.dtype))).sum(-1)


def full_surrogate(kl: Tensor, token_logp: Tensor, base_logp: Tensor | None, mask: Tensor | None,
                   placement: str) -> Tensor:
    """Per-token surrogate terms (…, L) of a ``FULL_PLACEMENTS`` entry from per-position KLs ``kl`` (…, L),
    the sampled tokens' log π_θ (…, L, with grad), the sampler's log-probs (None: on-policy) and a mask."""
    choose("full-KL placement", placement, FULL_PLACEMENTS)
    m = torch.ones_like(kl) if mask is None else mask.to(kl.dtype)
    base = token_logp.detach() if base_logp is None else base_logp.detach()
    log_w = (token_logp.to(kl.dtype) - base.to(kl.dtype)) * m
    if placement == "loss":
        return kl * m
    if placement == "rb":
        return torch.exp(exclusive_prefix(log_w)) * kl * m  # W_{t−1}·KL_t
    return torch.exp(log_w) * to_come((kl * m).detach()) * m  # w_t·sg(Σ_{t'>t} KL_t')


class _StepKL(torch.autograd.Function):
    """(logits (N, V), ref_logits (N, V), tokens (N,), keep (N,)) → (KL_t (N,), log π_θ(y_t) (N,)), float64
    out, by row chunks computed in float32 (float64 for float64 logits); backward recomputes each chunk:
    ∂KL(p‖r)/∂z = p⊙(d − KL), ∂KL(r‖p)/∂z = p − r, ∂log p_y/∂z = onehot(y) − p. Rows with keep False
    (padding, garbage allowed) give 0 and gradient 0."""

    @staticmethod
    def forward(ctx, logits, ref_logits, tokens, keep, direction, chunk):
        n = logits.shape[0]
        kl = torch.zeros(n, dtype=torch.float64, device=logits.device)
        tok = torch.zeros(n, dtype=torch.float64, device=logits.device)
        for i in range(0, n, chunk):
            lz, ly, k = _chunk(logits, ref_logits, keep, i, chunk)
            kl[i:i + chunk] = torch.where(k, step_kl(lz, ly, direction).double(), 0.0)
            tok[i:i + chunk] = torch.where(k, lz.gather(-1, tokens[i:i + chunk, None].clamp(min=0))[:, 0].double(), 0.0)
        ctx.save_for_backward(logits, ref_logits, tokens, keep, kl)
        ctx.direction, ctx.chunk = direction, chunk
        return kl, tok

    @staticmethod
    def backward(ctx, g_kl, g_tok):
        if torch.is_grad_enabled():  # create_graph: each chunk is recomputed detached, the Hessian would be short
            raise RuntimeError(f"full_kl_loss: {SECOND_DERIVATIVE}")
        logits, ref_logits, tokens, keep, kl = ctx.saved_tensors
        grad = torch.zeros_like(logits)
        for i in range(0, logits.shape[0], ctx.chunk):
            lz, ly, k = _chunk(logits, ref_logits, keep, i, ctx.chunk)
            p = torch.exp(lz)
            a, b = g_kl[i:i + ctx.chunk, None].to(p.dtype), g_tok[i:i + ctx.chunk, None].to(p.dtype)
            if ctx.direction == POLICY_REF:
                part = p * (a * ((lz - ly) - kl[i:i + ctx.chunk, None].to(p.dtype)) - b)
                part = torch.where(p > 0, part, 0.0)  # a token of probability 0 (a −inf logit): 0·(−inf) is 0
            else:
                part = a * (p - torch.exp(ly)) - b * p
            part.scatter_add_(-1, tokens[i:i + ctx.chunk, None].clamp(min=0), b)  # + b·onehot(y)
            grad[i:i + ctx.chunk] = torch.where(k[:, None], part, 0.0).to(grad.dtype)
        return grad, None, None, None, None, None


def _chunk(logits, ref_logits, keep, i, chunk):
    k = keep[i:i + chunk]
    dtype = torch.float64 if logits.dtype == torch.float64 else torch.float32
    z = torch.where(k[:, None], logits[i:i + chunk].detach().to(dtype), 0.0)
    y = torch.where(k[:, None], ref_logits[i:i + chunk].detach().to(dtype), 0.0)
    return torch.log_softmax(z, -1), torch.log_softmax(y, -1), k


def full_kl_loss(logits: Tensor, ref_logits: Tensor, tokens: Tensor, *, mask: Tensor | None = None,
                 old_logp: Tensor | None = None, placement: str = "rb", direction: str = POLICY_REF,
                 aggregation: str = "token-mean", horizon: float | None = None,
                 chunk_elements: int = CHUNK_ELEMENTS) -> Tensor:
    """Scalar KL loss from both models' full next-token logits (module docstring).

    Args:
        logits: (batch, tokens, vocab) the policy's logits, with grad (bf16/fp16/float32/float64).
        ref_logits: same shape, the reference's (a constant).
        tokens: (batch, tokens) the sampled token ids (any value at padding).
        mask: (batch, tokens), 1 for tokens that count; padding may hold garbage or inf logits.
        old_logp: (batch, tokens) the sampler's log-probs of the tokens (off-policy ``rb``/``reward``).
        placement: loss, rb (default: the exact sequence gradient) or reward.
        direction: policy||ref (default) or ref||policy (aliases reverse, forward).
        aggregation, horizon: as ``kl_loss`` (token-mean, seq-mean-token-sum, ..., or "none").
        chunk_elements: logits processed at a time (memory beyond the logits and their gradient).

    Returns:
        0-dim float32 (float64 for float64 logits); per-token (batch, tokens) for aggregation "none".
    """
    for name, t in (("logits", logits), ("ref_logits", ref_logits)):
        if not isinstance(t, Tensor) or t.dim() != 3 or not t.is_floating_point():
            raise KLGradError(f"{name} must be a floating (batch, tokens, vocab) tensor, got "
                              f"{tuple(t.shape) if isinstance(t, Tensor) else type(t).__name__}")
    if ref_logits.shape != logits.shape:
        raise KLGradError(f"ref_logits has shape {tuple(ref_logits.shape)} but logits {tuple(logits.shape)}")
    lead = logits.shape[:2]
    for name, t in (("tokens", tokens), ("mask", mask), ("old_logp", old_logp)):
        if t is not None and (not isinstance(t, Tensor) or t.shape != lead):
            raise KLGradError(f"{name} must be a (batch, tokens) = {tuple(lead)} tensor")
    if tokens.is_floating_point():
        raise KLGradError("tokens must hold integer token ids")
    if old_logp is not None and not old_logp.is_floating_point():
        raise KLGradError(f"old_logp must hold floating-point log-probabilities, got dtype {old_logp.dtype}")
    if horizon is not None and (isinstance(horizon, bool) or not isinstance(horizon, int | float)
                                or not 0 < horizon < float("inf")):
        raise KLGradError(f"horizon must be a positive finite number (a fixed token count), got {horizon!r}")
    direction = resolve_direction(direction)
    agg = choose("aggregation", aggregation, {**AGGREGATIONS, PER_TOKEN: None}, AGGREGATION_ALIASES)
    vocab = logits.shape[-1]
    keep = torch.ones(lead, dtype=torch.bool, device=logits.device) if mask is None else mask != 0
    outside = keep & ((tokens < 0) | (tokens >= vocab))
    if bool(outside.any()):
        raise KLGradError(f"tokens must be ids in [0, {vocab}) at every position the mask keeps; found "
                          f"{int(tokens[outside][0])} (mask padding such as -100 out)")
    chunk = max(1, int(chunk_elements) // vocab)
    kl, tok = _StepKL.apply(logits.reshape(-1, vocab), ref_logits.reshape(-1, vocab), tokens.reshape(-1).long(),
                            keep.reshape(-1), direction, chunk)
    kl, tok = kl.reshape(lead), tok.reshape(lead)
    m = keep.to(torch.float64) if mask is None else mask.to(torch.float64)  # weights, as kl_loss reads a mask
    old = None if old_logp is None else torch.where(keep, old_logp.detach().double(), 0.0)
    per_token = full_surrogate(kl, tok, old, m, placement)
    out_dtype = torch.float64 if logits.dtype == torch.float64 else torch.float32
    if agg is None:
        return (per_token * m).to(out_dtype)
    return agg(per_token, m, horizon).to(out_dtype)
