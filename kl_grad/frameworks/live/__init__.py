"""``LIVE_SPECS``: for each catalogue entry, the framework's real callable and how to call it per token.

``kl-grad frameworks --live`` (``live_check.py``) imports these callables when the framework is installed and
compares them with the catalogue's ``fn``. A ``LiveSpec`` (``spec.py``) names the callable as "module:attribute"
(several targets when a framework moved the file: the first that imports is used), the adapter that calls it
with per-token (logp, ref_logp, old_logp, mask) tensors of one shape and returns the per-token value the trainer
forms, and the file and version read. ``old_logp`` None means on-policy: the trainer's ratio is then
exp(logp − sg(logp)) (value 1, gradient the score), as in ``terms.ratio``.

Only entries whose real function was read have a spec: ``established.py`` (verl, OpenRLHF, NeMo-RL, slime,
Open-Instruct, ROLL, SkyRL), ``newer.py`` (compose-rl, Trinity-RFT, AReaL, torchforge) and ``more.py``
(Liger-Kernel). ``NO_CALLABLE`` says,
per framework, why its entries have none. To extend: write an adapter, add a ``spec(...)`` line to a ``SPECS``.
"""

from __future__ import annotations

from . import established, more, newer
from .spec import LiveSpec

LIVE_SPECS: dict[str, LiveSpec] = {}
for _s in [*established.SPECS, *newer.SPECS, *more.SPECS]:
    if _s.term in LIVE_SPECS:
        raise ValueError(f"live spec for {_s.term!r} written twice")
    LIVE_SPECS[_s.term] = _s

NO_CALLABLE: dict[str, str] = {**newer.NO_CALLABLE, **more.NO_CALLABLE}

__all__ = ["LIVE_SPECS", "NO_CALLABLE", "LiveSpec"]
