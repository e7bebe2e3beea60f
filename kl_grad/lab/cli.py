"""Command line: ``kl-grad`` (console script) and ``python -m kl_grad``.

Subcommands come from the wings (``experiments.WINGS``: each line names the commands its folder adds), plus
``reproduce``. Only the chosen subcommand's wing is imported, so ``kl-grad --help`` and ``kl-grad table`` do
not load the training or audit code. Every subcommand works one way: its parser sets ``handler``, which returns
the text to write (stdout, or ``-o FILE`` written whole) or, for commands that stream their own output, an exit
status. Bad input (unknown name, malformed spec, out-of-range number) prints one line ``kl-grad: error: ...``
naming what is allowed and exits with status 2; no traceback, no partial output file.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import importlib.metadata
import math
import os
import sys
import typing
import warnings
from pathlib import Path

from ..errors import KLGradError, choose
from .experiments import WINGS
from .memory import keep_freed_memory
from .threads import use_threads, work_threads

EPILOG_REPRODUCE = """\
examples:
  kl-grad reproduce                        rerun experiments/*.toml into results/ (a folder whose numbers
                                           moved by less than their precision is kept byte for byte)
  kl-grad reproduce experiments/seed003_exact.toml
                                           rerun one experiment; only results/seed003_exact/ is written
  kl-grad reproduce --check                CI: recompute everything, write nothing, compare every number with
                                           results/ (exit 0 passed, 1 with one line per difference)
  kl-grad reproduce --check experiments/estimators_all_exact.toml --out results
                                           check one experiment (every estimator × placement, exact)

tolerances of --check (kl_grad/lab/tolerances.py, a rule for every column): one unit of the last printed
  digit at least; exact rows: means ± (committed se + recomputed se), other numbers 1e-9 relative; Monte-Carlo
  rows (same seed): the float32 reordering error 1e-5 × the per-sample rms, carried through each column's
  formula; training end points 1e-9 × max(1, |x|); numbers inside vectors and warnings one by one; names and
  verdicts equal
"""


class Parser(argparse.ArgumentParser):
    """argparse with one-line errors and exit status 2."""

    def error(self, message: str):  # noqa: D102 - argparse hook
        self.exit(2, f"kl-grad: error: {message} (see {self.prog} --help)\n")


def whole_number(text: str) -> int:
    """An integer, also in integer-valued scientific notation (1e6) or with underscores (50_000)."""
    try:
        return int(text)
    except ValueError:
        pass
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not value.is_integer():
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number (examples: 50000, 5e4, 50_000)")
    return int(value)


def csv_list(text: str) -> list[str]:
    """A comma list of names; an empty name (``k1,,k2``, a trailing comma) is an error, not skipped."""
    names = [t.strip() for t in text.split(",")]
    if not all(names):
        raise argparse.ArgumentTypeError(f"{text!r} has an empty name; write names separated by single commas, "
                                         "e.g. k1,k2,k3")
    return names


def add_fields(p: argparse.ArgumentParser, cls: type, helps: dict[str, str], defaults: dict | None = None) -> None:
    """One ``--name`` per field of the run dataclass ``cls`` named in ``helps`` (the field's help text), its type
    and default read from ``cls``, the one declaration of a run's fields (TOML files are read into the same
    class, and ``run_from(cls, args)`` builds it back): bool → a switch, int → ``whole_number``, list[str] →
    ``csv_list``. ``defaults`` overrides a default for the command line only (e.g. TOML needs ``estimators``
    spelt out, the CLI defaults them)."""
    hints, fields = typing.get_type_hints(cls), {f.name: f for f in dataclasses.fields(cls)}
    for name, help_ in helps.items():
        f, hint = fields[name], hints[name]
        if defaults and name in defaults:
            default = defaults[name]
        elif f.default is not dataclasses.MISSING:
            default = f.default
        elif f.default_factory is not dataclasses.MISSING:
            default = f.default_factory()
        else:
            p.add_argument(f"--{name}", required=True, type=str, help=help_)
            continue
        if hint is bool:
            p.add_argument(f"--{name}", action="store_true", help=help_)
            continue
        shown = ",".join(default) if isinstance(default, list) else default
        p.add_argument(f"--{name}", type={int: whole_number, float: float, str: str}.get(hint, csv_list),
                       default=default, help=f"{help_} (default {shown})" if shown != "" else help_)


def run_from(cls: type, args, **fixed):
    """The run dataclass ``cls`` from parsed arguments (every field the parser has; ``fixed`` for the rest)."""
    return cls(**{f.name: getattr(args, f.name) for f in dataclasses.fields(cls) if hasattr(args, f.name)}, **fixed)


def add_output_arguments(p: argparse.ArgumentParser, formats) -> None:
    """``--format`` and ``-o``, the same for every subcommand that writes a table."""
    p.add_argument("--format", default=None, help=f"one of {', '.join(formats)} (md = markdown; default: from the "
                   "-o extension .md/.csv/.json, else markdown)")
    p.add_argument("-o", "--output", type=Path, help="write to this file instead of stdout (written whole or not at "
                   "all; missing parent folders are created)")


def output_format(args, formats: dict) -> str:
    """The one ``-o`` rule: --format, else the format the -o extension names, else markdown. A --format the
    extension contradicts, or an extension naming a format this command does not write, is an error."""
    from .report import EXTENSIONS, FORMAT_ALIASES

    implied = EXTENSIONS.get(Path(args.output).suffix.lower()) if args.output else None
    if implied and implied not in formats:
        raise KLGradError(f"-o {args.output}: this command writes {', '.join(formats)}; name the file "
                          f"{' or '.join(e for e, f in EXTENSIONS.items() if f in formats)}")
    fmt = FORMAT_ALIASES.get(args.format, args.format) if args.format is not None else implied or "markdown"
    choose("format", fmt, formats)
    if implied and fmt != implied:
        raise KLGradError(f"--format {fmt} would write {fmt} into {args.output}, whose extension means {implied}; "
                          f"drop --format or rename the file")
    return fmt


def _version() -> str:
    try:
        return importlib.metadata.version("kl_grad")
    except importlib.metadata.PackageNotFoundError:
        return "unknown (not installed)"


def _add_reproduce(sub, name: str) -> None:
    r = sub.add_parser(name, help=REPRODUCE_HELP,
                       description="Regenerate every table and figure in results/ from the experiment files "
                       "(one TOML file per table). All files are validated before anything runs; outputs are "
                       "written atomically and are byte-for-byte reproducible.", epilog=EPILOG_REPRODUCE,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    r.add_argument("experiments", type=Path, nargs="?", default=Path("experiments"),
                   help="folder of experiment TOML files (default: ./experiments), or one .toml file: then "
                   "only its results folder is written")
    r.add_argument("--out", type=Path, default=Path("results"), help="output folder (default: ./results)")
    r.add_argument("--check", action="store_true", help="write nothing: recompute and compare every number with "
                   "--out/<name>/table.csv within its own precision; exit 1 naming each difference")
    r.set_defaults(handler=_reproduce)


def _reproduce(args) -> int:
    if args.check:
        from .results.check import run_check

        return run_check(args.experiments, args.out)
    from .results.reproduce import reproduce

    reproduce(args.experiments, args.out)
    return 0


REPRODUCE_HELP = "run every experiments/*.toml (or one file) and write results/"
# {subcommand: (one-line help, module whose add_parser(sub, name) builds it)}; the wings' from experiments.WINGS
COMMANDS = {name: (help_, f"{__package__}.{wing.folder}.cli") for wing in WINGS
            for name, help_ in wing.commands.items()}
COMMANDS["reproduce"] = (REPRODUCE_HELP, __name__)


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The ``kl-grad`` parser with ``command`` built in full; the other subcommands are named, with their help,
    but their wings are not imported (``kl-grad --help`` imports none)."""
    parser = Parser(prog="kl-grad", description="Measure whether autograd gradients of KL-estimator losses are "
                    "unbiased for the KL gradient you meant, and at what variance.")
    parser.add_argument("--version", action="version", version=f"kl-grad {_version()}")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=Parser)
    for name, (help_, module) in COMMANDS.items():
        if name == command:
            add = _add_reproduce if module == __name__ else importlib.import_module(module).add_parser
            add(sub, name)
            sub.choices[name].add_argument("--threads", type=whole_number, default=None,
                                           help="torch threads for every run (default: by the work: one for "
                                           "small tensors, one per idle core for large Monte-Carlo chunks)")
        else:
            sub.add_parser(name, help=help_)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    command = next((a for a in argv if not a.startswith("-")), None)
    parser = build_parser(command if command in COMMANDS else None)
    if not argv:  # bare `kl-grad`: teach, do not scold
        parser.print_help()
        return 0
    args = parser.parse_args(argv)
    keep_freed_memory()  # 20-36% off long runs; a command owns its process (see memory.py)
    with warnings.catch_warnings():
        # numpy's overflow/invalid RuntimeWarnings name no row and no reason; every number they touch is refused
        # (NaN or inf) with its reason in the table's warning column instead
        warnings.simplefilter("ignore", RuntimeWarning)
        return _run(args)


def _run(args) -> int:
    try:
        with use_threads(args.threads), work_threads(0):  # a command's own small work: one thread (or --threads)
            out = args.handler(args)
        if isinstance(out, int):  # a command that printed its own output (reproduce)
            return out
        if getattr(args, "output", None):
            from .output import write_atomic

            write_atomic(args.output, out)
        else:
            sys.stdout.write(out)
    except KLGradError as exc:
        print(f"kl-grad: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("kl-grad: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # e.g. `kl-grad ... | head`: the reader left, which is not an error
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except OSError as exc:  # e.g. stdout on a full disk: one line, not a traceback
        print(f"kl-grad: error: cannot write output: {exc.strerror or exc}", file=sys.stderr)
        return 2
    return 0
