"""Moved to ``kl_grad.lab.families``; kept for code written against earlier releases."""

from .lab.families import DistSpec, as_spec, make_spec, parse_spec  # noqa: F401
