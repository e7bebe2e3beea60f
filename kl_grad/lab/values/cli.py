"""``kl-grad values``: a value table, mean(k) as an estimate of the KL (Schulman 2020)."""

from __future__ import annotations

import argparse

from ...estimators import ESTIMATORS
from ..cli import add_fields, add_output_arguments, output_format, run_from
from ..config import DEFAULT_ESTIMATORS, ValueExperiment
from ..experiments import command_help
from .kind import KIND


def add_parser(sub, name: str) -> None:
    v = sub.add_parser(name, help=command_help(name),
                       description="How well does the sample mean of each estimator estimate the KL itself? "
                       "Samples come from the policy q; bias_rel and stdev_rel (per sample) are relative to the "
                       "true KL in the estimator's direction.",
                       epilog="example:\n  kl-grad values --policy normal:0,1 --ref normal:1,1 --mode exact\n"
                       "      Schulman's second table: k1 unbiased (stdev/true 2), k2 biased by 0.25, k3 unbiased",
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    add_fields(v, ValueExperiment, {
        "policy": "q, the sampling distribution, e.g. normal:0,1",
        "ref": "p, e.g. normal:1,1",
        "estimators": "comma list from: " + ", ".join(n for n, e in ESTIMATORS.items() if not e.gradient_only)
                      + " (reverse_k2 = r is a gradient surrogate with no KL value)",
        "mode": "exact or mc",
        "samples": "MC samples (as Schulman)",
        "seed": "random seed for --mode mc",
    }, defaults={"estimators": list(DEFAULT_ESTIMATORS)})
    add_output_arguments(v, KIND.views)
    v.set_defaults(handler=_values)


def _values(args) -> str:
    from ..value_table import run_values

    fmt = output_format(args, KIND.views)
    exp = run_from(ValueExperiment, args, title="")
    table = run_values(exp.policy, exp.ref, exp.estimators, mode=exp.mode, samples=exp.samples, seed=exp.seed)
    return KIND.views[fmt](table)
