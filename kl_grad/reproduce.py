"""``make reproduce``: run every experiment file and write results/ plus an index.

Layout: ``results/<experiment>/`` holds ``table.md``, ``table.csv``,
``table.json``, any figures (PNG) and ``config.toml`` (a byte copy of the
experiment file that produced them); ``results/README.md`` indexes them. Nothing written depends on
the clock, the machine or the path, so a rerun rewrites identical bytes. All
experiment files are validated before any runs, and each file is written
atomically, so a bad config or an interrupted run leaves no partial output.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd
from tabulate import tabulate

from .analysis import run_gradients, true_gradients
from .errors import KLGradError
from .experiments import GradientExperiment, SweepExperiment, ValueExperiment, load_experiment
from .families import parse_spec
from .figures import sweep_png, violin_png
from .report import to_csv, to_grid, to_json, to_markdown
from .sweeps import sweep
from .values import run_values, values_markdown


def write_atomic(path: Path, text: str | bytes) -> None:
    """Write via a temporary file in the same folder and rename it into place.

    Errors (a directory in the way, no permission) become a one-line KLGradError.
    The file gets the usual mode (0666 minus the umask), not mkstemp's 0600.
    """
    path = Path(path)
    if path.is_dir():
        raise KLGradError(f"cannot write {path}: it is a directory")
    data = text.encode() if isinstance(text, str) else text
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    except OSError as exc:
        raise KLGradError(f"cannot write {path}: {exc.strerror or exc}") from None
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException as exc:
        os.unlink(tmp)
        if isinstance(exc, OSError):
            raise KLGradError(f"cannot write {path}: {exc.strerror or exc}") from None
        raise


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def check(exp) -> None:
    """Validate every name and number in ``exp`` without running it."""
    from .analysis import MODES, check_compatible, check_gradient_request
    from .values import _value_estimators

    if isinstance(exp, GradientExperiment):
        check_gradient_request(exp.policy, exp.ref, exp.estimators, exp.placements, mode=exp.mode,
                               samples=exp.samples, trials=exp.trials, sampler=exp.sampler or None,
                               pathwise=exp.pathwise, dtype=exp.dtype)
        if exp.violin and exp.mode != "mc":
            raise KLGradError("violin plots need mode = \"mc\" (exact mode has no trials)")
    elif isinstance(exp, ValueExperiment):
        check_compatible(parse_spec(exp.policy, "policy"), parse_spec(exp.ref, "ref"))
        _value_estimators(exp.estimators)
        if exp.mode not in MODES:
            raise KLGradError(f"unknown mode {exp.mode!r}; expected one of {', '.join(MODES)}")
    else:
        sweep(parse_spec(exp.policy, "policy"), parse_spec(exp.ref, "ref"), exp.vary, exp.grid[:1],
              exp.estimators, exp.quantity, exp.samples)  # one exact point: milliseconds, and it checks every name


def run_experiment(exp, progress=None) -> tuple[pd.DataFrame, dict[str, bytes]]:
    """Run one experiment: its tidy table and any figures ({file name: PNG bytes})."""
    policy, ref = parse_spec(exp.policy, "policy"), parse_spec(exp.ref, "ref")
    if isinstance(exp, ValueExperiment):
        return run_values(policy, ref, exp.estimators, mode=exp.mode, samples=exp.samples, seed=exp.seed), {}
    if isinstance(exp, SweepExperiment):
        table = sweep(policy, ref, exp.vary, exp.grid, exp.estimators, exp.quantity, exp.samples)
        xlabel = f"reference {exp.vary} (policy {exp.policy}, reference {exp.ref} otherwise)"
        return table, {"sweep.png": sweep_png(table, exp.title, xlabel)}
    run = run_gradients(
        policy, ref, exp.estimators, exp.placements, mode=exp.mode, samples=exp.samples, trials=exp.trials,
        seed=exp.seed, sampler=exp.sampler or None, pathwise=exp.pathwise, dtype=exp.dtype, progress=progress,
    )
    truths = true_gradients(policy, ref) if exp.violin else {}
    figures = {"violin.png": violin_png(run.per_trial, run.table, run.params, exp.title, truths)} if exp.violin else {}
    return run.table, figures


def _text_view(exp, table: pd.DataFrame) -> str:
    if isinstance(exp, GradientExperiment):
        return to_grid(table)
    if isinstance(exp, ValueExperiment):
        return values_markdown(table)
    return f"{len(table)} rows; see sweep.png\n"


def _markdown(exp, table: pd.DataFrame) -> str:
    if isinstance(exp, ValueExperiment):
        return values_markdown(table)
    if isinstance(exp, SweepExperiment):
        cols = [c for c in ("x", "estimator", "direction", "param", "bias_rel", "stdev_rel", "warning") if c in table]
        return tabulate(table[cols], headers="keys", tablefmt="github", showindex=False, floatfmt=".4g") + "\n"
    return to_markdown(table)


def _describe(exp) -> str:
    if isinstance(exp, SweepExperiment):
        return (f"policy `{exp.policy}`, reference `{exp.ref}` with {exp.vary} ∈ {exp.grid}; exact, "
                f"{exp.quantity}.")
    if isinstance(exp, ValueExperiment):
        n = "" if exp.mode == "exact" else f" × {exp.samples} samples, seed {exp.seed}"
        return f"q = `{exp.policy}`, p = `{exp.ref}`; {exp.mode}{n}."
    sampler = exp.sampler or "the policy (on-policy)"
    budget = (f"{exp.trials} trials × {exp.samples} samples, seed {exp.seed}, {exp.dtype}" if exp.mode == "mc"
              else f"exact, stdev of a {exp.samples}-sample mean")
    return f"policy `{exp.policy}`, ref `{exp.ref}`, samples from {sampler}; {budget}."


def _index(entries: list[tuple[str, GradientExperiment, pd.DataFrame]]) -> str:
    lines = [
        "# Results",
        "",
        "Generated by `make reproduce` from the files in `experiments/`; do not edit by hand.",
        "Each folder holds `table.md`, `table.csv`, `table.json`, any figures (`violin.png`, `sweep.png`) and the",
        "`config.toml` that produced them.",
        "Columns: `bias_rel` = |mean − true| / |true|; `stdev_rel` = stdev / |true| (gradients: of the per-trial",
        "gradient; values: per sample); `se` = standard error of the mean (MC) or quadrature error estimate (exact);",
        "`z_vs_exact` = (MC mean − exact mean) / se; `verdict` is decided from these numbers: exact rows say",
        "biased / unbiased / unbiased, higher variance; MC rows say biased (bias > 4 se) or no bias detected;",
        "`unavailable` means the mean itself was refused (NaN; the `warning` column says why).",
        "Directions: `policy||ref` = KL(π_θ‖π_ref), `ref||policy` = KL(π_ref‖π_θ)",
        "(seed 003's \"reverse KL\"; \"seed 00N\" names the source posts this project reproduces).",
        "",
    ]
    for name, exp, table, figures in entries:
        lines += [f"## [{exp.title}]({name}/)", "", _describe(exp)]
        if exp.notes:
            lines += ["", exp.notes.strip()]
        lines += [""] + [f"![{exp.title}]({name}/{fig})" for fig in figures] + ["", _markdown(exp, table)]
    return "\n".join(lines)


def reproduce(exp_dir: Path, out_dir: Path, echo=print) -> int:
    """Run all ``exp_dir/*.toml`` into ``out_dir``; returns the number of experiments.

    ``exp_dir`` may also be one ``.toml`` file: then only its folder is written, and the
    index (``out_dir/README.md``) and the other folders are left as they are.
    """
    exp_dir = Path(exp_dir)
    if Path(out_dir).exists() and not Path(out_dir).is_dir():
        raise KLGradError(f"cannot write results to {out_dir}: it is a file, not a directory")
    if not exp_dir.exists():
        raise KLGradError(f"{exp_dir} does not exist; expected a folder of experiment files (*.toml) or one .toml file")
    whole = exp_dir.is_dir()
    if not whole and exp_dir.suffix.lower() != ".toml":
        raise KLGradError(f"{exp_dir} is not a .toml file; expected a folder of experiment files or one .toml file")
    paths = sorted(p for p in exp_dir.glob("*.toml") if p.is_file()) if whole else [exp_dir]
    if not paths:
        raise KLGradError(f"no experiment files (*.toml) in {exp_dir}")
    experiments = [(p, load_experiment(p)) for p in paths]
    for path, exp in experiments:
        try:
            check(exp)
        except KLGradError as exc:
            raise KLGradError(f"{path}: {exc}") from None
    entries = []
    for path, exp in experiments:
        name = path.stem
        start = time.perf_counter()
        table, figures = run_experiment(exp)
        folder = Path(out_dir) / name
        write_atomic(folder / "table.md", f"# {exp.title}\n\n" + _markdown(exp, table))
        write_atomic(folder / "table.csv", to_csv(table))
        write_atomic(folder / "table.json", to_json(table))
        write_atomic(folder / "config.toml", path.read_bytes())
        for fig_name, png in figures.items():
            write_atomic(folder / fig_name, png)
        echo(f"== {name}: {exp.title}")
        echo(_text_view(exp, table))
        print(f"   ({time.perf_counter() - start:.1f} s; wrote {folder}/)", file=sys.stderr)
        entries.append((name, exp, table, figures))
    if whole:  # one file alone must not rewrite the index or remove the other experiments' folders
        write_atomic(Path(out_dir) / "README.md", _index(entries))
        _remove_stale(Path(out_dir), {name for name, *_ in entries}, echo)
    return len(entries)


def _remove_stale(out_dir: Path, current: set[str], echo) -> None:
    """Delete result folders whose experiment file is gone (only folders this tool wrote: they hold config.toml)."""
    for folder in sorted(p for p in out_dir.iterdir() if p.is_dir() and p.name not in current):
        if (folder / "config.toml").is_file():
            shutil.rmtree(folder)
            echo(f"== removed stale {folder}/ (no experiments/{folder.name}.toml)")
