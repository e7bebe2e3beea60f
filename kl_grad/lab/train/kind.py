"""Experiment kind ``train``: a training-dynamics run (``dynamics.run_training``) and its trajectory figure.

Example (``experiments/train_tokens.toml``)::

    kind = "train"
    title = "..."
    policy = "categorical:0,0,0,0"
    ref = "categorical:0.5,-0.5,0.2,0"
    reward = "1,0,0.5,-0.5"
    beta = 1.0
    estimators = ["k1", "k2", "k3"]
    placements = ["loss", "loss-w", "reward"]
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

from ..config import DEFAULT_PLACEMENTS
from ..experiments import Kind
from .dynamics import DEFAULT_STEPS, check_training, run_training
from .views import TRAIN_VIEWS, train_markdown


@dataclass(frozen=True)
class TrainExperiment:
    """Gradient ascent on E[R] − β·KL(π_θ‖π_ref) with each KL estimator × placement; writes trajectories.png."""

    kind: ClassVar[str] = "train"

    title: str
    policy: str  # the starting policy, e.g. "categorical:0,0,0,0"
    ref: str
    reward: str  # "1,0,0.5" (one per token), "linear:A" or "quadratic:C,B" (normal), "sum:…"/"last:…" (markov)
    beta: float
    estimators: list[str]
    placements: list[str] = field(default_factory=lambda: list(DEFAULT_PLACEMENTS))
    steps: int = DEFAULT_STEPS
    lr: float = 0.0  # 0: dynamics.default_lr of the policy
    sampler: str = ""  # off-policy sampling distribution (fixed); "" = on-policy
    samples: int = 0  # 0: exact expected KL gradients; N: one N-sample MC gradient per step
    seed: int = 0  # MC steps use seed + step
    notes: str = ""


def train_args(exp: TrainExperiment) -> dict:
    return dict(policy=exp.policy, ref=exp.ref, reward=exp.reward, beta=exp.beta, estimators=exp.estimators,
                placements=exp.placements, steps=exp.steps, lr=exp.lr or None, sampler=exp.sampler or None,
                samples=exp.samples or None, seed=exp.seed)


def check_train(exp: TrainExperiment) -> None:
    args = train_args(exp)
    if args["lr"] is None:
        args["lr"] = 1.0  # the default is valid; check_training needs a number
    check_training(**args)


def run_train(exp: TrainExperiment, progress=None, figures: bool = True):
    from .figures import trajectories_png

    run = run_training(**train_args(exp), progress=progress)
    if not figures:
        return run.table, {}
    return run.table, {"trajectories.png": trajectories_png(run.trajectory, exp.title, run.table["family"].iloc[0])}


def describe_train(exp: TrainExperiment) -> str:
    how = "exact expected KL gradients" if not exp.samples else f"{exp.samples}-sample MC KL gradients, seed {exp.seed}"
    return (f"start `{exp.policy}`, ref `{exp.ref}`, reward `{exp.reward}`, β = {exp.beta:g}, "
            f"{exp.steps} steps, samples from {exp.sampler or 'the policy (on-policy)'}; {how}.")


KIND = Kind(TrainExperiment, check_train, run_train, describe_train, TRAIN_VIEWS, text=train_markdown)
