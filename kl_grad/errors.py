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


def split_names(names) -> list[str]:
    """A list of names from a list or a comma-separated string ("k1, k2"), blanks dropped."""
    if isinstance(names, str):
        names = names.split(",")
    return [n.strip() for n in names if n.strip()]
