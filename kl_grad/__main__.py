"""``python -m kl_grad ...`` is the same as ``kl-grad ...``."""

import sys

from .cli import main

sys.exit(main())
