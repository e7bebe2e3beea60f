"""Every number of the "Sequences" findings (docs/sequences.md) is what results/ holds (``make reproduce`` writes them:
``seq_markov_*_exact/summary.csv`` and ``seq_length_sweep*/table.csv``). Each claim is read from the README
text (the number as printed) and compared with the committed result rounded to the digits the README shows;
a README edit or a regenerated result that disagrees fails here, naming the sentence."""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd
import pytest
from scipy import stats

ROOT = Path(__file__).resolve().parents[2]
SECTION = (ROOT / "docs" / "sequences.md").read_text()
TEXT = " ".join(SECTION.split())  # the section with line breaks folded


def summary(name: str) -> pd.DataFrame:
    return pd.read_csv(ROOT / "results" / name / "summary.csv", keep_default_na=False, na_values=[""])


def sweep(name: str) -> pd.DataFrame:
    return pd.read_csv(ROOT / "results" / name / "table.csv", keep_default_na=False, na_values=[""])


ON, OFF = summary("seq_markov_placements_exact"), summary("seq_markov_offpolicy_exact")
SWEEP_ON, SWEEP_OFF = sweep("seq_length_sweep"), sweep("seq_length_sweep_offpolicy")


def value(table, est, place, col="rel_bias_norm", L=None):
    rows = table[(table.estimator == est) & (table.placement == place) & ((table.L == L) if L else True)]
    assert len(rows) == 1, (est, place, L)
    cell = rows[col].iloc[0]
    return cell if isinstance(cell, str) else float(cell)


def printed(pattern: str) -> list[str]:
    """The numbers the README prints in the sentence matching ``pattern`` (groups), as written."""
    match = re.search(pattern, TEXT)
    assert match, f"the README's Sequences section no longer says /{pattern}/"
    return list(match.groups())


def agrees(number: str, result: float, scale: float = 1.0) -> bool:
    """Is ``result`` × scale the README's ``number`` to the digits it shows (half a unit of its last digit)?"""
    decimals = len(number.split(".")[1]) if "." in number else 0
    return abs(result * scale - float(number)) <= 0.5 * 10.0 ** -decimals + 1e-12


def exact(table, est, place, **kw) -> bool:
    """The case gives ∇KL(policy‖ref) exactly: rel_bias_norm 0 (below its error) and follows policy||ref."""
    return value(table, est, place, **kw) == 0 and value(table, est, place, "follows", **kw) == "policy||ref"


def test_sequence_level_gradient_exactly():
    for est in ("k1", "k3"):
        assert all(exact(t, est, "loss-prefix-w") for t in (ON, OFF))
        assert exact(ON, est, "both")
        assert all(exact(t, est, "loss-prefix-w", L=L) for t in (SWEEP_ON, SWEEP_OFF) for L in t.L.unique())
    assert exact(ON, "k1", "reward") and not exact(OFF, "k1", "reward")
    assert all(exact(t, "k1", p) for t in (ON, OFF) for p in ("reward-prefix-w", "reward-seq"))
    k1, k3 = printed(r"off-policy its per-token weights leave ([\d.]+) \(k1\) and ([\d.]+) \(k3\) on the 3-token")
    assert agrees(k1, value(OFF, "k1", "both")) and agrees(k3, value(OFF, "k3", "both"))
    (reward,) = printed(r"k1 `reward` on-policy \(off-policy ([\d.]+)\)")
    assert agrees(reward, value(OFF, "k1", "reward"))


def test_token_level_partial_gradient():
    (pct,) = printed(r"same vector, ([\d.]+)% off on the 3-token chain")
    same = [value(ON, "k2", "loss"), value(ON, "k1", "loss-w"), value(ON, "k3", "loss-w")]
    assert max(same) - min(same) < 1e-9 and agrees(pct, same[0], 100)
    low, high = printed(r"([\d.]+)–([\d.]+)% off on the binary chain for L = 2..16")
    on = SWEEP_ON[(SWEEP_ON.estimator == "k2") & (SWEEP_ON.placement == "loss") & (SWEEP_ON.L >= 2)]
    assert agrees(low, on.rel_bias_norm.min(), 100) and agrees(high, on.rel_bias_norm.max(), 100)


def best_k2(table, L=None):
    rows = table[(table.estimator == "k2") & ((table.L == L) if L else True)]
    best = rows.loc[rows.rel_bias_norm.idxmin()]
    return best.placement, best.rel_bias_norm


def test_k2_never():
    assert (SWEEP_ON[(SWEEP_ON.estimator == "k2") & (SWEEP_ON.L >= 2)].rel_bias_norm > 0.01).all()
    assert (SWEEP_OFF[(SWEEP_OFF.estimator == "k2") & (SWEEP_OFF.L >= 2)].rel_bias_norm > 0.01).all()
    on16, prefix, off16, on3, off3 = printed(
        r"L = 16: on-policy best ([\d.]+)% with `loss`, `loss-prefix-w` ([\d.]+); off-policy best ([\d.]+) with "
        r"`both`; 3-token chain: on-policy best ([\d.]+)% with `loss`, off-policy ([\d.]+) with `loss-prefix-w`")
    place, best = best_k2(SWEEP_ON, 16)
    assert place == "loss" and agrees(on16, best, 100)
    assert agrees(prefix, value(SWEEP_ON, "k2", "loss-prefix-w", L=16))
    place, best = best_k2(SWEEP_OFF, 16)
    assert place == "both" and agrees(off16, best)
    place, best = best_k2(ON)
    assert place in ("loss", "loss-sgw") and agrees(on3, best, 100)  # loss and loss-sgw agree on-policy
    place, best = best_k2(OFF)
    assert place == "loss-prefix-w" and agrees(off3, best)
    chain, at16 = printed(r"k3 as a plain `loss` is ([\d.]+) off on the 3-token chain \(([\d.]+) at L = 16\)")
    assert agrees(chain, value(ON, "k3", "loss")) and agrees(at16, value(SWEEP_ON, "k3", "loss", L=16))
    rewards = [t[t.estimator.isin(["k2", "k3"]) & t.placement.str.startswith("reward")].rel_bias_norm
               for t in (ON, OFF, SWEEP_ON, SWEEP_OFF)]
    assert "k2 and k3 as `reward` are off by more than 100%" in TEXT and all((r > 1).all() for r in rewards)


def test_trl_sequence_ratio():
    l2, l4, l16 = printed(r"bias exactly 1 − 1/L \(([\d.]+) at L = 2, ([\d.]+) on the 3-token chain at L = 4, "
                          r"([\d.]+) at L = 16\)")
    trl = SWEEP_ON[(SWEEP_ON.estimator == "k1") & (SWEEP_ON.placement == "trl-seq")]
    assert (abs(trl.rel_bias_norm - (1 - 1 / trl.L)) < 1e-9).all()
    assert agrees(l2, 1 - 1 / 2) and agrees(l4, value(ON, "k1", "trl-seq")) and agrees(l16, 1 - 1 / 16)


def test_variance_of_reward_to_go():
    numbers = printed(r"relative stdev ([\d.]+) against ([\d.]+) for the whole-sequence `reward-seq` \(MC: "
                      r"([\d.]+), ([\d.]+)\); off-policy, `reward-prefix-w` ([\d.]+) against `reward-seq` ([\d.]+) "
                      r"\(MC ([\d.]+), ([\d.]+)\)")
    pairs = [(SWEEP_ON, "reward"), (SWEEP_OFF, "reward-prefix-w")]  # README order: on exact, on MC, off ...
    results = [value(t, "k1", p, col, L=16) for t, rtg in pairs for col in ("rel_stdev", "mc_rel_stdev")
               for p in (rtg, "reward-seq")]
    assert all(agrees(n, r) for n, r in zip(numbers, results, strict=True)), (numbers, results)
    on, off = printed(r"reward-to-go is the cheaper one, by ([\d.]+)× and ([\d.]+)× in stdev")
    assert agrees(on, results[1] / results[0]) and agrees(off, results[5] / results[4])


def test_mc_checks_of_the_sweeps():
    count, z_on, z_off, bound = printed(r"over the ([\d ]+) means \(288 rows × 6 parameters\) of each sweep is "
                                        r"([\d.]+) and ([\d.]+), below ([\d.]+), the two-sided Bonferroni bound")
    n = int(count.replace(" ", ""))
    assert len(SWEEP_ON) == len(SWEEP_OFF) == 288 and n == 288 * 6
    assert agrees(z_on, SWEEP_ON.mc_max_abs_z.max()) and agrees(z_off, SWEEP_OFF.mc_max_abs_z.max())
    assert "400 trials × 64 sequences per length" in TEXT and "Student t, 399 degrees of freedom" in TEXT
    assert agrees(bound, stats.t.isf(1e-3 / (2 * n), 399))
    assert max(SWEEP_ON.mc_max_abs_z.max(), SWEEP_OFF.mc_max_abs_z.max()) < stats.t.isf(1e-3 / (2 * n), 399)


@pytest.mark.parametrize("path", ["results/seq_markov_placements_exact/summary.md",
                                  "results/seq_markov_offpolicy_exact/summary.md"])
def test_the_cited_files_exist(path):
    assert f"`{path}`" in TEXT and (ROOT / path).is_file()
