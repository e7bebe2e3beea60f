"""``kl-grad table`` (a gradient table) and ``kl-grad estimators`` (the estimator registry)."""

from __future__ import annotations

import argparse

from tabulate import tabulate

from ...estimators import ESTIMATORS
from ...placements import PLACEMENTS
from ...sequences import SEQUENCE_PLACEMENTS
from ..cli import add_fields, add_output_arguments, output_format, run_from, whole_number
from ..config import DEFAULT_ESTIMATORS, GradientExperiment
from ..experiments import command_help
from ..progress import Progress
from .views import GRADIENT_VIEWS, SUMMARY_VIEWS

EPILOG_TABLE = """\
examples:
  kl-grad table --policy normal:0,1 --ref normal:1,1.1
      seed-003's forward table: k1, k2, k3 against the analytic gradient
  kl-grad table --policy normal:0,1 --ref normal:1,1.1 --estimators reverse_k1,reverse_k2 --format grid
      the reverse table, printed as seed 003 prints it
  kl-grad table --policy normal:0,1 --ref normal:1,1.1 --trials 200 --format csv > grads.csv
  kl-grad table --policy markov:4:0,0.5,-1:0,1,0/0.2,0,0/1,0,-1 --ref markov:4:0,0,0:0,0,0/0,0,0/0,0,0 \\
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

full-vocabulary KL (--estimators full; categorical, markov, markov-eos; kl_grad/full.py, Amini et al. 2025):
  loss KL_t (token-level partial gradient) · rb W_{t−1}·KL_t (the exact sequence gradient, on- and
  off-policy) · reward w_t·sg(Σ_{t'>t} KL_t') (REINFORCE of the analytic KL)

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
              a normal; 4.02 at 1000 trials, 10051 at 2) and, on tokens and sequences, beyond
              Bernstein's bound from the exact variance and range / no bias detected; "no verdict: infinite
              variance" (se inf), "no verdict: variance unknown", "no verdict: heavy tail" (exact se
              shown); unavailable: the mean was refused (NaN), see warning
  z_vs_exact  (MC mean − exact mean) / se; z_stdev_vs_exact does the same for the stdev
  warning     why a number is refused (NaN), infinite (inf) or unreliable; read it
"""

def add_parser(sub, name: str) -> None:
    """``table`` or ``estimators`` on the ``kl-grad`` subparsers."""
    help_ = command_help(name)
    if name == "estimators":
        sub.add_parser(name, help=help_, description="List every registered estimator: formula (r = π_ref/π_θ), "
                       "the KL direction it targets, whether its value is an unbiased KL estimate, aliases and "
                       "source.").set_defaults(handler=_estimators)
        return
    t = sub.add_parser(name, help=help_,
                       description="Sample from the policy (or, with --mode exact, integrate over it), take "
                       "autograd gradients of each estimator's mean loss per trial, and compare them with the "
                       "analytic ∇KL in both directions.", epilog=EPILOG_TABLE,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    add_fields(t, GradientExperiment, {
        "policy": "π_θ as FAMILY:PARAMS, e.g. normal:0,1 (LOC,SCALE) or categorical:0,0.5,-1 (logits, a token-like "
                  "policy) or markov:L:INIT:TRANS (token sequences of length L, e.g. "
                  "markov:4:0,0.5,-1:0,1,0/0.2,0,0/1,0,-1) or markov-eos:LMAX:INIT:TRANS (the same, ending at its "
                  "first EOS = the last token id); its parameters are differentiated",
        "ref": "π_ref, e.g. normal:1,1.1",
        "estimators": f"comma list from: {', '.join(ESTIMATORS)}; token families also full, reverse_full (the "
                      "analytic KL of every position's whole next-token distribution; placements loss, rb, reward)",
        "placements": f"comma list from: {', '.join(PLACEMENTS)}; markov sequences: {', '.join(SEQUENCE_PLACEMENTS)}",
        "sampler": "off-policy sampling distribution (default: the policy)",
        "pathwise": "contrast: reparameterised samples (rsample), differentiated through x; normal policy, "
                    "on-policy only (not available for discrete tokens)",
        "samples": "samples per trial",
        "trials": "trials, at least 2 (exact mode draws none and ignores it)",
        "seed": "random seed (as the seed-003 reference script, whose draws it repeats exactly)",
        "mode": "mc (sampled trials) or exact (quadrature: noise-free expected gradient and the exact stdev of a "
                "--samples mean, in milliseconds)",
        "dtype": "float32 (as trainers) or float64",
        "summary": "print the vector summary instead: one line per estimator × placement over all parameters "
                   f"(relative bias norm, cosine, follows, relative stdev); formats {', '.join(SUMMARY_VIEWS)}",
    }, defaults={"estimators": list(DEFAULT_ESTIMATORS)})
    engine = GradientExperiment
    t.add_argument("--temperature", type=float, default=engine.temperature, help="sample as an inference engine "
                   "does (token families): temperature T > 0, then --top-k, then --top-p, renormalised (vLLM's "
                   "order); the sampler (or the policy at θ0) is processed (default 1: off)")
    t.add_argument("--top-k", dest="top_k", type=whole_number, default=engine.top_k,
                   help="keep the K most probable tokens per position (default 0: off)")
    t.add_argument("--top-p", dest="top_p", type=float, default=engine.top_p,
                   help="keep the smallest set of most probable tokens whose mass reaches P (default 1: off)")
    t.add_argument("--old-logp", dest="old_logp", default=engine.old_logp,
                   help="what the trainer divides by: processed (the engine's truncated, renormalised log-probs) "
                   "or raw (its own recomputation of the untruncated policy) (default processed)")
    t.add_argument("--direction", default=None, help="compare every row with this KL's gradient: policy||ref or "
                   "ref||policy (aliases: reverse = policy||ref, forward = ref||policy, the RLHF papers' usage); "
                   "default: each estimator's own target")
    add_output_arguments(t, GRADIENT_VIEWS)
    t.add_argument("-q", "--quiet", action="store_true", help="no progress on stderr")
    t.set_defaults(handler=_table)


def _table(args) -> str:
    from ..gradient_table import run_gradients

    views = SUMMARY_VIEWS if args.summary else GRADIENT_VIEWS
    fmt = output_format(args, views)  # checked before the run; run_gradients checks the rest before any work
    from .kind import gradient_args

    exp = run_from(GradientExperiment, args, title="")
    run = run_gradients(**gradient_args(exp), direction=args.direction,
                        progress=Progress("trials", args.quiet))  # called by MC runs only
    return views[fmt](run.summary if args.summary else run.table)


ESTIMATOR_COLUMNS = ["name", "formula (r = π_ref/π_θ)", "targets", "unbiased value", "aliases", "source"]


def estimator_rows() -> list[tuple[str, ...]]:
    """The estimator registry, one row per estimator: formula, target direction, unbiased value, aliases, source."""
    return [(e.name, e.formula, e.direction, "yes" if e.unbiased_value else "no", ", ".join(e.aliases), e.source)
            for e in ESTIMATORS.values()]


def estimators_table():
    """``estimator_rows`` as a DataFrame (``ESTIMATOR_COLUMNS``)."""
    import pandas as pd

    return pd.DataFrame(estimator_rows(), columns=ESTIMATOR_COLUMNS)


def _estimators(args) -> str:
    return tabulate(estimator_rows(), headers=ESTIMATOR_COLUMNS, tablefmt="github") + "\n"
