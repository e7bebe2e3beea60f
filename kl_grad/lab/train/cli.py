"""``kl-grad train``: where gradient ascent on E[R] − β·KL(π_θ‖π_ref) takes the policy, per KL choice."""

from __future__ import annotations

import argparse

from ...estimators import ESTIMATORS
from ...placements import PLACEMENTS
from ..cli import add_output_arguments, csv_list, output_format, whole_number
from ..config import DEFAULT_ESTIMATORS, DEFAULT_PLACEMENTS
from ..experiments import command_help
from ..progress import Progress
from .dynamics import DEFAULT_LR, DEFAULT_STEPS
from .views import TRAIN_VIEWS

EPILOG = """\
examples:
  kl-grad train --policy categorical:0,0,0,0 --ref categorical:0.5,-0.5,0.2,0 --reward 1,0,0.5,-0.5 \\
                --beta 1 --placements loss,loss-w,reward
      a 4-token policy: k2 loss, k3 loss-w and k1 reward end at π* ∝ π_ref·exp(R/β); k3 as a plain
      loss ends at the optimum of E[R] − β·KL(π_ref‖π_θ) instead; k1 as a plain loss never stops
  kl-grad train --policy normal:-0.5,0.8 --ref normal:0.5,1.2 --reward linear:1 --beta 3 --estimators k2,k3
      Gaussian, R = x: π* = N(μ_ref + σ_ref²/β, σ_ref) = N(0.98, 1.2); k3 loss ends at N(1.1, 1.342)
  kl-grad train --policy markov:4:0,0,0:0,0,0/0,0,0/0,0,0 --ref markov:4:0,0.5,-1:0,1,0/0.2,0,0/1,0,-1 \\
                --reward sum:1,0,0.5 --placements loss,loss-w,loss-prefix-w,reward,both
      a 3-token chain of L = 4 with R(y) = Σ_t r[y_t]: the exact sequence-gradient constructions (k1/k3
      loss-prefix-w, k1 reward, k1/k3 both) end at the family's optimum of the exact sequence objective;
      the token-level ones (k2 loss, k1/k3 loss-w) stop short of it
  kl-grad train ... --samples 64 --seed 1
      one 64-sample Monte-Carlo KL gradient per step instead of the exact expectation

rewards: one number per token (categorical), linear:A (R = A·x) or quadratic:C,B (R = −C·(x − B)²);
markov sequences: sum:r_0,…,r_(V−1) (R(y) = Σ_t r[y_t], every position) or last:r_0,…,r_(V−1)
(R(y) = r[y_(L−1)], the last token). markov policies take the sequence placements (kl-grad table --help);
π* ∝ π_ref·exp(R/β) is then in general not a chain with one transition matrix, so distance_to_optimum is
the total variation over all V^L sequences to the family's optimum, found by gradient ascent plus Newton
steps on the exact sequence objective E[R] − β·KL(π_θ‖π_ref) from the same start (enumerated, no
surrogate); the header gives its TV from π*.
each step: θ += lr·(∇E[R] − β·g), ∇E[R] in closed form (markov: autograd of a forward recursion),
g = the expected autograd gradient of the KL surrogate (the same exact machinery as `kl-grad table --mode
exact`), checked against an independent enumeration/quadrature at the first, every 100th and the last step
(a disagreement refuses the row).
columns: converged (gradient norm < 1e-9 within --steps), kl = true KL(π_θ‖π_ref) at the end,
objective = true E[R] − β·KL(π_θ‖π_ref), distance_to_optimum = total variation (categorical) or
‖(loc, scale) − (loc*, scale*)‖ (normal) to π*; distance_to_optimum_ref||policy: to the optimum of
E[R] − β·KL(π_ref‖π_θ); diverged: parameters left their domain or logits spread beyond 50.
"""


def add_parser(sub, name: str) -> None:
    """Register ``train`` on the ``kl-grad`` subparsers."""

    t = sub.add_parser(name, help=command_help(name),
                       description="Gradient ascent on J(θ) = E_{π_θ}[R] − β·KL(π_θ‖π_ref), following the reward's "
                       "exact gradient plus β × the expected autograd gradient of each KL estimator × placement, "
                       "and where each ends relative to the analytic optimum π* ∝ π_ref·exp(R/β).", epilog=EPILOG,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    t.add_argument("--policy", required=True, help="starting π_θ, e.g. categorical:0,0,0,0 or normal:-0.5,0.8")
    t.add_argument("--ref", required=True, help="π_ref, same family and size as the policy")
    t.add_argument("--reward", required=True, help="1,0,0.5 (one per token), linear:A or quadratic:C,B (normal), "
                   "sum:1,0,0.5 or last:1,0,0.5 (markov)")
    t.add_argument("--beta", type=float, default=1.0, help="KL coefficient β > 0 (default 1)")
    t.add_argument("--estimators", type=csv_list, default=list(DEFAULT_ESTIMATORS),
                   help=f"comma list from: {', '.join(ESTIMATORS)} (default {','.join(DEFAULT_ESTIMATORS)})")
    t.add_argument("--placements", type=csv_list, default=list(DEFAULT_PLACEMENTS),
                   help=f"comma list from: {', '.join(PLACEMENTS)} (default {','.join(DEFAULT_PLACEMENTS)})")
    t.add_argument("--steps", type=whole_number, default=DEFAULT_STEPS, help=f"step budget (default {DEFAULT_STEPS})")
    t.add_argument("--lr", type=float, default=None, help="learning rate (default "
                   + ", ".join(f"{v:g} for {k}" for k, v in DEFAULT_LR.items()) + ")")
    t.add_argument("--sampler", default=None, help="fixed off-policy sampling distribution (default: the policy)")
    t.add_argument("--samples", type=whole_number, default=None, help="MC mode: one gradient from this many "
                   "samples per step (default: exact expectations)")
    t.add_argument("--seed", type=whole_number, default=0, help="MC mode: step t uses seed + t (default 0)")
    add_output_arguments(t, TRAIN_VIEWS)
    t.add_argument("-q", "--quiet", action="store_true", help="no progress on stderr")
    t.set_defaults(handler=cmd_train)


def cmd_train(args) -> str:
    from .dynamics import run_training

    fmt = output_format(args, TRAIN_VIEWS)
    run = run_training(args.policy, args.ref, args.reward, args.beta, args.estimators, args.placements,
                       args.steps, args.lr, sampler=args.sampler, samples=args.samples, seed=args.seed,
                       progress=Progress("case", args.quiet))
    return TRAIN_VIEWS[fmt](run.table)
