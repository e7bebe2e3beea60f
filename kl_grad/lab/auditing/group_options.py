"""What ``audit --placement group-reward`` accepts: its defaults and refusals, light to import.

Kept apart from ``group_audit`` (the engine, which loads pandas) so that ``kl-grad audit --help`` loads no
audit engine (benchmarks/bench_cli.py times it).
"""

from __future__ import annotations

from ...errors import KLGradError
from ...loss import GROUP_REWARD as PLACEMENT

DEFAULT_SIZE = 4
# mean (Dr. GRPO) by default: linear, so the answer is a property of the KL function alone (any β, any task
# reward: c = K − mean_G K); GRPO's std needs β and depends on the task rewards (with none, on 1/β).
DEFAULT_NORMALISATION = "mean"


def refuse_with_group(placement: str | None, dtypes) -> None:
    """``group=`` belongs to placement group-reward alone, and --dtype does not combine with it."""
    if (placement or "").strip() != PLACEMENT:
        raise KLGradError(f"group is for placement {PLACEMENT!r}, got placement {placement!r}")
    if dtypes is not None:
        raise KLGradError(f"--dtype does not combine with --placement {PLACEMENT} (it measures the term as a loss)")
