"""The variable-length numbers of docs/sequences.md (**Variable length**) are what
results/seq_eos_aggregations_exact/table.csv holds, rounded to the digits the README prints."""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd
import pytest

ROOT = Path(__file__).resolve().parents[2]
SECTION = (ROOT / "docs" / "sequences.md").read_text()
TEXT = " ".join(SECTION.split())
TABLE = pd.read_csv(ROOT / "results" / "seq_eos_aggregations_exact" / "table.csv", keep_default_na=False,
                    na_values=[""], dtype={"batch": str})


def cell(est, place, agg, batch, col):
    rows = TABLE[(TABLE.estimator == est) & (TABLE.placement == place) & (TABLE.aggregation == agg)
                 & (TABLE.batch == batch)]
    assert len(rows) == 1
    return float(rows[col].iloc[0])


def _same(printed: str, value: float) -> bool:
    digits = len(printed.split(".")[1]) if "." in printed else 0
    return float(printed.replace("−", "-")) == round(value, digits)


@pytest.mark.parametrize("sentence, est, place, agg, batch, col", [
    (r"cosine ([\d.]+) for k1 `loss-prefix-w`", "k1", "loss-prefix-w", "seq-mean-token-mean", "any", "cosine"),
    (r"([\d.]+) for k1 `reward`", "k1", "reward", "seq-mean-token-mean", "any", "cosine"),
    (r"([\d.]+) for k3 `loss-prefix-w`", "k3", "loss-prefix-w", "seq-mean-token-mean", "any", "cosine"),
    (r"is ([\d.]+) off it", "k1", "loss-prefix-w", "seq-mean-token-mean", "any", "rel_bias_norm_vs_own"),
    (r"pointing away \(cosine (−[\d.]+)\)", "k1", "loss", "seq-mean-token-mean", "any", "cosine"),
    (r"([\d.]+) at B = 4", "k1", "loss-prefix-w", "token-mean", "4", "cosine"),
    (r"([\d.]+) at B = 16", "k1", "loss-prefix-w", "token-mean", "16", "cosine"),
    (r"0\.8 = 1 − 1/LMAX and ([\d.]+) = 1 − 1/E\[T\]", "k1", "loss-prefix-w", "token-mean", "∞", "rel_bias_norm"),
    (r"relative bias (0\.8) = 1 − 1/LMAX", "k1", "loss-prefix-w", "seq-mean-token-sum-norm", "1", "rel_bias_norm"),
])
def test_readme_number_is_the_result(sentence, est, place, agg, batch, col):
    m = re.search(sentence, TEXT)
    assert m, sentence
    assert _same(m.group(1), cell(est, place, agg, batch, col)), (sentence, cell(est, place, agg, batch, col))


def test_exact_constructions_are_exact_and_rescalings_keep_the_direction():
    assert "E[T] = 3.33" in TEXT
    assert round(1 / (1 - cell("k1", "loss-prefix-w", "token-mean", "∞", "rel_bias_norm")), 2) == 3.33
    for est, place in [("k1", "loss-prefix-w"), ("k3", "loss-prefix-w"), ("k1", "both"), ("k3", "both"),
                       ("k1", "reward")]:
        assert cell(est, place, "seq-mean-token-sum", "any", "rel_bias_norm") == 0
        assert cell(est, place, "seq-mean-token-sum-norm", "1", "cosine") == pytest.approx(1, abs=1e-12)
        assert cell(est, place, "token-mean", "∞", "cosine") == pytest.approx(1, abs=1e-12)
