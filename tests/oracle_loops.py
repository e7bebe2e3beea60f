"""Independent oracles: the seed-003 script's per-trial loop (torch.distributions, no kl_grad), also timed
by ``make bench``."""

from __future__ import annotations

import numpy as np
import torch
from torch.distributions import Normal

from tests.oracle_formulas import SEED003_ESTIMATORS, normal_params

# --------------------------------------------------------------------------- #
# The seed-003 style per-trial loop (torch.distributions, no kl_grad)
# --------------------------------------------------------------------------- #

# Transcribed from seed 003's script, not derived: each formula takes (x, q, p) and calls log_prob itself
# (reverse_k1 evaluates each log-prob twice, as the script does), so that ``make bench`` times the seed's
# own computation and the runner is compared with the seed's numbers sample for sample.
def _loop_k1(x, q, p):
    return q.log_prob(x) - p.log_prob(x)


def _loop_k2(x, q, p):
    return 0.5 * (q.log_prob(x) - p.log_prob(x)) ** 2


def _loop_k3(x, q, p):
    ratio = torch.exp(p.log_prob(x) - q.log_prob(x))
    return ratio - 1 - torch.log(ratio)


def _loop_reverse_k1(x, q, p):
    ratio = torch.exp(p.log_prob(x) - q.log_prob(x))
    return ratio * (p.log_prob(x) - q.log_prob(x))


def _loop_reverse_k2(x, q, p):
    return torch.exp(p.log_prob(x) - q.log_prob(x))


LOOP_FORMULAS = dict(zip(SEED003_ESTIMATORS, (_loop_k1, _loop_k2, _loop_k3, _loop_reverse_k1, _loop_reverse_k2)))


def seed_style_loop(policy_spec: str, ref_spec: str, estimator_names, samples: int, trials: int, seed: int,
                    return_samples: bool = False, dtype=None):
    """Per-trial gradients the way the seed-003 script computes them.

    ``torch.manual_seed(seed)`` once, then per trial: fresh scalar leaves, ``x = q.sample((samples,))``,
    and per estimator its per-sample formula, ``.mean().backward()``, read and clear the leaves' grads.
    The caller's global RNG state is restored afterwards.

    Returns {name: (trials, 2) array of [d/dloc, d/dscale]}; with ``return_samples`` also the list of
    per-trial sample tensors.
    """
    dtype = dtype or torch.float32
    m1, s1 = normal_params(policy_spec)
    m2, s2 = normal_params(ref_spec)
    names = list(estimator_names)
    out = {name: np.empty((trials, 2)) for name in names}
    drawn = []
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        for t in range(trials):
            loc = torch.tensor(m1, dtype=dtype, requires_grad=True)
            scale = torch.tensor(s1, dtype=dtype, requires_grad=True)
            q = Normal(loc, scale)
            p = Normal(torch.tensor(m2, dtype=dtype), torch.tensor(s2, dtype=dtype))
            x = q.sample((samples,))
            if return_samples:
                drawn.append(x)
            for name in names:
                per_sample = LOOP_FORMULAS[name](x, q, p)
                per_sample.mean().backward()
                out[name][t] = (loc.grad.item(), scale.grad.item())
                loc.grad = None
                scale.grad = None
    return (out, drawn) if return_samples else out
