"""``kl-grad values``: a value table, mean(k) as an estimate of the KL (Schulman 2020)."""

from __future__ import annotations

import argparse

from ...estimators import ESTIMATORS
from ..cli import add_output_arguments, csv_list, output_format, whole_number
from ..config import DEFAULT_ESTIMATORS, ValueExperiment
from ..experiments import command_help
from .kind import KIND


def add_parser(sub, name: str) -> None:
    v_ = ValueExperiment  # the run defaults, declared once there
    v = sub.add_parser(name, help=command_help(name),
                       description="How well does the sample mean of each estimator estimate the KL itself? "
                       "Samples come from the policy q; bias_rel and stdev_rel (per sample) are relative to the "
                       "true KL in the estimator's direction.",
                       epilog="example:\n  kl-grad values --policy normal:0,1 --ref normal:1,1 --mode exact\n"
                       "      Schulman's second table: k1 unbiased (stdev/true 2), k2 biased by 0.25, k3 unbiased",
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    v.add_argument("--policy", required=True, help="q, the sampling distribution, e.g. normal:0,1")
    v.add_argument("--ref", required=True, help="p, e.g. normal:1,1")
    v.add_argument("--estimators", type=csv_list, default=list(DEFAULT_ESTIMATORS),
                   help="comma list from: " + ", ".join(n for n, e in ESTIMATORS.items() if not e.gradient_only)
                   + f" (default {','.join(DEFAULT_ESTIMATORS)}; reverse_k2 = r is a gradient surrogate with no KL "
                   "value)")
    v.add_argument("--mode", default=v_.mode, help=f"exact or mc (default {v_.mode})")
    v.add_argument("--samples", type=whole_number, default=v_.samples, help=f"MC samples (default {v_.samples}, as "
                   "Schulman)")
    v.add_argument("--seed", type=whole_number, default=v_.seed, help=f"random seed for --mode mc (default {v_.seed})")
    add_output_arguments(v, KIND.views)
    v.set_defaults(handler=_values)


def _values(args) -> str:
    from ..value_table import run_values

    fmt = output_format(args, KIND.views)
    table = run_values(args.policy, args.ref, args.estimators, mode=args.mode, samples=args.samples, seed=args.seed)
    return KIND.views[fmt](table)
