"""The numbers of docs/sequences.md, "KL in a group-normalised reward", are what
results/group_reward_exact/table.csv holds, rounded to the digits the docs print."""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd
import pytest

ROOT = Path(__file__).resolve().parents[2]
DOC = (ROOT / "docs" / "sequences.md").read_text()
SECTION = " ".join(DOC[DOC.index("## KL in a group-normalised reward"):].split())
TABLE = pd.read_csv(ROOT / "results" / "group_reward_exact" / "table.csv", keep_default_na=False, na_values=[""],
                    dtype={"beta": str})


def cell(est, norm, reward, group, beta, col):
    rows = TABLE[(TABLE.estimator == est) & (TABLE.normalisation == norm) & (TABLE.reward == reward)
                 & (TABLE.group == group) & (TABLE.beta == beta)]
    assert len(rows) == 1
    return float(rows[col].iloc[0])


def same(printed: str, value: float) -> bool:
    printed = printed.replace("−", "-")
    digits = len(printed.split(".")[1]) if "." in printed else 0
    return abs(float(printed) - value) <= 0.5 * 10 ** -digits * (1 + 1e-9)


ROWS = [("`none` (`reward-seq`)", "none", "none", "any"), ("`mean` (Dr. GRPO)", "mean", "none", "any"),
        ("`std` (GRPO), task reward sum:1,0, β = 0.1", "std", "sum:1,0", "0.1"),
        ("`std`, task reward sum:1,0, β = 1", "std", "sum:1,0", "1"), ("`std`, no task reward, β = 0.1", "std",
                                                                      "none", "0.1")]


@pytest.mark.parametrize("label, norm, reward, beta", ROWS)
def test_table_rows_are_the_results(label, norm, reward, beta):
    m = re.search(re.escape(f"| {label} |") + r" ([\d.]+) \| ([\d.]+) \| ([\d.]+) \|", SECTION)
    assert m, label
    for printed, group in zip(m.groups(), (2, 4, 8)):
        assert same(printed, cell("k1", norm, reward, group, beta, "rel_bias_norm")), (label, group)


@pytest.mark.parametrize("sentence, key, col", [
    (r"cosine with ∇KL ([\d.]+), [\d.]+, [\d.]+ at β = 0.1", ("k1", "std", "sum:1,0", 2, "0.1"), "cosine"),
    (r"cosine with ∇KL [\d.]+, ([\d.]+), [\d.]+ at β = 0.1", ("k1", "std", "sum:1,0", 4, "0.1"), "cosine"),
    (r"cosine with ∇KL [\d.]+, [\d.]+, ([\d.]+) at β = 0.1", ("k1", "std", "sum:1,0", 8, "0.1"), "cosine"),
    (r"\(cosine ([\d.]+) at G = 2\)", ("k1", "std", "none", 2, "0.1"), "cosine"),
    (r"= ([\d.]+) at β = 0.01", ("k1", "std", "none", 2, "0.01"), "norm_ratio"),
    (r", ([\d.]+) at β = 0.1 and", ("k1", "std", "none", 2, "0.1"), "norm_ratio"),
    (r"and ([\d.]+) at β = 1 \(G = 2\)", ("k1", "std", "none", 2, "1"), "norm_ratio"),
    (r"k3's cosine with ∇KL is (−[\d.]+)", ("k3", "mean", "none", 4, "any"), "cosine"),
])
def test_sentence_numbers_are_the_results(sentence, key, col):
    m = re.search(sentence, SECTION)
    assert m, sentence
    assert same(m.group(1), cell(*key, col)), (sentence, cell(*key, col))
