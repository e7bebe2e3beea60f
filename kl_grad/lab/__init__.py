"""The measurement lab: how E[autograd gradient of a KL surrogate] compares with ∇KL, in both directions.

Data flows one way through the spine, one module per stage:

    config        run defaults of the gradient and value tables, the mode type
    families/     parametric families (normal, categorical, markov): parse, build, nodes, capabilities
    problem       policy, reference, sampler, dtype, pathwise; validated once; true ∇KL
    terms         the KL terms measured: estimator × placement cases
    expectation   the contract: weighted points
      montecarlo    seeded, chunked trials (equal weights)
      quadrature    Gauss–Hermite nodes or enumerated support (weights), convergence, refusals
      tails         where an integrand's mass lives, behind quadrature's refusals
    gradients     autograd of each row's mean surrogate, one gradient per row
    statistics    weighted per-point gradients or values → mean, se, stdev, verdicts; summary: vector summaries
    gradient_table, value_table    the runners: one tidy DataFrame each
    report        the shared views (CSV, JSON, markdown) and ``render``; figures: PNG primitives

Each experiment kind is a wing, a folder with its config, run, views, figures and subcommand behind one ``KIND``
record: table/ (gradients), values/, sweeps/, coefficients/, length_sweep/, aggregations/, train/, catalogue/,
audit/. The hubs read those records: experiments (TOML files, ``WINGS``), results/ (reproduce, check, compare,
tolerances) and cli (``kl-grad``). Names below are loaded on first use, so ``import kl_grad.lab`` is cheap.
"""

import importlib

_NAMES = {  # name -> module (relative to this package) that defines it
    "keep_freed_memory": "memory", "AuditResult": "auditing.auditor", "audit": "auditing.auditor",
    "GradientExperiment": "config", "Mode": "config", "ValueExperiment": "config", "SweepExperiment": "sweeps.table",
    "DistSpec": "families", "parse_spec": "families", "GradientRun": "gradient_table",
    "check_gradient_request": "gradient_table", "run_gradients": "gradient_table", "true_gradients": "gradient_table",
    "Problem": "problem", "sweep": "sweeps.table", "Case": "terms", "make_cases": "terms", "run_values": "value_table",
}


def __getattr__(name: str):
    if name in _NAMES:
        return getattr(importlib.import_module(f".{_NAMES[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = sorted(_NAMES)
