"""Parametric families: parse ``normal:LOC,SCALE``, ``categorical:L0,...`` or ``markov:L:INIT:TRANS`` (a DistSpec).

A family is asked what it can do, never what it is called: its parameter names
(in torch's vocabulary, ``loc``, ``scale``, ``logits``) and the rule for each,
checked once when a spec is made; whether its support can be enumerated
(exact expectations by enumeration) or needs quadrature nodes; whether it can
be reparameterised (pathwise gradients). Log-probs, sampling and the
closed-form KL come from ``torch.distributions``; a family only turns numbers
into distributions, either fixed (reference, sampler) or with trainable leaves
batched over rows (trials or nodes). Parameters are checked here, once, so the
distributions are built with ``validate_args=False``: torch's per-call support
check of every sample tensor would be repeated work on every chunk.

Adding a family: a module beside this one with a ``Family`` subclass, registered
in ``FAMILIES`` below (``base.py`` holds the contract).
"""

from .base import (
           FAMILIES,
           FINITE,
           POSITIVE,
           DistSpec,
           Family,
           Rule,
           as_spec,
           make_spec,
           parse_spec,
)
from .categorical import Categorical
from .markov import Markov
from .markov_eos import MarkovEOS
from .normal import Normal

FAMILIES.update({fam.name: fam for fam in (Normal(), Categorical(), Markov(), MarkovEOS())})

__all__ = ["FAMILIES", "FINITE", "POSITIVE", "Categorical", "DistSpec", "Family", "Markov", "MarkovEOS", "Normal",
           "Rule", "as_spec", "make_spec", "parse_spec"]
