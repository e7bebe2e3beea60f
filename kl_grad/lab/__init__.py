"""The measurement lab: how E[autograd gradient of a KL surrogate] compares with ∇KL, in both directions.

Data flows one way, one module per stage:

    config        run defaults, experiment dataclasses, the mode type
    families/     parametric families (normal, categorical): parse, build, nodes, capabilities
    problem       policy, reference, sampler, dtype, pathwise; validated once; true ∇KL
    terms         the KL terms measured: estimator × placement cases
    expectation   the contract: weighted points
      montecarlo    seeded, chunked trials (equal weights)
      quadrature    Gauss–Hermite nodes or enumerated support (weights), convergence, refusals
      tails         where an integrand's mass lives, behind quadrature's refusals
    gradients     autograd of each row's mean surrogate, one gradient per row
    statistics    weighted per-point gradients or values → mean, se, stdev, verdicts
    gradient_table, value_table, sweep    the runners: one tidy DataFrame each
    report        every view of every result (markdown, grid, CSV, JSON); figures: PNGs
    experiments   TOML experiment files and the registry of experiment kinds
    reproduce     ``make reproduce``; output: atomic writes; cli: ``kl-grad``
    auditor       ``audit(fn)``: a user's KL term (user_term) on a problem battery (battery), probed
                  (audit_probe), loaded from TARGET (target); audit_report, audit_cli, audit_experiment
"""

from .allocator import keep_freed_memory
from .auditor import AuditResult, audit
from .config import GradientExperiment, Mode, SweepExperiment, ValueExperiment
from .families import DistSpec, parse_spec
from .gradient_table import (
    GradientRun,
    check_gradient_request,
    run_gradients,
    true_gradients,
)
from .problem import Problem
from .sweep import sweep
from .terms import Case, make_cases
from .value_table import run_values

__all__ = [
    "AuditResult", "audit", "Case", "DistSpec", "GradientExperiment", "GradientRun", "Mode", "Problem",
    "SweepExperiment", "ValueExperiment", "check_gradient_request", "keep_freed_memory", "make_cases", "parse_spec",
    "run_gradients", "run_values", "sweep", "true_gradients",
]
