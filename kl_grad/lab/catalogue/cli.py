"""``kl-grad frameworks``: list the framework KL-term catalogue (``kl_grad.frameworks``)."""

from __future__ import annotations

import argparse

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

columns:
  formula      what the framework computes per token (d = log π_θ − log π_ref, r = π_ref/π_θ = e^(−d),
               w = π_θ/π_old; sg = detach)
  clamp        the clamps, in their order relative to the weight; a clamped sample has zero gradient
  weight       the importance weight and whether it carries gradient
  placement    loss: the value is differentiated as the loss term; reward: a detached per-token penalty;
               reward-seq: the penalty summed over the sequence, taken from its one reward (RLOO)
  estimator    the registered estimator with the same formula (use it in kl_loss / kl-grad table)
What each term's gradient follows is measured in results/frameworks_catalogue (make reproduce).
"""

COLUMNS = ["framework", "name", "formula", "clamp", "weight", "placement", "aggregation", "estimator", "source",
           "notes"]


def catalogue_table(framework: str | None = None) -> pd.DataFrame:
    """The catalogue as a table (``COLUMNS``); ``framework`` keeps one framework's entries."""
    from ...frameworks import FRAMEWORK_TERMS

    terms = list(FRAMEWORK_TERMS.values())
    if framework is not None:
        names = {t.framework: t.framework for t in terms}
        framework = choose("framework", framework.strip(), names)  # type: ignore[assignment]
        terms = [t for t in terms if t.framework == framework]
    rows = [[t.framework, t.name, t.formula, t.clamp, t.weight, t.placement, t.aggregation, t.estimator, t.source,
             t.notes] for t in terms]
    return pd.DataFrame(rows, columns=COLUMNS)


def _markdown(table: pd.DataFrame) -> str:
    from tabulate import tabulate

    return tabulate(table, headers="keys", tablefmt="github", showindex=False) + "\n"


FORMATS = views(_markdown)


def _handle(args) -> str:
    return FORMATS[output_format(args, FORMATS)](catalogue_table(args.framework))


def add_parser(sub, name: str) -> None:
    """Register ``kl-grad frameworks`` on the CLI's subparsers."""
    p = sub.add_parser(name, help=command_help(name),
                       description="List the KL terms of verl, OpenRLHF, TRL, NeMo-RL, slime, Open-Instruct, "
                       "ROLL, SkyRL, tunix, unsloth, torchforge, compose-rl, Trinity-RFT, PipelineRL, AReaL, "
                       "cosmos-rl and oat as kl_grad's catalogue writes them: formula as computed, clamps, weight, "
                       "placement, default aggregation and the source read.",
                       epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_output_arguments(p, FORMATS)
    p.add_argument("--framework", default=None, help="only this framework's entries (e.g. verl, trl, nemo-rl)")
    p.set_defaults(handler=_handle)
