"""Views of an ``AuditResult``: markdown (the default), grid (fancy_grid) and json.

json is one object: ``function``, ``follows`` (policy||ref, ref||policy, zero or none: the on-policy
single-token problems' common verdict), ``follows_sequence`` (the same over the on-policy sequence problems,
against the sequence-level KL), ``warnings`` (strings) and ``problems`` (one object per battery problem, with
per-parameter ``params``); NaN is null, infinities the strings "inf"/"-inf", floats 10 significant digits
(``report.FLOAT_FORMAT``). The text views print the verdict, the warnings and one row per problem.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

from tabulate import tabulate

from ...directions import NONE, POLICY_REF, REF_POLICY, ZERO
from ...errors import choose
from ..report import json_value

if TYPE_CHECKING:  # the engine (pandas) loads with the audit, not with `kl-grad audit --help`
    import pandas as pd

    from .auditor import AuditResult

COLUMNS = {  # table column: header
    "problem": "problem", "tokens": "L", "sampler": "sampler", "mode": "mode", "follows": "follows",
    "rel_bias_norm_vs_policy||ref": "rel bias vs policy||ref",
    "rel_bias_norm_vs_ref||policy": "rel bias vs ref||policy",
    "cosine_vs_policy||ref": "cos policy||ref", "cosine_vs_ref||policy": "cos ref||policy",
    "factor": "factor", "follows_scaled": "follows ÷ factor",
    "rel_bias_scaled_vs_policy||ref": "rel bias ÷ factor vs policy||ref",
    "rel_bias_scaled_vs_ref||policy": "rel bias ÷ factor vs ref||policy",
    "stdev_ratio": "stdev / best built-in", "best_builtin": "best built-in", "zero_mass": "zero-grad mass",
}
FOLLOWS_MEANING = {
    POLICY_REF: "its expected gradient is ∇KL(π_θ‖π_ref) on every on-policy problem",
    REF_POLICY: "its expected gradient is ∇KL(π_ref‖π_θ) on every on-policy problem",
    ZERO: "its expected gradient is 0 on every on-policy problem: it does not regularise at all",
    NONE: "no single KL gradient on every on-policy problem (see the rows)",
}


def _json_tree(v):
    if isinstance(v, dict):
        return {k: _json_tree(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_json_tree(x) for x in v]
    return json_value(v)


def to_json(result: AuditResult) -> str:
    return json.dumps(_json_tree(result.as_dict()), indent=2, ensure_ascii=False) + "\n"


def _rows(result: AuditResult) -> pd.DataFrame:
    table = result.table[[c for c in COLUMNS if c in result.table.columns]].copy()
    return table.rename(columns=COLUMNS)


def _scaled_head(result: AuditResult) -> str:
    """group-reward with a linear normalisation: what E[∇kl] follows once its factor (1 − 1/G) is divided out."""
    from .auditor import overall_follows

    rows = [p for p in result.problems if p.get("follows_scaled")]
    if not rows or rows[0]["factor"] == 1:  # "none": nothing scaled
        return ""
    lines = []
    for sequence, what in ((False, "single-token"), (True, "sequence")):
        scaled = overall_follows([{**p, "follows": p["follows_scaled"]} for p in rows], sequence=sequence)
        if scaled != NONE and any(p.get("sequence", False) == sequence for p in rows):
            lines.append(f"÷ factor {rows[0]['factor']:.4g} (= 1 − 1/G): follows {scaled} on every on-policy {what} "
                         f"problem: the KL part is (1 − 1/G)·∇KL, the right direction shrunk (β·G/(G − 1) undoes it)")
    return "".join(line + "\n" for line in lines)


def _text(result: AuditResult, tablefmt: str) -> str:
    sequences = any(p.get("sequence") for p in result.problems)
    meaning = FOLLOWS_MEANING[result.follows]
    head = f"{result.name}: follows {result.follows} — "
    head += (meaning.replace("on-policy problem", "on-policy single-token problem") if sequences else meaning) + "\n"
    if sequences:
        meaning = FOLLOWS_MEANING[result.follows_sequence].replace("on-policy problem", "on-policy sequence problem")
        head += f"sequences (L > 1): follows {result.follows_sequence} — {meaning}, against the sequence-level KL\n"
    head += _scaled_head(result) + "\n"
    body = tabulate(_rows(result), headers="keys", tablefmt=tablefmt, showindex=False, floatfmt=".4g",
                    missingval="")
    notes = "".join(f"- {w}\n" for w in result.warnings)
    return head + body + "\n" + _dtype_tables(result, tablefmt) + (f"\nwarnings:\n{notes}" if notes else "")


DTYPE_COLUMNS = {"problem": "problem", "nonfinite_value": "NaN/inf value mass", "nonfinite_grad": "NaN/inf grad mass",
                 "negative": "negative mass (float64 ≥ 0)", "vanished": "zero-grad mass (float64 ≠ 0)",
                 "overflow": "±inf mass (beyond the dtype)",
                 "rel_bias": "rel bias of E[grad] vs float64", "rounding_floor": "rounding floor"}


def _dtype_tables(result: AuditResult, tablefmt: str) -> str:
    """With ``dtypes``: the m-mass of each check and the cast bias per dtype × problem, then the grid of
    value and ∂L/∂ℓ at d = logp − ref_logp per dtype (float64 first)."""
    import pandas as pd

    reports = [r for r in result.dtypes if r["grid"]]
    if not reports:
        return ""
    rows = [{"dtype": r["dtype"], **{h: p[c] for c, h in DTYPE_COLUMNS.items()}} for r in reports[1:]
            for p in r["problems"]]
    masses = tabulate(pd.DataFrame(rows), headers="keys", tablefmt=tablefmt, showindex=False, floatfmt=".2g",
                      missingval="") if rows else ""
    grid = pd.DataFrame({"d = logp − ref_logp": [g["d"] for g in reports[0]["grid"]]})
    for r in reports:
        grid[f"{r['dtype']} value"] = [g["value"] for g in r["grid"]]
        grid[f"{r['dtype']} grad"] = [g["grad"] for g in r["grid"]]
    grid_text = tabulate(grid, headers="keys", tablefmt=tablefmt, showindex=False, floatfmt=".4g")
    how = ("inputs cast to each dtype as a trainer casts them, ∂L/∂ℓ w.r.t. the cast leaf; masses of the "
           "problems' probe points; rel bias = ‖E[g]_dtype − E[g]_float64‖ / ‖E[g]_float64‖ by exact enumeration "
           "(floor: inputs rounded, computed in float64; none on continuous problems)")
    head = f"\ndtypes ({how}):\n\n{masses}\n" if masses else ""
    return head + f"\ngrid (on-policy, one point each):\n\n{grid_text}\n"


def to_markdown(result: AuditResult) -> str:
    return _text(result, "github")


def to_grid(result: AuditResult) -> str:
    return _text(result, "fancy_grid")


AUDIT_VIEWS = {"markdown": to_markdown, "grid": to_grid, "json": to_json}


def render_audit(result: AuditResult, fmt: str = "markdown") -> str:
    """The audit in one of ``AUDIT_VIEWS`` (unknown formats list the allowed ones)."""
    return choose("format", fmt, AUDIT_VIEWS)(result)  # type: ignore[operator]
