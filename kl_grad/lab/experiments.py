"""Declarative experiments: one TOML file per table or figure, and the registry of experiment kinds.

A file is read with ``tomllib`` into the config dataclass its ``kind`` names; unknown keys and wrongly typed
values fail loudly with the allowed keys listed. Example (``experiments/seed003_forward.toml``)::

    kind = "gradients"
    title = "Seed 003: k1, k2, k3 vs ∇KL(policy‖ref)"
    policy = "normal:0,1"
    ref = "normal:1,1.1"
    estimators = ["k1", "k2", "k3"]
    samples = 50000
    trials = 1000
    seed = 42

Each kind lives in a wing, a folder of its own (``lab/train/``, ``lab/auditing/``, …) whose ``KIND`` record says
how to check, run and describe an experiment, which views its tables have, and which command-line subcommands it
adds. The hubs (``reproduce``, ``check``, ``report``, ``cli``) read those records and import no kind by name.
Adding a kind: a new wing folder with its ``KIND``, plus one line in ``WINGS`` below. A wing is imported the first
time one of its kinds or commands is used, so ``kl-grad table`` does not load the training or audit wings.
"""

from __future__ import annotations

import dataclasses
import importlib
import tomllib
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Callable

from ..errors import KLGradError, choose

if TYPE_CHECKING:  # the hub itself loads no pandas: ``kl-grad --help`` stays light
    import pandas as pd

View = Callable[["pd.DataFrame"], str]


@dataclass(frozen=True)
class Kind:
    """An experiment kind: its config dataclass, how to check, run and describe one experiment, and its views.

    ``run(exp, progress=None, figures=True)`` returns (table, {figure name: PNG bytes}); figures=False skips
    the PNGs (``reproduce --check`` compares tables only). ``views``: {format: view}, markdown first (the
    default), every format ``kl-grad`` and ``reproduce`` write. ``text``: what ``reproduce`` echoes (default: the
    markdown view). ``tables(exp, table)``: tables derived from the run and written beside ``table.*``,
    {file stem: (view name, DataFrame)}; ``table_views``: {view name: views} of those derived tables.
    """

    config: type
    check: Callable[[object], None]
    run: Callable[..., tuple[pd.DataFrame, dict[str, bytes]]]
    describe: Callable[[object], str]
    views: dict[str, View]
    text: View | None = None
    tables: Callable[[object, pd.DataFrame], dict] = lambda exp, table: {}
    table_views: dict[str, dict[str, View]] = field(default_factory=dict)

    @property
    def echo(self) -> View:
        return self.text or next(iter(self.views.values()))


@dataclass(frozen=True)
class Wing:
    """One registration line: the folder ``kl_grad/lab/<folder>/`` whose module ``<record>`` (``kind.py`` or
    ``table.py``) holds its ``KIND``, the TOML kind it runs, and the subcommands it adds to ``kl-grad`` ({name:
    one-line help}; ``<folder>.cli`` defines ``add_parser(sub, name)``)."""

    folder: str
    kind: str
    commands: dict[str, str] = field(default_factory=dict)
    record: str = "kind"


WINGS = (
    Wing("table", "gradients", {"table": "gradient table (Monte Carlo or exact) for a policy/reference pair",
                                "estimators": "list the registered estimators and what they target"}),
    Wing("values", "values", {"values": "value table: mean(k) as an estimate of the KL (Schulman 2020)"}),
    Wing("sweeps", "sweep"),
    Wing("coefficients", "coefficients", {"coefficients": "gradient coefficients c(d) = ∂surrogate/∂log π_θ of "
                                                          "every estimator × placement, or of your function"}),
    Wing("length_sweep", "length_sweep", record="table"),
    Wing("train", "train", {"train": "training dynamics: where each KL choice takes the policy"}),
    Wing("catalogue", "frameworks", {"frameworks": "what each framework's KL term computes (the catalogue)"},
         record="table"),
    Wing("auditing", "audit", {"audit": "audit your own KL term: which KL's gradient does autograd follow?"}),
    Wing("aggregations", "length_weights", record="table"),
    Wing("aggregations", "group_reward", record="group_table"),  # beside length_weights: the lab spine is full
)


def command_help(name: str) -> str:
    """The one-line help of subcommand ``name``, as its wing registered it."""
    return next(w.commands[name] for w in WINGS if name in w.commands)


def wing_module(wing: Wing):
    """The module that holds the wing's ``KIND``, imported on first use."""
    return importlib.import_module(f"{__package__}.{wing.folder}.{wing.record}")


class _Kinds(Mapping):
    """{kind name: Kind}, importing a wing the first time its kind is looked up."""

    def __init__(self):
        self._wings = {w.kind: w for w in WINGS}

    def __getitem__(self, name: str) -> Kind:
        return wing_module(self._wings[name]).KIND

    def __iter__(self):
        return iter(self._wings)

    def __len__(self) -> int:
        return len(self._wings)


KINDS: Mapping[str, Kind] = _Kinds()


def _check_type(name: str, value, annotation, where: str) -> None:
    origin = typing.get_origin(annotation)
    item = typing.get_args(annotation)[0] if origin is list else None
    accepted = (float, int) if item is float else item  # TOML writes 2.0 as 2
    ok = (
        all(isinstance(v, accepted) and not isinstance(v, bool) for v in value)
        if origin is list and isinstance(value, list)
        else isinstance(value, float | int) and not isinstance(value, bool) if annotation is float
        else isinstance(value, int) and not isinstance(value, bool) if annotation is int
        else isinstance(value, annotation) if isinstance(annotation, type)
        else False
    )
    if not ok:
        shown = (f"list of {'numbers' if item is float else 'strings'}" if origin is list
                 else getattr(annotation, "__name__", str(annotation)))
        raise KLGradError(f"{where}: {name} must be a {shown}, got {value!r}")


def parse_experiment(data: dict, where: str):
    """Build the experiment dataclass named by ``data['kind']`` from a TOML table."""
    data = dict(data)
    try:
        cls = choose("experiment kind", data.pop("kind", None), KINDS).config
    except KLGradError as exc:
        raise KLGradError(f"{where}: {exc}") from None
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise KLGradError(f"{where}: unknown key(s) {', '.join(unknown)}; allowed: kind, {', '.join(fields)}")
    missing = [n for n, f in fields.items() if n not in data and f.default is dataclasses.MISSING
               and f.default_factory is dataclasses.MISSING]
    if missing:
        raise KLGradError(f"{where}: missing key(s) {', '.join(missing)}")
    for name, value in data.items():
        _check_type(name, value, hints[name], where)
    return cls(**data)


def load_experiment(path: Path):
    """Read and validate one experiment file."""
    try:
        with open(path, "rb") as fh:
            data = tomllib.load(fh)
    except tomllib.TOMLDecodeError as exc:
        raise KLGradError(f"{path}: not valid TOML ({exc})") from None
    return parse_experiment(data, str(path))
