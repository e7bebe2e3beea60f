"""Sweeps: exact bias_rel and stdev_rel as the reference moves away from the policy.

The policy stays fixed; one reference parameter (``loc`` shift or ``scale``)
takes each value in a grid. Every point is an exact-mode table (milliseconds
each), so the curves have no Monte-Carlo noise. Quantity ``gradients``
gives the gradient tables, and ``values`` gives Schulman's value tables.
"""

from __future__ import annotations

import pandas as pd

from .analysis import run_gradients
from .errors import KLGradError
from .families import DistSpec, make_spec
from .values import run_values


def sweep(policy: DistSpec, ref: DistSpec, vary: str, grid: list[float], estimators: list[str],
          quantity: str = "gradients", samples: int = 50_000) -> pd.DataFrame:
    """Concatenated exact tables, one block per grid value, with the varied value in column ``x``."""
    params = ref.params
    if vary not in params:
        raise KLGradError(f"unknown sweep parameter {vary!r}; expected one of {', '.join(params)}")
    if quantity not in ("gradients", "values"):
        raise KLGradError(f"unknown sweep quantity {quantity!r}; expected one of gradients, values")
    if not grid:
        raise KLGradError("sweep grid is empty; give at least one value")
    blocks = []
    for x in grid:
        values = [x if name == vary else v for name, v in zip(params, ref.values)]
        point = make_spec(ref.family, values, f"sweep point {vary}={x:g}")  # checks e.g. scale > 0
        if quantity == "gradients":
            table = run_gradients(policy, point, estimators, mode="exact", samples=samples).table
        else:
            table = run_values(policy, point, estimators, mode="exact", samples=samples)
        blocks.append(table.assign(vary=vary, x=x))
    return pd.concat(blocks, ignore_index=True)
