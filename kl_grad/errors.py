"""The one exception type for bad input; the CLI turns it into a one-line error, exit 2."""


class KLGradError(ValueError):
    """Invalid user input (unknown name, malformed spec, out-of-range number)."""


def choose(kind: str, name: str, registry) -> object:
    """Look ``name`` up in ``registry`` or raise an error listing the allowed keys."""
    try:
        return registry[name]
    except KeyError:
        allowed = ", ".join(registry)
        raise KLGradError(f"unknown {kind} {name!r}; expected one of {allowed}") from None
