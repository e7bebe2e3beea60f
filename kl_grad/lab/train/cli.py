"""``kl-grad train``: where gradient ascent on E[R] − β·KL(π_θ‖π_ref) takes the policy, per KL choice."""

from __future__ import annotations

import argparse

from ...estimators import ESTIMATORS
from ...placements import PLACEMENTS
from ..cli import add_fields, add_output_arguments, output_format, run_from
from ..config import DEFAULT_ESTIMATORS
from ..experiments import command_help
from ..progress import Progress
from .dynamics import DEFAULT_LR
from .kind import TrainExperiment
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
    add_fields(t, TrainExperiment, {
        "policy": "starting π_θ, e.g. categorical:0,0,0,0 or normal:-0.5,0.8",
        "ref": "π_ref, same family and size as the policy",
        "reward": "1,0,0.5 (one per token), linear:A or quadratic:C,B (normal), sum:1,0,0.5 or last:1,0,0.5 "
                  "(markov, markov-eos)",
        "beta": "KL coefficient β > 0",
        "estimators": f"comma list from: {', '.join(ESTIMATORS)}",
        "placements": f"comma list from: {', '.join(PLACEMENTS)}; markov: the sequence placements",
        "steps": "step budget",
        "lr": "learning rate; 0: " + ", ".join(f"{v:g} for {k}" for k, v in DEFAULT_LR.items()),
        "sampler": "fixed off-policy sampling distribution (default: the policy)",
        "samples": "MC mode: one gradient from this many samples per step; 0: exact expectations",
        "seed": "MC mode: step t uses seed + t",
    }, defaults={"estimators": list(DEFAULT_ESTIMATORS), "beta": 1.0})
    add_output_arguments(t, TRAIN_VIEWS)
    t.add_argument("-q", "--quiet", action="store_true", help="no progress on stderr")
    t.set_defaults(handler=cmd_train)


def cmd_train(args) -> str:
    from .dynamics import run_training
    from .kind import train_args

    fmt = output_format(args, TRAIN_VIEWS)
    run = run_training(**train_args(run_from(TrainExperiment, args, title="")), progress=Progress("case", args.quiet))
    return TRAIN_VIEWS[fmt](run.table)
