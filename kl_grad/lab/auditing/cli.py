"""``kl-grad audit TARGET``: which KL gradient does your own KL term produce? (``auditor.audit``)"""

from __future__ import annotations

import argparse

from ...errors import KLGradError, choose
from ...groups import NORMALISATIONS, GroupReward
from ...placements import PLACEMENTS
from ..cli import add_output_arguments, output_format
from ..experiments import command_help
from ..progress import Progress
from ..target import load_target, parse_kwargs
from .group_options import DEFAULT_NORMALISATION, DEFAULT_SIZE, PLACEMENT, refuse_with_group
from .user_term import user_placement
from .views import AUDIT_VIEWS, render_audit

EPILOG = """\
examples:
  kl-grad audit examples.trainer_kl_terms:k3_loss
      audit k3_loss, imported as a module from the current directory (here the repository root;
      any importable module:function works, e.g. my_losses:kl_term for my_losses.py)
  kl-grad audit examples/trainer_kl_terms.py:kl_penalty --kwarg kl_penalty=low_var_kl
      a file's function with a framework-style keyword bound (VALUE: a Python literal, else a string: k3+)
  kl-grad audit examples/trainer_kl_terms.py:k1_loss --placement reward --format json -o audit.json
      a value-style function (the per-token k1 value) used as a REINFORCE reward penalty: w·sg(fn)
  kl-grad audit examples/trainer_kl_terms.py:k1_loss --placement group-reward --group-size 4 --normalisation mean
      the per-token values summed to K(y), detached, as the KL in a GRPO group-normalised reward (no task
      reward): exact E[∇kl] on the chains and token problems, on-policy; mean (the default) is exactly
      (1 − 1/G)× reward-seq, and "rel bias ÷ factor" is the bias once that factor is divided out
  kl-grad audit examples/trainer_kl_terms.py:openrlhf_k3_clamped --dtype float32,bfloat16
      also in a trainer's dtypes: NaN/inf (0·inf in backward), negative values, vanished gradients,
      the cast's bias of E[grad] against float64 (exact enumeration, with its rounding floor)

the function:
  parameters read by name: logp, ref_* (the reference), old_logp/old_log_probs/old_* (the sampler;
  on-policy logp.detach()), mask/response_mask/*_mask (ones); the first two unnamed ones are
  (logp, ref_logp); others need --kwarg. Float64 per-token tensors of one shape (..., L),
  tokens last (L = 1 on single-token problems, 4 or 6 on the Markov-chain ones), logp carries grad;
  returns per-token values (..., L) (summed over tokens), per-sequence values (...), or a reduced
  scalar (read as the mean over sequences of the per-sequence loss, x.sum(-1).mean()). Its output is
  the loss term exactly as returned (its own weights, clamps and detaches included).

reading the audit:
  follows     overall: the KL whose gradient the expected autograd gradient equals on every on-policy
              single-token problem: policy||ref = KL(π_θ‖π_ref), ref||policy = KL(π_ref‖π_θ), zero, or none
  follows_sequence   the same on the sequence problems, against the sequence-level KL (a per-token k2
              loss: policy||ref for one token, none for sequences: the token-level partial gradient)
  rel bias    ‖E[grad] − ∇KL‖ / ‖∇KL‖ over the policy's parameters, against each direction
  stdev / best built-in   the gradient's stdev over that of the lowest-variance built-in estimator ×
              placement that follows the same KL on the same problem (1 = as good as the best)
  mode        exact (quadrature or enumeration) or mc (Monte Carlo: kinks such as clamps, or a function
              that downcasts to float32); MC verdicts keep a false-alarm rate of 6.3e-5 per parameter
  warnings    zero-gradient mass (with its binomial se; "clamp" where the value is flat there too),
              negative values, NaN/inf, float32 instability, dtype, a mask that padding leaks through
  --dtype     per dtype × problem: mass with NaN/inf, negative values, zero gradient where float64 (at
              the same rounded inputs) has none; rel bias = ‖E[g]_dtype − E[g]_float64‖/‖E[g]_float64‖
              by enumeration, beside its rounding floor (inputs rounded, computed in float64); a grid of
              value and gradient at d = 0, ±1e-6, ±1e-3, ±1, ±10, ±20, ±50, ±88, ±100
"""


def add_parser(sub, name: str) -> argparse.ArgumentParser:
    """Register ``audit`` on the ``kl-grad`` subparsers; the handler is ``args.handler``."""
    a = sub.add_parser(name, help=command_help(name),
                       description="Run a KL term of yours over a battery of policy/reference problems and report "
                       "which KL gradient its autograd gradient follows, its bias against both directions, its "
                       "variance against the best built-in, and hazards such as clamps.", epilog=EPILOG,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    a.add_argument("target", metavar="TARGET", help="module:function or path/to/file.py:function")
    a.add_argument("--kwarg", action="append", default=[], metavar="NAME=VALUE",
                   help="bind a keyword argument (repeatable); VALUE is a Python literal, else the text as a string "
                   "(--kwarg kl_penalty=k3+)")
    a.add_argument("--placement", default=None, choices=None,
                   help=f"wrap a value-style function as a placement does: {', '.join(PLACEMENTS)}, reward-local "
                   "(reward = Σ_t w_t·sg(Σ_{t'≥t} fn_t'), REINFORCE with reward-to-go; reward-local = Σ_t "
                   "w_t·sg(fn_t), each token alone), group-reward (Σ_t fn_t, detached, as the KL in a group-normalised "
                   "reward: kl_grad.groups); default: the output is the loss term as written")
    a.add_argument("--group-size", type=int, default=None, metavar="G",
                   help=f"group-reward: sequences per group, ≥ 2 (default {DEFAULT_SIZE})")
    a.add_argument("--normalisation", default=None, metavar="NORM",
                   help=f"group-reward: {', '.join(NORMALISATIONS)} (default {DEFAULT_NORMALISATION}: linear, so the "
                   "answer does not depend on β; std = GRPO needs --beta)")
    a.add_argument("--beta", type=float, default=None,
                   help="group-reward with std: the KL coefficient β in R = −β·K (with no task reward E[∇kl] ∝ 1/β)")
    a.add_argument("--dtype", default=None, metavar="DTYPES",
                   help="also run the term on inputs cast to these dtypes, comma-separated (float32, bfloat16, "
                   "float16; aliases fp32, bf16, fp16): NaN/inf, negative values, vanished gradients and the "
                   "cast's bias against float64, on the battery and a grid of log-ratios d = 0 … ±100")
    add_output_arguments(a, AUDIT_VIEWS)
    a.add_argument("-q", "--quiet", action="store_true", help="no progress on stderr")
    a.set_defaults(handler=run)
    return a


def _group(args) -> GroupReward | None:
    """The GroupReward of --placement group-reward (checked), else None; its options refused elsewhere."""
    options = {"--group-size": args.group_size, "--normalisation": args.normalisation, "--beta": args.beta}
    if (args.placement or "").strip() != PLACEMENT:
        given = [k for k, v in options.items() if v is not None]
        if given:
            raise KLGradError(f"{', '.join(given)}: only with --placement {PLACEMENT}")
        return None
    norm = choose("normalisation", args.normalisation or DEFAULT_NORMALISATION, NORMALISATIONS)
    if args.dtype is not None:
        refuse_with_group(PLACEMENT, args.dtype)
    if not norm.linear and args.beta is None:
        raise KLGradError(f"--normalisation {norm.name} depends on β: give --beta (the KL coefficient in the reward)")
    group = GroupReward(DEFAULT_SIZE if args.group_size is None else args.group_size, beta=args.beta,
                        normalisation=norm.name)
    group.check(group.size)
    return group


def run(args) -> str:
    """The rendered audit (the CLI writes it to stdout or -o)."""
    from .auditor import audit
    from .dtypes import parse_dtypes

    fmt = output_format(args, AUDIT_VIEWS)
    group = _group(args)
    if args.placement is not None and group is None:
        user_placement(args.placement)
    dtypes = parse_dtypes(args.dtype) if args.dtype is not None else None
    fn = load_target(args.target, parse_kwargs(args.kwarg))
    result = audit(fn, placement=args.placement, name=args.target.rpartition(":")[2],
                   progress=Progress("audit problems", args.quiet), dtypes=dtypes, group=group)
    return render_audit(result, fmt)
