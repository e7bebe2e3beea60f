"""Moved to ``kl_grad.loss``; this module is kept for code written against earlier releases."""

from .loss import *  # noqa: F401,F403
