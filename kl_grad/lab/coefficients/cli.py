"""``kl-grad coefficients``: the c(d) table and figure in one command (``table.py``).

``add_parser(sub, name)`` builds the subcommand; ``run(args)`` returns the text to print or write.

A user's KL term: the optional positional TARGET (``module:function`` or ``file.py:function``) is loaded by
``load_target(text, kwargs)`` (given, else ``kl_grad.lab.target.load_target``, the audit's loader), with
``--kwarg NAME=VALUE`` read by the audit's ``parse_kwargs``, and tabulated as written through
``coefficient_table(fn=...)``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Callable

from ...errors import KLGradError
from ...estimators import ESTIMATORS
from ...placements import PLACEMENTS
from .. import target
from ..cli import add_output_arguments, output_format
from ..experiments import command_help
from ..output import write_atomic
from .kind import KIND, CoefficientExperiment
from .table import coefficient_table, parse_grid

EPILOG = """\
examples:
  kl-grad coefficients
      c(d) of every estimator × placement on d = -4..4 (step 0.25), 9 of the points shown
  kl-grad coefficients --estimators k1,k2,k3 --placements loss,loss-w --grid=-2:2:0.5
      three estimators, two placements; a negative LO needs the --grid=LO:HI:STEP form
  kl-grad coefficients --plot coefficients.png -o coefficients.csv
      every grid point as CSV, and the figure (one panel per placement)
  kl-grad coefficients examples/trainer_kl_terms.py:verl_low_var_kl --plot c.png
      your own KL term, differentiated as written: verl's clamped k3 has c = 0 where its clamp holds (d < -2.6)
  kl-grad coefficients mytrainer:compute_kl --kwarg kl_penalty=low_var_kl
      a module's function (importable from the current directory), a keyword argument bound

what c(d) is: on-policy, a KL term's per-sample gradient is c(d)·∇log π_θ(x), d = log π_θ(x) − log π_ref(x);
c = ∂surrogate/∂log π_θ, read from autograd in float64. E[c·s] = ∇KL(policy‖ref) exactly when c − d is a
constant, ∇KL(ref‖policy) when c − (1 − e^{−d}) is; expected_gradient names the combination
α·∇KL(policy‖ref) + β·∇KL(ref‖policy) when c = α·d + β·(1 − e^{−d}) + γ fits exactly on the grid, else
"problem-dependent" (framing: arXiv 2510.01555, "Rethinking KL Regularization in RLHF").
"""


def add_parser(sub, name: str) -> argparse.ArgumentParser:
    """Add the ``coefficients`` subcommand to ``sub`` (argparse subparsers)."""
    p = sub.add_parser(name, help=command_help(name),
                       description="Tabulate (and plot) the on-policy per-sample gradient coefficient c(d) = "
                       "∂surrogate/∂log π_θ of each KL term against d = log π_θ − log π_ref, from autograd.",
                       epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--estimators", default=None, help=f"comma list from: {', '.join(ESTIMATORS)} (default: all)")
    p.add_argument("--placements", default=None, help=f"comma list from: {', '.join(PLACEMENTS)} (default: all)")
    p.add_argument("--grid", default=CoefficientExperiment.grid, help="d values as --grid=LO:HI:STEP (default "
                   f"{CoefficientExperiment.grid}; 4 to 100001 points; write it with '=' when LO is negative)")
    add_output_arguments(p, KIND.views)  # markdown shows 9 of the grid points
    p.add_argument("--plot", type=Path, help="also write the figure (PNG) here")
    p.add_argument("target", metavar="TARGET", nargs="?", default=None,
                   help="optional: your KL term instead of the built-ins, module:function or path/to/file.py:function "
                   "(fn(logp, ref_logp) or fn(logp, ref_logp, old_logp), per-sample values), as kl-grad audit takes")
    p.add_argument("--kwarg", action="append", default=[], metavar="NAME=VALUE",
                   help="bind a keyword argument of TARGET (repeatable); VALUE is a Python literal or a bare word")
    p.set_defaults(handler=run)
    return p


def run(args, load_target: Callable | None = None) -> str:
    """The table in ``args.format``; writes ``args.plot``. With ``args.target`` set, ``load_target(text, kwargs)``
    (kwargs from ``args.kwarg``) gives the user's KL term, tabulated as written instead of the built-ins."""
    fmt = output_format(args, KIND.views)
    if args.plot is not None and args.plot.suffix.lower() != ".png":
        raise KLGradError(f"--plot {args.plot} must name a .png file")
    grid = parse_grid(args.grid)
    kwarg = getattr(args, "kwarg", None) or []
    if kwarg and args.target is None:
        raise KLGradError("--kwarg binds an argument of a TARGET: give one (module:function or file.py:function)")
    if args.target is not None:
        load_target = load_target or target.load_target
        if args.estimators or args.placements:
            raise KLGradError("a TARGET is tabulated as written: drop --estimators/--placements")
        fn = load_target(args.target, target.parse_kwargs(kwarg) if kwarg else {})  # the audit's --kwarg reader
        table = coefficient_table(grid, fn=fn, name=args.target)
    else:
        table = coefficient_table(grid, args.estimators, args.placements)
    if args.plot is not None:
        from .plot import coefficients_png

        title = f"c(d) of {args.target}" if args.target else "Gradient coefficients c(d)"
        write_atomic(args.plot, coefficients_png(table, title))
        print(f"wrote {args.plot}", file=sys.stderr)
    return KIND.views[fmt](table)
