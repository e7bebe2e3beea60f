"""Moved to ``kl_grad.lab`` (``gradient_table``); kept for code written against earlier releases."""

from .lab.gradient_table import GradientRun, run_gradients, true_gradients  # noqa: F401
