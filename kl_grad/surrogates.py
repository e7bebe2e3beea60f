"""Moved to ``kl_grad.placements``; this module is kept for code written against earlier releases."""

from .placements import *  # noqa: F401,F403
