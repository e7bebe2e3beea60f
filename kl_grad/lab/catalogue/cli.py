"""``kl-grad frameworks``: list the framework KL-term catalogue (``kl_grad.frameworks``); ``--live`` checks it
against the installed frameworks (``kl_grad.frameworks.live_check``, imported only then)."""

from __future__ import annotations

import argparse
import sys

import pandas as pd

from ...errors import choose
from ..cli import add_output_arguments, output_format
from ..experiments import command_help
from ..report import views

EPILOG = """\
examples:
  kl-grad frameworks                      every entry as a markdown table
  kl-grad frameworks --framework verl     one framework's entries
  kl-grad frameworks --format csv > catalogue.csv
  kl-grad frameworks --live               does each installed framework still compute its rows? (make live)
  kl-grad frameworks --live --framework verl --format json

columns:
  formula      what the framework computes per token (d = log π_θ − log π_ref, r = π_ref/π_θ = e^(−d),
               w = π_θ/π_old; sg = detach)
  clamp        the clamps, in their order relative to the weight; a clamped sample has zero gradient
  weight       the importance weight and whether it carries gradient
  placement    loss: the value is differentiated as the loss term; reward: a detached per-token penalty;
               reward-seq: the penalty summed over the sequence, taken from its one reward (RLOO)
  estimator    the registered estimator with the same formula (use it in kl_loss / kl-grad table)
What each term's gradient follows is measured in results/frameworks_catalogue (make reproduce).

--live: for every entry whose real function is known ("module:function", kl_grad/frameworks/live/), import
  it if installed (kl-grad installs nothing), then compare its value and autograd gradient w.r.t. logp with the
  row's, in float64, on d = logp − ref_logp in {0, ±2^-20, ±0.5, ±1, ±2.5, ±5, ±10 and ±20 exactly and 2^-10
  either side, ±12, ±15, ±30, ±50}, on-policy and (rows using old_logp, reward penalties) at
  old_logp = logp + 0.75 and logp − 3.
  Tolerance |live − row| ≤ 1e-9·max(1, |row|), 1e-3 where the framework computes in float32; a gradient
  within rounding of the value, 8·ε·|value|, also agrees (a weighted term's product rule cancelling).
  status: agrees | drift (scaled_diff = the largest |Δ|/max(1, |row|), where = that point) | not installed
  (the import failed: why) | error (no such function, or the call raised) | no callable (computed inline,
  or JAX: the reason per framework).
  version: the installed distribution. Exit status 1 if any row drifts or errs, else 0.
"""

COLUMNS = ["framework", "name", "formula", "clamp", "weight", "placement", "aggregation", "estimator", "source",
           "notes"]


def _terms(framework: str | None):
    """Catalogue entries, in order; ``framework`` keeps one framework's (unknown names list the known ones)."""
    from ...frameworks import FRAMEWORK_TERMS

    terms = list(FRAMEWORK_TERMS.values())
    if framework is not None:
        names = {t.framework: t.framework for t in terms}
        by_case = {n.lower(): n for n in names}  # any case: Verl, NEMO-RL
        key = framework.strip()
        framework = choose("framework", by_case.get(key.lower(), key), names)  # type: ignore[assignment]
        terms = [t for t in terms if t.framework == framework]
    return terms


def catalogue_table(framework: str | None = None) -> pd.DataFrame:
    """The catalogue as a table (``COLUMNS``); ``framework`` keeps one framework's entries."""
    terms = _terms(framework)
    rows = [[t.framework, t.name, t.formula, t.clamp, t.weight, t.placement, t.aggregation, t.estimator, t.source,
             t.notes] for t in terms]
    return pd.DataFrame(rows, columns=COLUMNS)


def _markdown(table: pd.DataFrame) -> str:
    from tabulate import tabulate

    return tabulate(table, headers="keys", tablefmt="github", showindex=False) + "\n"


FORMATS = views(_markdown)


def live_table(framework: str | None = None) -> pd.DataFrame:
    """``--live``: one row per entry (``live_check.COLUMNS``), the installed framework checked against it."""
    from ...frameworks import live_check

    return pd.DataFrame(live_check.live_rows(_terms(framework)), columns=live_check.COLUMNS)


def _live_markdown(table: pd.DataFrame) -> str:
    """GitHub table; scaled_diff to 3 significant digits, "–" where nothing was compared; a "|" inside a cell (an
    import error's text) escaped so that it cannot split the row."""
    from tabulate import tabulate

    shown = table.map(lambda v: v.replace("|", "\\|") if isinstance(v, str) else v)
    shown = shown.astype(object).where(table.notna(), None)
    return tabulate(shown, headers="keys", tablefmt="github", showindex=False, floatfmt=".3g", missingval="–") + "\n"


LIVE_FORMATS = views(_live_markdown)


def _handle(args) -> str | int:
    if not args.live:
        return FORMATS[output_format(args, FORMATS)](catalogue_table(args.framework))
    fmt = output_format(args, LIVE_FORMATS)
    table = live_table(args.framework)
    text = LIVE_FORMATS[fmt](table)
    if args.output:
        from ..output import write_atomic

        write_atomic(args.output, text)
    else:
        sys.stdout.write(text)
    return 1 if table["status"].isin(["drift", "error"]).any() else 0  # a vanished or changed API is a finding


def add_parser(sub, name: str) -> None:
    """Register ``kl-grad frameworks`` on the CLI's subparsers."""
    p = sub.add_parser(name, help=command_help(name),
                       description="List the KL terms of RL trainers (verl, OpenRLHF, TRL, NeMo-RL, slime, "
                       "tunix, unsloth and more: the table's first column names them all) as kl_grad's catalogue "
                       "writes them: formula as computed, clamps, weight, placement, default aggregation and the "
                       "source read.",
                       epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_output_arguments(p, FORMATS)
    p.add_argument("--framework", default=None, help="only this framework's entries (e.g. verl, trl, nemo-rl)")
    p.add_argument("--live", action="store_true", help="check each entry against the installed framework's own "
                   "function (value and gradient on a grid of log-ratios); exit 1 if any drifts or errs")
    p.set_defaults(handler=_handle)
