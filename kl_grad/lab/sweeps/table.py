"""The sweep runner: exact bias_rel and stdev_rel as the reference moves away from the policy.

The policy stays fixed; one reference parameter (``loc`` shift or ``scale``)
takes each value in a grid. Every point is an exact-mode table (milliseconds
each), so the curves have no Monte-Carlo noise. Quantity ``gradients``
gives the gradient tables, and ``values`` gives Schulman's value tables.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import pandas as pd

from ...errors import KLGradError, choose
from ..config import GradientExperiment, Mode
from ..families import DistSpec, as_spec, make_spec
from ..gradient_table import run_gradients
from ..value_table import run_values

QUANTITIES = {
    "gradients": lambda policy, ref, ests, n: run_gradients(policy, ref, ests, mode=Mode.EXACT, samples=n).table,
    "values": lambda policy, ref, ests, n: run_values(policy, ref, ests, mode=Mode.EXACT, samples=n),
}


@dataclass(frozen=True)
class SweepExperiment:
    """Exact bias_rel/stdev_rel curves as one reference parameter moves; writes sweep.png."""

    kind: ClassVar[str] = "sweep"

    title: str
    policy: str
    ref: str  # the starting reference; ``vary`` replaces one of its parameters
    estimators: list[str]
    vary: str  # "loc" or "scale"
    grid: list[float]  # values taken by the varied parameter
    quantity: str = "gradients"  # gradients or values (the sweep's QUANTITIES)
    samples: int = GradientExperiment.samples  # n in the stdev of an n-sample mean (gradients)
    notes: str = ""


def sweep(policy: DistSpec | str, ref: DistSpec | str, vary: str, grid: list[float], estimators: list[str],
          quantity: str = SweepExperiment.quantity, samples: int = SweepExperiment.samples) -> pd.DataFrame:
    """Concatenated exact tables, one block per grid value, with the varied value in column ``x``."""
    policy, ref = as_spec(policy, "policy"), as_spec(ref, "ref")
    choose("sweep parameter", vary, {name: name for name in ref.param_names})
    table_of = choose("sweep quantity", quantity, QUANTITIES)
    if not grid:
        raise KLGradError("sweep grid is empty; give at least one value")
    blocks = []
    for x in grid:
        values = [x if name == vary else v for name, v in zip(ref.param_names, ref.values)]
        point = make_spec(ref.family, values, f"sweep point {vary}={x:g}")  # checks e.g. scale > 0
        blocks.append(table_of(policy, point, estimators, samples).assign(vary=vary, x=x))
    return pd.concat(blocks, ignore_index=True)
