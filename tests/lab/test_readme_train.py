"""The numbers of docs/training-dynamics.md (what a biased KL gradient does to the policy) are those in results/

Each claim below is the README text a number appears in, formatted from the committed result tables (which
``make reproduce`` and ``reproduce --check`` keep current), so a rerun that moves an end point cannot leave
the README quoting the old one.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

ROOT = Path(__file__).resolve().parents[2]


def _section() -> str:
    return (ROOT / "docs" / "training-dynamics.md").read_text()


def _rows(name: str) -> pd.DataFrame:
    table = pd.read_csv(ROOT / f"results/{name}/table.csv", keep_default_na=False, na_values=[""])
    return table.set_index(["estimator", "placement"])


def _probs(row) -> str:
    return "(" + ", ".join(f"{p:.4f}" for p in json.loads(row["probs"])) + ")"


def _claims() -> list[tuple[str, str]]:
    tokens, gauss, markov = _rows("train_tokens"), _rows("train_gaussian_linear"), _rows("train_markov")
    unbiased = [("k2", "loss"), ("k3", "loss-w"), ("k1", "reward"), ("k1", "loss-w")]
    exact_seq = [("k1", "loss-prefix-w"), ("k3", "loss-prefix-w"), ("k1", "reward"), ("k1", "both"), ("k3", "both")]
    token_level = [("k2", "loss"), ("k1", "loss-w"), ("k3", "loss-w")]
    claims = [
        ("π* tokens", f"π* = {_probs(tokens.loc[('k2', 'loss')])}"),
        ("k3 loss end point", f"| k3 loss | {_probs(tokens.loc[('k3', 'loss')])}"),
        ("k3 loss TV", f"| {tokens.loc[('k3', 'loss'), 'distance_to_optimum']:.2g} | "
                       f"{tokens.loc[('k3', 'loss'), 'steps']} (converged) |"),
        ("k1 loss best token", f"({json.loads(tokens.loc[('k1', 'loss'), 'probs'])[0]:.4f}, …) after 400 steps"),
        ("Gaussian k3 loss", f"k3 loss ends at N({gauss.loc[('k3', 'loss'), 'loc']:.2g}, "
                             f"{gauss.loc[('k3', 'loss'), 'scale']:.4g})"),
        ("Gaussian k1 loss", f"(N({gauss.loc[('k1', 'loss'), 'loc']:.3g}, {gauss.loc[('k1', 'loss'), 'scale']:.2g}) "
                             "after 400 steps)"),
    ]
    steps = {int(tokens.loc[c, "steps"]) for c in unbiased}
    assert len(steps) == 1 and all(tokens.loc[c, "converged"] for c in unbiased)
    claims.append(("unbiased steps", f"| {steps.pop()} (converged) |"))
    gsteps = {int(gauss.loc[c, "steps"]) for c in unbiased}
    assert len(gsteps) == 1
    claims.append(("Gaussian unbiased steps", f"reach it in {gsteps.pop()} steps"))
    exact_tv = max(markov.loc[c, "distance_to_optimum"] for c in exact_seq)
    assert exact_tv < 1e-8
    token_tv = {f"{markov.loc[c, 'distance_to_optimum']:.2g}" for c in token_level}
    assert len(token_tv) == 1
    claims.append(("Markov token-level TV", f"(token-level partial gradient) | {float(token_tv.pop()):.4f} |"))
    claims.append(("Markov k3 loss TV", f"| k3 `loss` | {markov.loc[('k3', 'loss'), 'distance_to_optimum']:.3f} "))
    return claims


@pytest.mark.parametrize("what, text", _claims(), ids=lambda x: x if len(x) < 30 else "")
def test_the_readme_quotes_the_committed_result(what, text):
    assert text in _section(), f"{what}: README should say {text!r} (from results/)"
