"""The numbers of docs/sequences.md's "full-vocabulary KL" section are what results/seq_full_kl_exact holds
(``make reproduce`` writes it), at the digits the page prints."""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd
import pytest

ROOT = Path(__file__).resolve().parents[2]
TEXT = " ".join((ROOT / "docs" / "sequences.md").read_text().split("## The full-vocabulary KL")[1].split())
SUMMARY = pd.read_csv(ROOT / "results" / "seq_full_kl_exact" / "summary.csv")


def _cell(est, placement, col):
    rows = SUMMARY[(SUMMARY.estimator == est) & (SUMMARY.placement == placement)]
    assert len(rows) == 1
    return float(rows[col].iloc[0])


@pytest.mark.parametrize("phrase, est, placement, col, digits", [
    ("relative stdev of 0.628", "full", "rb", "rel_stdev", 3),
    ("against 1.843 for k1 `reward`", "k1", "reward", "rel_stdev", 3),
    ("and 1.101 for k3 `loss-prefix-w`", "k3", "loss-prefix-w", "rel_stdev", 3),
    ("0.0065 off", "full", "loss", "rel_bias_norm", 4),
    ("(0.509 against", "full", "loss", "rel_stdev", 3),
    ("against 1.113)", "k2", "loss", "rel_stdev", 3),
    ("(relative bias 1.004)", "full", "reward", "rel_bias_norm", 3),
])
def test_printed_numbers_are_the_results(phrase, est, placement, col, digits):
    assert phrase in TEXT
    printed = float(next(w for w in phrase.replace("(", " ").replace(")", " ").split() if w[0].isdigit()))
    assert abs(_cell(est, placement, col) - printed) <= 0.5 * 10 ** -digits + 1e-12


def test_variance_ratios_and_exactness():
    rb, k1, k3 = (_cell(e, p, "rel_stdev") for e, p in (("full", "rb"), ("k1", "reward"), ("k3", "loss-prefix-w")))
    printed = re.search(r"([0-9.]+) and ([0-9.]+) times less variance", TEXT)
    for ratio, shown in zip(((k1 / rb) ** 2, (k3 / rb) ** 2), printed.groups(), strict=True):
        assert abs(ratio - float(shown)) <= 0.05 + 1e-12  # printed to one decimal
    assert _cell("full", "rb", "rel_bias_norm") == 0
