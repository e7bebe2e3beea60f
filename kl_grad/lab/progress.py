"""Progress of long runs on stderr, for a person at a terminal and for a CI log alike.

On a TTY one line is rewritten in place; elsewhere (``2> log``, a CI job) a plain line is printed at most every
``INTERVAL`` seconds, and the last one always, so a long run is never silent for minutes and a log is not
flooded. ``quiet`` prints nothing.
"""

from __future__ import annotations

import sys
import time

INTERVAL = 5.0  # seconds between plain lines when stderr is not a terminal
TTY_INTERVAL = 0.1  # seconds between rewrites of the terminal line


class Progress:
    """``progress(done, total)`` → "  WHAT done/total"; a callable for the runners' progress hooks."""

    def __init__(self, what: str, quiet: bool = False, stream=None, interval: float = INTERVAL):
        self.what, self.quiet, self.interval = what, quiet, interval
        self.stream = stream if stream is not None else sys.stderr
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self.last = time.monotonic()

    def __call__(self, done: int, total: int, note: str = "") -> None:
        if self.quiet:
            return
        final, now = done >= total, time.monotonic()
        if not final and now - self.last < (TTY_INTERVAL if self.tty else self.interval):
            return
        self.last = now
        text = f"  {self.what} {done}/{total}" + (f": {note}" if note else "")
        if self.tty:
            print(f"\r{text}\033[K", end="\n" if final else "", file=self.stream, flush=True)
        else:
            print(text, file=self.stream, flush=True)
