"""Command line: ``kl-grad`` (console script) and ``python -m kl_grad``.

Bad input (unknown name, malformed spec, out-of-range number) prints one line
``kl-grad: error: ...`` naming what is allowed and exits with status 2; no
traceback, no partial output file.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import math
import os
import sys
import warnings
from pathlib import Path

from ..errors import KLGradError, choose
from . import coefficients_cli
from .allocator import keep_freed_memory
from .config import (
    DEFAULT_ESTIMATORS,
    DEFAULT_PLACEMENTS,
    GradientExperiment,
    ValueExperiment,
)
from .progress import Progress

EPILOG_TABLE = """\
examples:
  kl-grad table --policy normal:0,1 --ref normal:1,1.1
      seed-003's forward table: k1, k2, k3 against the analytic gradient
  kl-grad table --policy normal:0,1 --ref normal:1,1.1 --estimators reverse_k1,reverse_k2 --format grid
      the reverse table, printed as seed 003 prints it
  kl-grad table --policy normal:0,1 --ref normal:1,1.1 --trials 200 --format csv > grads.csv
  kl-grad table --policy markov:4:0,0.5,-1:0,1,0/0.2,0,0/1,0,-1 --ref markov:4:0,0,0:0,0,0/0,0,0/0,0,0 \
      --mode exact --placements loss,loss-prefix-w,reward,both --summary
      sequences: a 3-token Markov chain of length 4, one summary line per estimator × placement

placements (how the per-sample estimator k(d) becomes the loss; w = π_θ/sg(m), m = the sampler):
  loss        k(d)            plain loss, as GRPO-style code does
  loss-sgw    sg(w)·k(d)      importance-corrected value, no score term
  loss-w      w·k(d)          differentiable weight (on-policy w ≡ 1 with gradient s)
  reward      w·sg(k(d))      KL as a reward penalty under REINFORCE

sequence placements (markov:L:INIT:TRANS policies; d_t, k_t = k(d_t) per token, w_t = π_θ(y_t|y_<t)/sg(m),
W_t = Π_{τ≤t} w_τ; the truth is ∇ of the sequence KL E[Σ_t d_t]; see kl_grad/sequences.py):
  loss Σ_t k_t · loss-sgw Σ_t sg(w_t)k_t · loss-w Σ_t w_t k_t · loss-prefix-w Σ_t W_t k_t ·
  reward Σ_t w_t sg(Σ_{t'≥t} k_t') · reward-prefix-w Σ_t W_t sg(k_t) · reward-seq W_L sg(Σ_t k_t) ·
  both loss + reward · trl-seq exp(mean_t log w_t)·Σ_t k_t (TRL's sequence-level ratio)

reading the table:
  direction   the KL whose gradient the row is compared with: policy||ref = KL(π_θ‖π_ref),
              ref||policy = KL(π_ref‖π_θ) (seed 003 calls the latter "reverse KL")
  bias_rel    |mean_grad − true_grad| / |true_grad|  (compare with se to tell bias from noise)
  stdev_rel   standard deviation of the per-trial gradient / |true_grad| (exact mode: of a
              --samples mean)
  se          standard error of mean_grad (exact mode: the mean's numerical error bound)
  follows     which KL's gradient the mean gradient equals, by the verdict's rule
  verdict     exact: biased (|bias| > se and > 1e-8 relative) / unbiased / unresolved (se too large
              to tell) / "unbiased, higher variance" (stdev > 1.2× the best unbiased row of the same
              table and parameter). MC: biased when |bias| > t·se, t the Student-t quantile with
              trials − 1 degrees of freedom at a two-sided false-alarm rate of 6.3e-5 (4 se for
              a normal; 4.02 at 1000 trials, 10051 at 2) / no bias detected; "no verdict: infinite
              variance" (se inf), "no verdict: variance unknown", "no verdict: heavy tail" (exact se
              shown); unavailable: the mean was refused (NaN), see warning
  z_vs_exact  (MC mean − exact mean) / se; z_stdev_vs_exact does the same for the stdev
  warning     why a number is refused (NaN), infinite (inf) or unreliable; read it
"""

EPILOG_REPRODUCE = """\
examples:
  kl-grad reproduce                        rerun experiments/*.toml into results/ (a folder whose numbers
                                           moved by less than their precision is kept byte for byte)
  kl-grad reproduce experiments/seed003_exact.toml
                                           rerun one experiment; only results/seed003_exact/ is written
  kl-grad reproduce --check                CI: recompute everything, write nothing, compare every number with
                                           results/ (exit 0 passed, 1 with one line per difference)
  kl-grad reproduce --check experiments/estimators_all_exact.toml --out results
                                           check one experiment (every estimator × placement, exact)

tolerances of --check (kl_grad/lab/tolerances.py, a rule for every column): one unit of the last printed
  digit at least; exact rows: means ± (committed se + recomputed se), other numbers 1e-9 relative; Monte-Carlo
  rows (same seed): the float32 reordering error 1e-5 × the per-sample rms, carried through each column's
  formula; training end points 1e-9 × max(1, |x|); numbers inside vectors and warnings one by one; names and
  verdicts equal
"""


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors and exit status 2."""

    def error(self, message: str):  # noqa: D102 - argparse hook
        self.exit(2, f"kl-grad: error: {message} (see {self.prog} --help)\n")


def _whole_number(text: str) -> int:
    """An integer, also in integer-valued scientific notation (1e6) or with underscores (50_000)."""
    try:
        return int(text)
    except ValueError:
        pass
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not value.is_integer():
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number (examples: 50000, 5e4, 50_000)")
    return int(value)


def _version() -> str:
    try:
        return importlib.metadata.version("kl_grad")
    except importlib.metadata.PackageNotFoundError:
        return "unknown (not installed)"


def _csv_list(text: str) -> list[str]:
    """A comma list of names; an empty name (``k1,,k2``, a trailing comma) is an error, not skipped."""
    names = [t.strip() for t in text.split(",")]
    if not all(names):
        raise argparse.ArgumentTypeError(f"{text!r} has an empty name; write names separated by single commas, "
                                         "e.g. k1,k2,k3")
    return names


def build_parser() -> argparse.ArgumentParser:
    from ..estimators import ESTIMATORS
    from ..placements import PLACEMENTS
    from ..sequences import SEQUENCE_PLACEMENTS
    from .report import VIEWS

    g, v_ = GradientExperiment, ValueExperiment  # the run defaults, declared once there

    parser = _Parser(prog="kl-grad", description="Measure whether autograd gradients of KL-estimator losses are "
                     "unbiased for the KL gradient you meant, and at what variance.")
    parser.add_argument("--version", action="version", version=f"kl-grad {_version()}")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    t = sub.add_parser("table", help="gradient table (Monte Carlo or exact) for a policy/reference pair",
                       description="Sample from the policy (or, with --mode exact, integrate over it), take "
                       "autograd gradients of each estimator's mean loss per trial, and compare them with the "
                       "analytic ∇KL in both directions.", epilog=EPILOG_TABLE,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    t.add_argument("--policy", required=True, help="π_θ as FAMILY:PARAMS, e.g. normal:0,1 (LOC,SCALE) or "
                   "categorical:0,0.5,-1 (logits, a token-like policy) or markov:L:INIT:TRANS (token sequences "
                   "of length L, e.g. markov:4:0,0.5,-1:0,1,0/0.2,0,0/1,0,-1) or markov-eos:LMAX:INIT:TRANS (the "
                   "same, ending at its first EOS = the last token id); its parameters are differentiated")
    t.add_argument("--ref", required=True, help="π_ref, e.g. normal:1,1.1")
    t.add_argument("--estimators", type=_csv_list, default=list(DEFAULT_ESTIMATORS),
                   help=f"comma list from: {', '.join(ESTIMATORS)} (default {','.join(DEFAULT_ESTIMATORS)})")
    t.add_argument("--placements", type=_csv_list, default=list(DEFAULT_PLACEMENTS),
                   help=f"comma list from: {', '.join(PLACEMENTS)} (default {','.join(DEFAULT_PLACEMENTS)}); "
                   f"markov sequences: {', '.join(SEQUENCE_PLACEMENTS)}")
    t.add_argument("--sampler", default=None, help="off-policy sampling distribution (default: the policy)")
    t.add_argument("--direction", default=None, help="compare every row with this KL's gradient: policy||ref or "
                   "ref||policy (aliases: reverse = policy||ref, forward = ref||policy, the RLHF papers' usage); "
                   "default: each estimator's own target")
    t.add_argument("--pathwise", action="store_true", help="contrast: reparameterised samples (rsample), "
                   "differentiated through x; normal policy, on-policy only (not available for discrete tokens)")
    t.add_argument("--samples", type=_whole_number, default=g.samples, help=f"samples per trial (default {g.samples})")
    t.add_argument("--trials", type=_whole_number, default=g.trials, help=f"trials, at least 2 (default {g.trials}; "
                   "exact mode draws none and ignores it)")
    t.add_argument("--seed", type=_whole_number, default=g.seed, help=f"random seed (default {g.seed}, as the seed-003 "
                   "reference script, whose draws it repeats exactly)")
    t.add_argument("--mode", default=g.mode, help=f"mc (sampled trials) or exact (quadrature: noise-free "
                   f"expected gradient and the exact stdev of a --samples mean, in milliseconds); default {g.mode}")
    t.add_argument("--dtype", default=g.dtype, help=f"float32 (as trainers) or float64; default {g.dtype}")
    t.add_argument("--format", default=None, help=f"one of {', '.join(VIEWS['gradients'])} (default: from the -o "
                   "extension .md/.csv/.json, else markdown)")
    t.add_argument("--summary", action="store_true", help="print the vector summary instead: one line per "
                   "estimator × placement over all parameters (relative bias norm, cosine, follows, relative "
                   f"stdev); formats {', '.join(VIEWS['summary'])}")
    t.add_argument("-o", "--output", type=Path, help="write to this file instead of stdout (written whole or "
                   "not at all; missing parent folders are created)")
    t.add_argument("-q", "--quiet", action="store_true", help="no progress on stderr")

    v = sub.add_parser("values", help="value table: mean(k) as an estimate of the KL (Schulman 2020)",
                       description="How well does the sample mean of each estimator estimate the KL itself? "
                       "Samples come from the policy q; bias_rel and stdev_rel (per sample) are relative to the "
                       "true KL in the estimator's direction.",
                       epilog="example:\n  kl-grad values --policy normal:0,1 --ref normal:1,1 --mode exact\n"
                       "      Schulman's second table: k1 unbiased (stdev/true 2), k2 biased by 0.25, k3 unbiased",
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    v.add_argument("--policy", required=True, help="q, the sampling distribution, e.g. normal:0,1")
    v.add_argument("--ref", required=True, help="p, e.g. normal:1,1")
    v.add_argument("--estimators", type=_csv_list, default=list(DEFAULT_ESTIMATORS),
                   help="comma list from: " + ", ".join(n for n, e in ESTIMATORS.items() if not e.gradient_only)
                   + f" (default {','.join(DEFAULT_ESTIMATORS)}; reverse_k2 = r is a gradient surrogate with no KL "
                   "value)")
    v.add_argument("--mode", default=v_.mode, help=f"exact or mc (default {v_.mode})")
    v.add_argument("--samples", type=_whole_number, default=v_.samples, help=f"MC samples (default {v_.samples}, as "
                   "Schulman)")
    v.add_argument("--seed", type=_whole_number, default=v_.seed, help=f"random seed for --mode mc (default {v_.seed})")
    v.add_argument("--format", default=None, help=f"{', '.join(VIEWS['values'])} (default: from the -o "
                   "extension .md/.csv/.json, else markdown)")
    v.add_argument("-o", "--output", type=Path, help="write to this file instead of stdout (written whole or "
                   "not at all; missing parent folders are created)")

    r = sub.add_parser("reproduce", help="run every experiments/*.toml (or one file) and write results/",
                       description="Regenerate every table and figure in results/ from the experiment files "
                       "(one TOML file per table). All files are validated before anything runs; outputs are "
                       "written atomically and are byte-for-byte reproducible.", epilog=EPILOG_REPRODUCE,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    r.add_argument("experiments", type=Path, nargs="?", default=Path("experiments"),
                   help="folder of experiment TOML files (default: ./experiments), or one .toml file: then "
                   "only its results folder is written")
    r.add_argument("--out", type=Path, default=Path("results"), help="output folder (default: ./results)")
    r.add_argument("--check", action="store_true", help="write nothing: recompute and compare every number with "
                   "--out/<name>/table.csv within its own precision; exit 1 naming each difference")

    from .train_cli import add_parser as add_train

    add_train(sub)
    from .audit_cli import (
        add_parser as add_audit,  # kl-grad audit TARGET (audit_cli.py)
    )

    add_audit(sub)
    sub.add_parser("estimators", help="list the registered estimators and what they target",
                   description="List every registered estimator: formula (r = π_ref/π_θ), the KL direction it "
                   "targets, whether its value is an unbiased KL estimate, aliases and source.")
    coefficients_cli.add_parser(sub)
    from . import frameworks_cli

    frameworks_cli.add_parser(sub)
    return parser


_EXTENSION_FORMATS = {".md": "markdown", ".csv": "csv", ".json": "json"}
FORMAT_ALIASES = {"md": "markdown"}  # --format md, as -o x.md


def _output_format(args, kind: str) -> str:
    """--format, else the one the -o extension names, else markdown; a clash between the two is an error."""
    from .report import formats

    implied = _EXTENSION_FORMATS.get(args.output.suffix.lower()) if args.output else None
    fmt = args.format if args.format is not None else implied or "markdown"
    fmt = FORMAT_ALIASES.get(fmt, fmt)
    choose("format", fmt, formats(kind))
    if implied and fmt != implied:
        raise KLGradError(f"--format {fmt} would write {fmt} into {args.output}, whose extension means {implied}; "
                          f"drop --format or rename the file")
    return fmt


def _cmd_table(args) -> str:
    from .gradient_table import run_gradients
    from .report import render

    kind = "summary" if args.summary else "gradients"
    fmt = _output_format(args, kind)  # checked before the run; run_gradients checks the rest before any work
    run = run_gradients(args.policy, args.ref, args.estimators, args.placements, mode=args.mode,
                        samples=args.samples, trials=args.trials, seed=args.seed, sampler=args.sampler,
                        direction=args.direction, pathwise=args.pathwise, dtype=args.dtype,
                        progress=Progress("trials", args.quiet))  # called by MC runs only
    return render(run.summary if args.summary else run.table, fmt, kind)


def _cmd_values(args) -> str:
    from .report import render
    from .value_table import run_values

    fmt = _output_format(args, "values")
    table = run_values(args.policy, args.ref, args.estimators, mode=args.mode, samples=args.samples, seed=args.seed)
    return render(table, fmt, "values")


def _cmd_estimators(args) -> str:
    from .report import estimators_table, render

    return render(estimators_table(), "markdown", "estimators")


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = build_parser()
    if not argv:  # bare `kl-grad`: teach, do not scold
        parser.print_help()
        return 0
    args = parser.parse_args(argv)
    keep_freed_memory()  # 20-36% off long runs; a command owns its process (see allocator.py)
    with warnings.catch_warnings():
        # numpy's overflow/invalid RuntimeWarnings name no row and no reason; every number they touch is refused
        # (NaN or inf) with its reason in the table's warning column instead
        warnings.simplefilter("ignore", RuntimeWarning)
        return _run(args)


def _run(args) -> int:
    try:
        if args.command == "reproduce" and args.check:
            from .check import run_check

            return run_check(args.experiments, args.out)
        if args.command == "reproduce":
            from .reproduce import reproduce

            reproduce(args.experiments, args.out)
            return 0
        from .train_cli import cmd_train

        commands = {"table": _cmd_table, "values": _cmd_values, "estimators": _cmd_estimators,
                    "coefficients": coefficients_cli.run, "train": cmd_train}
        text = (getattr(args, "handler", None) or commands[args.command])(args)
        if getattr(args, "output", None):
            from .output import write_atomic

            write_atomic(args.output, text)
        else:
            sys.stdout.write(text)
    except KLGradError as exc:
        print(f"kl-grad: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("kl-grad: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # e.g. `kl-grad ... | head`: the reader left, which is not an error
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except OSError as exc:  # e.g. stdout on a full disk: one line, not a traceback
        print(f"kl-grad: error: cannot write output: {exc.strerror or exc}", file=sys.stderr)
        return 2
    return 0
