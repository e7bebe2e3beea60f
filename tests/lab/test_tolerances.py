"""Every number in results/ has a tolerance (kl_grad.lab.results.tolerances): no column escapes the rules, no float is
compared as text or with a zero tolerance, rounding-sized moves of every committed float check clean, and a
1e-6 move of one committed gradient fails, named."""

from __future__ import annotations

import math
import re
import shutil
from pathlib import Path

import pandas as pd
import pytest

from kl_grad.frameworks.catalogue import FRAMEWORK_TERMS
from kl_grad.lab.results.check import check
from kl_grad.lab.results.compare import read_table, table_differences
from kl_grad.lab.results.tolerances import (
    EXACT_TEXT,
    NUMBER,
    RULES,
    Rule,
    column_tolerance,
    numbers_in,
    printed_unit,
)
from kl_grad.lab.results.tolerances import tolerance as cell_tolerance

ROOT = Path(__file__).resolve().parents[2]
TABLES = sorted((ROOT / "results").glob("*/*.csv"))
FLOAT = re.compile(r"\d\.\d|\d[eE][-+]?\d|\bnan\b|\binf\b")  # a float written in text (not an integer)


def _floats(text: str) -> bool:
    return any(FLOAT.search(m.group()) for m in NUMBER.finditer(text))


def _names_of_terms() -> set[str]:
    return set(FRAMEWORK_TERMS) | {name.split(":", 1)[0] for name in FRAMEWORK_TERMS}


def test_results_exist():
    assert len(TABLES) >= 30


@pytest.mark.parametrize("path", TABLES, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_no_column_escapes_a_tolerance(path):
    """Every column has a declared rule; a float in a name column is an input copied from the experiment file
    (or a registered term's name); labels hold no float; every other float has a tolerance above zero."""
    table = read_table(path)
    inputs = {x for x, _ in numbers_in((path.parent / "config.toml").read_text())[1]}
    names = _names_of_terms()
    for col in table.columns:
        assert col in RULES, f"{path}: column {col!r} has no tolerance rule in kl_grad/lab/tolerances.py"
        rule = RULES[col]
        numeric = pd.api.types.is_numeric_dtype(table[col]) and table[col].dtype != bool
        for row in table.to_dict(orient="records"):
            value = row[col]
            if numeric:
                x = float(value)
                if rule is not Rule.COUNT and math.isfinite(x) and x != 0:
                    assert cell_tolerance(col, row, row) > 0, f"{path}: {col} = {x!r} has a zero tolerance"
                continue
            text = value if isinstance(value, str) else ""  # an empty cell reads as NaN: nothing to compare
            if not _floats(text):
                continue
            if rule is Rule.LABEL:
                pytest.fail(f"{path}: label column {col!r} holds a float: {text!r}")
            if rule is Rule.NAME:
                echoed = {x for x, _ in numbers_in(text)[1]} <= inputs  # numbers of the experiment file
                assert echoed or text in names, \
                    f"{path}: {col} = {text!r} is compared as text but is neither an input nor a registered name"
                continue
            assert rule not in EXACT_TEXT
            for m in NUMBER.finditer(text):
                x, unit = float(m.group()), printed_unit(m.group(), text[m.end():m.end() + 1])
                if FLOAT.search(m.group()) and math.isfinite(x) and x != 0:
                    assert max(unit, column_tolerance(col, row, row, abs(x))) > 0, \
                        f"{path}: {col} holds {m.group()} with a zero tolerance"


def _move(text: str, factor: float) -> str:
    """Every float written in ``text`` multiplied by ``factor`` (printed with all 17 digits)."""
    def moved(m):
        token = m.group()
        if not FLOAT.search(token) or not math.isfinite(float(token)):
            return token
        return repr(float(token) * factor)
    return NUMBER.sub(moved, text)


def _moved_table(path: Path, factor: float) -> str:
    """The committed CSV with every float (number cells and the numbers inside text cells that are not names or
    labels) moved by ``factor``."""
    table = read_table(path)
    for col in table.columns:
        if RULES.get(col) in EXACT_TEXT + (Rule.COUNT, Rule.INPUT):
            continue
        if pd.api.types.is_numeric_dtype(table[col]) and table[col].dtype != bool:
            table[col] = table[col].astype(float) * factor
        else:
            table[col] = [_move(v, factor) if isinstance(v, str) else v for v in table[col]]
    return table.to_csv(index=False, float_format="%.17g", lineterminator="\n")


@pytest.mark.parametrize("sign", [1, -1])
def test_every_committed_float_moved_by_1e_13_relative_checks_clean(sign):
    """What another CPU's rounding does (relative 1e-16..1e-14 on the machines tried), with 10× room."""
    for path in TABLES:
        diffs = table_differences(path, _moved_table(path, 1 + sign * 1e-13))
        assert diffs == [], f"{path}: {diffs[0]}"


def test_the_move_reaches_vectors_and_warnings():
    path = ROOT / "results" / "train_tokens" / "table.csv"
    moved = read_table(_moved_table(path, 1.01))
    old = read_table(path)
    assert moved.loc[0, "probs"] != old.loc[0, "probs"] and moved.loc[0, "warning"] != old.loc[0, "warning"]
    diffs = table_differences(path, _moved_table(path, 1.01))  # 2.23e-03 → 2.2523e-03: beyond ± 1e-05
    assert {d.column for d in diffs} >= {"probs[0]", "kl", "warning[0]", "optimum[0]"}


def test_one_gradient_moved_by_1e_6_relative_fails_named(tmp_path):
    """The acceptance: seed003_exact's first mean_grad × (1 + 1e-6) fails the check, naming file, row, column."""
    out = tmp_path / "results"
    shutil.copytree(ROOT / "results" / "seed003_exact", out / "seed003_exact")
    csv = out / "seed003_exact" / "table.csv"
    table = read_table(csv)
    row = 2  # k1 loss scale is index 1; take a row whose mean is far from zero
    old = float(table.loc[row, "mean_grad"])
    assert abs(old) > 0.1
    table.loc[row, "mean_grad"] = old * (1 + 1e-6)
    csv.write_text(table.to_csv(index=False, float_format="%.10g", lineterminator="\n"))
    report = check(ROOT / "experiments" / "seed003_exact.toml", out, progress=False)
    assert report.failed
    (diff,) = report.differences["seed003_exact"]
    name = ", ".join(table.loc[row, ["estimator", "placement", "direction", "param"]])
    assert diff.column == "mean_grad" and diff.row == row and diff.row_id == name
    assert str(diff).startswith(f"line {row + 2} ({name}), mean_grad: committed {'%.10g' % (old * (1 + 1e-6))}")


@pytest.mark.parametrize("token, after, unit", [("0.64", "%", 0.01), ("3.7e-05", "", 1e-6), ("2.93e-03", "", 1e-5),
                                                ("1e-09", "", 1e-9), ("400", " ", 0.0), ("479", "%", 1.0),
                                                ("-0.5813955071", "", 1e-10), ("2.5e+03", "", 100.0)])
def test_printed_unit_is_the_last_written_digit(token, after, unit):
    assert printed_unit(token, after) == pytest.approx(unit, rel=1e-12, abs=0)


def test_numbers_in_text_leave_words_and_indices_alone():
    words, nums = numbers_in("k3 clamp active on 0.64% of samples at trans[0][1], kurtosis 3.7e+08, nan")
    assert words == "k3 clamp active on #% of samples at trans[#][#], kurtosis #, #"
    assert [x for x, _ in nums][:4] == [0.64, 0.0, 1.0, 3.7e8] and math.isnan(nums[4][0])


def test_a_warning_number_moves_one_printed_unit_but_not_two(tmp_path):
    head = "estimator,mode,warning\n"
    old = tmp_path / "t.csv"
    old.write_text(head + "k3,exact,clamp active on 0.64% of samples\n")
    assert table_differences(old, head + "k3,exact,clamp active on 0.65% of samples\n") == []
    (diff,) = table_differences(old, head + "k3,exact,clamp active on 0.66% of samples\n")
    assert diff.column == "warning[0]" and diff.committed == 0.64 and diff.recomputed == 0.66
    (diff,) = table_differences(old, head + "k3,exact,clamp active on 0.64% of draws\n")
    assert diff.column == "warning" and diff.tolerance is None  # other words: a text difference


def test_a_training_vector_is_held_to_the_trajectory_rule(tmp_path):
    head = "estimator,placement,probs,kl\n"
    old = tmp_path / "t.csv"
    old.write_text(head + 'k2,loss,"[0.5813955071, 0.4186044929]",0.1\n')
    assert table_differences(old, head + 'k2,loss,"[0.5813955075, 0.4186044925]",0.1\n') == []  # 4e-10 < 1e-9
    (diff,) = table_differences(old, head + 'k2,loss,"[0.5813955091, 0.4186044929]",0.1\n')  # 2e-9
    assert diff.column == "probs[0]" and diff.tolerance == pytest.approx(1e-9)
