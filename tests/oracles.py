"""Independent oracles for the kl_grad tests and the benchmark (not collected as tests), gathered from their
modules: ``oracle_formulas`` (specs, densities, scores, ``VALUE``/``SLOPE`` of every estimator,
``PLACEMENT_GRADIENT``, ``per_sample_gradient``, ``pathwise_gradient``), ``oracle_expectations``
(``gradient_moments``, ``value_moments``), ``oracle_closed_forms`` (closed-form KLs and gradients, Normal
moments, Schulman's value moments, ``aggregate_loop``) and ``oracle_loops`` (``seed_style_loop``).

INDEPENDENCE. Nothing in these files imports kl_grad: closed forms derived by hand, score-function
identities, plain loops, numpy/scipy evaluations of hand-written per-sample formulas, and one transcription of
the seed-003 script. A bug in the package therefore cannot hide in its own reference.
"""

from tests.oracle_closed_forms import *  # noqa: F403
from tests.oracle_expectations import *  # noqa: F403
from tests.oracle_formulas import *  # noqa: F403
from tests.oracle_loops import *  # noqa: F403
