"""``python -m kl_grad ...`` is the same as ``kl-grad ...``."""

import sys

from .lab.cli import main

sys.exit(main())
