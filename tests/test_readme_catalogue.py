"""docs/frameworks.md's framework table says what results/frameworks_catalogue/ measured, cell by cell.

The README table is written by hand from the measured table; this test reads both and fails on any cell
that disagrees (a verdict, a relative bias printed to 2 significant digits, a zero-gradient mass), so a
rerun of ``make reproduce`` that moves a result cannot leave the README saying the old thing.
"""

from __future__ import annotations

import math
import re
from pathlib import Path

import pandas as pd
import pytest

ROOT = Path(__file__).resolve().parents[1]
ON_POLICY = ("tokens-on", "normal-near", "normal-far")  # the README's "tokens · N-near · N-far"
SEQUENCES = ("markov-3x4", "markov-2x6", "markov-3x4-offpolicy")  # "Markov chains: 3×4 · 2×6 · 3×4 off-policy"
MASS = ("tokens-far", "normal-far")  # "zero-gradient mass: tokens-far · N-far"
ARROWS = {"policy‖ref": "policy||ref", "ref‖policy": "ref||policy"}


def _readme_rows() -> list[list[str]]:
    section = (ROOT / "docs" / "frameworks.md").read_text()
    rows = [line.strip().strip("|").split("|") for line in section.splitlines() if line.startswith("| ")]
    return [[c.strip() for c in r] for r in rows[1:]]  # drop the header; the |---| line does not start "| "


def _measured() -> pd.DataFrame:
    return pd.read_csv(ROOT / "results/frameworks_catalogue/table.csv", keep_default_na=False, na_values=[""])


def _two_digits(x: float) -> str:
    return f"{x:.2g}"


def _check_cell(cell: str, row: pd.Series, where: str) -> None:
    m = re.fullmatch(r"none \(([\d.]+)\)", cell)
    if m:
        assert row["follows"] == "none", f"{where}: README says none, results say {row['follows']}"
        nearer = min(row["rel_bias_vs_policy||ref"], row["rel_bias_vs_ref||policy"])
        assert float(m.group(1)) == float(_two_digits(nearer)), f"{where}: README {cell}, results {nearer:.4g}"
    else:
        assert ARROWS.get(cell, cell) == row["follows"], f"{where}: README says {cell}, results {row['follows']}"


def _check_mass(cell: str, value: float, where: str) -> None:
    if cell == "–":
        assert math.isnan(value), f"{where}: README says not measured, results {value}"
    else:
        assert not math.isnan(value) and float(cell) == float(_two_digits(value)), f"{where}: {cell} vs {value}"


def test_the_readme_table_lists_every_catalogue_term():
    from kl_grad.frameworks.catalogue import FRAMEWORK_TERMS

    names = [r[1].strip("`") for r in _readme_rows()]
    assert sorted(names) == sorted(FRAMEWORK_TERMS)


@pytest.mark.parametrize("readme_row", _readme_rows(), ids=lambda r: r[1].strip("`"))
def test_every_readme_cell_matches_the_measured_table(readme_row):
    framework, term, placement, on_policy, off_policy, sequences, mass = readme_row
    term = term.strip("`")
    table = _measured()
    rows = table[table["term"] == term].set_index("problem")
    assert rows["framework"].iloc[0] == framework and rows["placement"].iloc[0] == placement
    for problem, cell in zip(ON_POLICY, on_policy.split(" · "), strict=True):
        _check_cell(cell, rows.loc[problem], f"{term} on {problem}")
    _check_cell(off_policy, rows.loc["tokens-off"], f"{term} on tokens-off")
    for problem, cell in zip(SEQUENCES, sequences.split(" · "), strict=True):
        _check_cell(cell, rows.loc[problem], f"{term} on {problem}")
    for problem, cell in zip(MASS, mass.split(" · "), strict=True):
        _check_mass(cell, rows.loc[problem, "zero_grad_mass"], f"{term} zero-gradient mass on {problem}")
