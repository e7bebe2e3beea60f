"""Are two result tables the same result? Text cells equal, numbers equal within their precision.

``make reproduce`` keeps a result folder as it is when the rerun's table matches the one on
disk, so that a machine whose float arithmetic differs in the last bits (another CPU, another
BLAS) rewrites nothing. Exact numbers carry no noise digits by construction (values below their
stated error are 0, errors are rounded up to one significant digit), so the only differences
left are rounding at the 10th printed digit: exact rows compare to ``EXACT_RTOL``. Monte-Carlo
rows are the same draws (same seed) summed in float32 or float64 in a possibly different order:
``MC_RTOL``.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pandas as pd

EXACT_RTOL = 1e-9  # exact numbers are right to ~1e-13 relative; CSV prints 10 significant digits
MC_RTOL = 1e-5  # float32 sums of the same draws in another order differ by ~1e-7 relative


def same_table(old_csv: Path, new_csv: str) -> bool:
    """Does the CSV file ``old_csv`` hold the same result as the CSV text ``new_csv``?"""
    try:
        old = pd.read_csv(old_csv, keep_default_na=False, na_values=[""])
    except (OSError, ValueError, pd.errors.ParserError):
        return False
    new = pd.read_csv(io.StringIO(new_csv), keep_default_na=False, na_values=[""])
    if list(old.columns) != list(new.columns) or old.shape != new.shape:
        return False
    mc = (new["mode"] == "mc").to_numpy() if "mode" in new else np.zeros(len(new), bool)
    rtol = np.where(mc, MC_RTOL, EXACT_RTOL)
    for col in new.columns:
        a, b = old[col], new[col]
        if pd.api.types.is_numeric_dtype(a) and pd.api.types.is_numeric_dtype(b):
            x, y = a.to_numpy(float), b.to_numpy(float)
            with np.errstate(invalid="ignore"):
                close = (x == y) | (np.isnan(x) & np.isnan(y)) | (np.abs(x - y) <= rtol * np.maximum(abs(x), abs(y)))
            if not close.all():
                return False
        elif not a.astype(str).equals(b.astype(str)):
            return False
    return True
