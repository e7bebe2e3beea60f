"""kl_grad.lab.results.compare: named differences between a committed and a recomputed table, each number held to
its own precision (tolerances hand-computed here from the rules in compare.py's docstring)."""

from __future__ import annotations

import math

import pytest

from kl_grad.lab.results.compare import same_table, table_differences
from kl_grad.lab.results.tolerances import digit_unit, tolerance

GRAD_HEADER = ("estimator,placement,direction,param,true_grad,mean_grad,bias_rel,stdev_rel,se,stdev,trials,samples,"
               "mode,verdict,warning")


def grad_csv(*rows: str) -> str:
    return "\n".join([GRAD_HEADER, *rows]) + "\n"


EXACT_ROW = "k3,loss-w,policy||ref,loc,-0.826446281,-0.826446281,0,0.0054,1e-06,0.0045,,50000,exact,unbiased,"
MC_ROW = "k1,loss,policy||ref,loc,-0.826446281,0.0001,1.000121,0.0054,0.00014,0.0045,1000,50000,mc,biased,"


def write(tmp_path, text, name="committed.csv"):
    path = tmp_path / name
    path.write_text(text)
    return path


@pytest.mark.parametrize("x, unit", [(0.826446281, 1e-10), (1234.5, 1e-6), (-2e-13, 1e-22), (0.0, 0.0),
                                     (math.inf, 0.0), (math.nan, 0.0), (1.0, 1e-9)])
def test_digit_unit_is_the_tenth_significant_digit(x, unit):
    assert digit_unit(x) == pytest.approx(unit, rel=1e-12, abs=0)


def test_identical_tables_have_no_differences(tmp_path):
    text = grad_csv(EXACT_ROW, MC_ROW)
    assert table_differences(write(tmp_path, text), text) == []
    assert same_table(write(tmp_path, text), text)


def test_exact_mean_is_held_to_the_sum_of_both_error_bounds(tmp_path):
    # se 1e-6 on both sides: tolerance 2e-6 (above the 1e-9 relative floor, 8.3e-10, and the digit unit 1e-10)
    row = dict(zip(GRAD_HEADER.split(","), EXACT_ROW.split(",")))
    assert tolerance("mean_grad", row, row) == pytest.approx(2e-6, rel=1e-12)
    committed = write(tmp_path, grad_csv(EXACT_ROW))
    inside = grad_csv(EXACT_ROW.replace(",-0.826446281,0,", ",-0.826448181,0,"))  # moved 1.9e-6
    outside = grad_csv(EXACT_ROW.replace(",-0.826446281,0,", ",-0.826448381,0,"))  # moved 2.1e-6
    assert table_differences(committed, inside) == []
    (diff,) = table_differences(committed, outside)
    assert (diff.row, diff.row_id, diff.column) == (0, "k3, loss-w, policy||ref, loc", "mean_grad")
    assert (diff.committed, diff.recomputed, diff.tolerance) == (-0.826446281, -0.826448381, pytest.approx(2e-6))
    text = str(diff)
    assert "line 2 (k3, loss-w, policy||ref, loc), mean_grad" in text
    assert "-0.826446281" in text and "-0.826448381" in text and "tolerance 2e-06" in text


def test_exact_numbers_without_an_error_get_the_relative_floor(tmp_path):
    # stdev 0.0045 in an exact row: 1e-9 relative = 4.5e-12, above its digit unit 1e-12
    row = dict(zip(GRAD_HEADER.split(","), EXACT_ROW.split(",")))
    assert tolerance("stdev", row, row) == pytest.approx(4.5e-12, rel=1e-9)
    changed = grad_csv(EXACT_ROW.replace(",0.0045,", ",0.0045045,"))  # a 0.1% change
    (diff,) = table_differences(write(tmp_path, grad_csv(EXACT_ROW)), changed)
    assert diff.column == "stdev"


def test_mc_mean_is_held_to_the_float_noise_of_its_per_sample_terms(tmp_path):
    # s1 = stdev·√samples = 0.0045·√50000 = 1.00623; rms = √(1e-4² + s1²); tolerance 1e-5·rms
    rms = math.hypot(1e-4, 0.0045 * math.sqrt(50000))
    row = dict(zip(GRAD_HEADER.split(","), MC_ROW.split(",")))
    assert tolerance("mean_grad", row, row) == pytest.approx(1e-5 * rms, rel=1e-12)
    assert tolerance("bias_rel", row, row) == pytest.approx(1e-5 * rms / 0.826446281, rel=1e-9)
    assert tolerance("stdev", row, row) == pytest.approx(1e-5 * rms, rel=1e-12)
    assert tolerance("se", row, row) == pytest.approx(1e-5 * rms / math.sqrt(1000), rel=1e-12)
    assert tolerance("stdev_rel", row, row) == pytest.approx(1e-5 * rms / 0.826446281, rel=1e-9)
    committed = write(tmp_path, grad_csv(MC_ROW))
    assert table_differences(committed, grad_csv(MC_ROW.replace(",0.0001,", ",0.000109,"))) == []
    (diff,) = table_differences(committed, grad_csv(MC_ROW.replace(",0.0001,", ",0.000111,")))
    assert diff.column == "mean_grad" and diff.tolerance == pytest.approx(1e-5 * rms)


def test_text_cells_and_counts_must_be_equal(tmp_path):
    committed = write(tmp_path, grad_csv(MC_ROW))
    diffs = table_differences(committed, grad_csv(MC_ROW.replace(",biased,", ",no bias detected,")
                                                  .replace(",1000,", ",1001,")))
    assert [(d.column, d.committed, d.recomputed, d.tolerance) for d in diffs] == [
        ("trials", 1000, 1001, 0.0), ("verdict", "biased", "no bias detected", None)]
    assert "verdict: committed 'biased', recomputed 'no bias detected'" in str(diffs[1])


def test_nan_and_inf_equal_only_themselves(tmp_path):
    nan_row = EXACT_ROW.replace(",-0.826446281,0,", ",,0,")  # mean refused (NaN)
    inf_row = EXACT_ROW.replace(",1e-06,", ",inf,")
    for row in (nan_row, inf_row):
        assert table_differences(write(tmp_path, grad_csv(row)), grad_csv(row)) == []
    (diff,) = table_differences(write(tmp_path, grad_csv(nan_row)), grad_csv(EXACT_ROW))
    assert diff.column == "mean_grad" and math.isnan(diff.committed)
    (diff,) = table_differences(write(tmp_path, grad_csv(inf_row)), grad_csv(EXACT_ROW))
    assert diff.column == "se" and diff.committed == math.inf


def test_shape_differences_are_one_named_difference(tmp_path):
    committed = write(tmp_path, grad_csv(EXACT_ROW, MC_ROW))
    (rows,) = table_differences(committed, grad_csv(EXACT_ROW))
    assert (rows.row, rows.column) == (None, "rows") and str(rows) == "rows: committed 2; recomputed 1"
    fewer = "\n".join(line.rsplit(",", 1)[0] for line in grad_csv(EXACT_ROW, MC_ROW).splitlines()) + "\n"
    (cols,) = table_differences(committed, fewer)
    assert cols.column == "columns" and "has extra warning" in str(cols)
    (bad,) = table_differences(tmp_path / "missing.csv", fewer)
    assert bad.column == "table" and "unreadable" in str(bad)


def test_every_differing_cell_is_listed_in_row_order(tmp_path):
    committed = write(tmp_path, grad_csv(EXACT_ROW, MC_ROW))
    moved = grad_csv(EXACT_ROW.replace(",0.0045,", ",0.0046,"), MC_ROW.replace(",0.0001,", ",0.0002,"))
    assert [(d.row, d.column) for d in table_differences(committed, moved)] == [(0, "stdev"), (1, "mean_grad")]


def test_inputs_may_be_paths_csv_text_or_the_dataframe_a_run_returns(tmp_path):
    import pandas as pd

    text = grad_csv(EXACT_ROW, MC_ROW)
    path = write(tmp_path, text)
    table = pd.read_csv(path)
    assert table_differences(str(path), table) == [] and table_differences(path, str(path)) == []
    table.loc[1, "mean_grad"] = 0.0002
    assert [(d.row, d.column) for d in table_differences(str(path), table)] == [(1, "mean_grad")]


def test_exact_bias_and_se_columns():
    row = dict(zip(GRAD_HEADER.split(","), EXACT_ROW.split(",")))  # se 1e-6 both sides, true -0.826446281
    assert tolerance("bias_rel", row, row) == pytest.approx(2e-6 / 0.826446281, rel=1e-12)
    assert tolerance("se", row, row) == pytest.approx(1e-6, rel=1e-12)  # an error bound, within a factor 2
    other = dict(row, **{"bias_vs_ref||policy": "0.5"})  # the other direction's truth is not in the row:
    # |t| ≥ |m|/(1 + bias), so Δbias ≤ Δm·(1 + bias)/|m| = 2e-6·1.5/0.826446281
    assert tolerance("bias_vs_ref||policy", other, other) == pytest.approx(2e-6 * 1.5 / 0.826446281, rel=1e-12)


def test_mc_z_scores_carry_the_mean_and_se_errors():
    row = dict(zip(GRAD_HEADER.split(","), MC_ROW.split(",")), z_vs_exact="0.7", z_stdev_vs_exact="-1.5")
    d_mean = 1e-5 * math.hypot(1e-4, 0.0045 * math.sqrt(50000))
    d_se = d_mean / math.sqrt(1000)
    assert tolerance("z_vs_exact", row, row) == pytest.approx((d_mean + 0.7 * d_se) / 0.00014, rel=1e-12)
    assert tolerance("z_stdev_vs_exact", row, row) == pytest.approx(d_mean * math.sqrt(2000) / 0.0045, rel=1e-12)


AUDIT_CSV = ("function,follows,problem,tokens,mode,rel_bias_norm_vs_policy||ref,warning\n"
             "k1_loss,zero,gauss-near,1,exact,1,\n"
             "k3_loss,policy||ref,markov-4,4,exact,0.25,\n")


def test_audit_rows_are_named_by_function_problem_and_tokens(tmp_path):
    committed = write(tmp_path, AUDIT_CSV)
    (diff,) = table_differences(committed, AUDIT_CSV.replace(",0.25,", ",0.5,"))
    assert diff.row_id == "k3_loss, markov-4, tokens=4"
    assert "line 3 (k3_loss, markov-4, tokens=4), rel_bias_norm_vs_policy||ref" in str(diff)


@pytest.mark.parametrize("header, row, name", [
    ("framework,term,problem,placement,mode,follows,err_norm", "verl,low_var_kl,tokens-far,loss,mc,none,{v}",
     "verl, low_var_kl, tokens-far, loss"),
    ("estimator,placement,d,c,expected_gradient", "openrlhf:k2,loss,-4,{v},problem-dependent",
     "openrlhf:k2, loss, d=-4"),
    ("L,estimator,placement,direction,rel_bias_norm", "6,k3,loss,policy||ref,{v}", "L=6, k3, loss, policy||ref"),
    ("estimator,placement,aggregation,batch,rel_bias_norm", "k1,loss,seq-mean-token-mean,any,{v}",
     "k1, loss, seq-mean-token-mean, any"),
    ("estimator,placement,probs,converged,kl", "k3,reward,\"0.2,0.8\",True,{v}", "k3, reward"),
    ("estimator,placement,direction,params,rel_bias_norm", "k2,loss,policy||ref,12,{v}", "k2, loss, policy||ref"),
])
def test_every_result_kind_names_its_rows(tmp_path, header, row, name):
    committed = write(tmp_path, f"{header}\n{row.format(v=0.5)}\n")
    (diff,) = table_differences(committed, f"{header}\n{row.format(v=1.5)}\n")  # beyond every rule (err_norm: ×2)
    assert diff.row_id == name


def test_every_committed_results_table_row_has_a_name():
    """Every kind's committed table (results/*/*.csv) names each of its rows in a difference's message."""
    from pathlib import Path

    from kl_grad.lab.results.compare import _row_id, read_table

    tables = sorted((Path(__file__).resolve().parents[2] / "results").glob("*/*.csv"))
    assert tables
    for path in tables:
        for row in read_table(path).to_dict(orient="records"):
            assert _row_id(row), path


def test_an_exact_se_that_moved_by_more_than_a_factor_2_is_a_difference(tmp_path):
    # the rule |a − b| ≤ min(a, b) (hand-computed): 2e-13 → 3.9e-13 passes, 2e-13 → 5e-13 and 1e-3 do not
    head = "estimator,mode,mean_grad,se\n"
    old = tmp_path / "t.csv"
    old.write_text(head + "k2,exact,0.5,2e-13\n")
    assert table_differences(old, head + "k2,exact,0.5,3.9e-13\n") == []
    for moved in ("5e-13", "0.001"):
        diffs = table_differences(old, head + f"k2,exact,0.5,{moved}\n")
        assert [d.column for d in diffs] == ["se"]
