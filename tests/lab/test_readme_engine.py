"""Every number of docs/engine-sampling.md's table is what results/ holds (results/engine_*_exact/summary.csv,
written by ``make reproduce``), compared at the digits the page prints."""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd
import pytest

ROOT = Path(__file__).resolve().parents[2]
PAGE = (ROOT / "docs" / "engine-sampling.md").read_text()
COLUMNS = ["engine_tokens_topk_exact", "engine_tokens_nucleus_exact", "engine_tokens_nucleus_raw_exact",
           "engine_chain_exact"]
ROWS = [line for line in PAGE.splitlines() if re.match(r"\| k\d ", line)]


def test_the_table_has_every_term_row():
    assert len(ROWS) == 10


@pytest.mark.parametrize("line", ROWS)
def test_each_printed_number_is_the_committed_result(line):
    cells = [c.strip() for c in line.strip("|").split("|")]
    est, placement = cells[0].split()
    for name, cell in zip(COLUMNS, cells[1:]):
        summary = pd.read_csv(ROOT / "results" / name / "summary.csv")
        rows = summary[(summary.estimator == est) & (summary.placement == placement)]
        if cell == "–":
            assert rows.empty, (name, est, placement)
            continue
        assert abs(float(rows.rel_bias_norm.iloc[0]) - float(cell)) <= 0.0005 + 1e-12, (name, est, placement, cell)


def test_the_example_numbers_are_the_top3_table():
    table = pd.read_csv(ROOT / "results" / "engine_tokens_topk_exact" / "table.csv")
    k3 = table[(table.estimator == "k3") & (table.placement == "loss-w")]
    for want, got in zip((0.3165, -0.0569, -0.2001, -0.0595), k3.mean_grad):
        assert abs(got - want) <= 5e-5
    text = " ".join(PAGE.split()).replace("−", "-")
    printed = re.search(r"against \(([-0-9., ]+)\)\)", text)  # the truth the page prints
    for want, got in zip((float(x) for x in printed.group(1).split(",")), k3.true_grad, strict=True):
        assert abs(got - want) <= 5e-5 + 1e-12
