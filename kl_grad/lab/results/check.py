"""``kl-grad reproduce --check``: recompute the committed experiments and compare every number with results/.

Our own CI regression on gradient bias (issue 11, item 5): each experiment file is run again (same seed,
same budget) and its table is compared with ``results/<name>/table.csv`` by the one rule ``compare.py``
states (each number within its own precision, text cells equal); a table its kind derives from the run
(``Kind.tables``: ``summary.csv`` of a gradient experiment with ``summary = true``) is recomputed and
compared the same way, and is missing if absent. Nothing is written. A missing result
folder, a result folder whose experiment file is gone, or a ``config.toml`` that is not a copy of the
experiment file also fail: the committed results must be what the committed experiments produce.
``make test`` runs the whole check (``tests/lab/test_results_check.py``), so a 0.1% change to any
estimator's formula fails CI with a line naming the results/ row (``benchmarks/mutation_check.py``).
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

from ...errors import KLGradError
from ..experiments import KINDS
from ..report import render
from .compare import Difference, count_numbers, table_differences
from .reproduce import SUBTITLES, load_experiments

LISTED = 20  # differences listed per experiment; the rest are counted


def _count(n: int, word: str) -> str:
    """``"1 experiment"``, ``"2 experiments"``: a count with its noun in the right number."""
    return f"{n} {word}{'' if n == 1 else 's'}"


@dataclass
class CheckReport:
    """What a check compared and what differed: {experiment name: [Difference]} (only failing ones)."""

    out_dir: Path
    experiments: int = 0
    rows: int = 0
    numbers: int = 0
    differences: dict[str, list[Difference]] = field(default_factory=dict)

    @property
    def failed(self) -> bool:
        return bool(self.differences)

    def lines(self, listed: int = LISTED) -> list[str]:
        """One line per difference (the first ``listed`` of each experiment, then a count), then the summary."""
        out = []
        for name, diffs in self.differences.items():
            out += [f"{self.out_dir / name / d.file} {d}" for d in diffs[:listed]]
            if len(diffs) > listed:
                out.append(f"{self.out_dir / name / diffs[listed].file}: … and "
                           f"{_count(len(diffs) - listed, 'more difference')}")
        n = sum(len(d) for d in self.differences.values())
        checked = (f"checked {_count(self.experiments, 'experiment')}, {_count(self.rows, 'row')}, "
                   f"{_count(self.numbers, 'number')}")
        if self.failed:
            out.append(f"check failed: {_count(n, 'difference')} in {_count(len(self.differences), 'experiment')}; "
                       f"{checked}")
        else:
            out.append(f"check passed: no differences beyond each number's tolerance; {checked}")
        return out


DEFAULT_OUT = Path("results")  # ``kl-grad reproduce --out``'s default


def _rerun(path: Path, out_dir: Path) -> str:
    """The command that rewrites ``path``'s results in ``out_dir`` (``--out`` only when not the default)."""
    out = "" if Path(out_dir) == DEFAULT_OUT else f" --out {out_dir}"
    return f"kl-grad reproduce {path}{out}"


def _folder_problems(folder: Path, path: Path, out_dir: Path = DEFAULT_OUT) -> list[Difference]:
    if not (folder / "table.csv").is_file():
        return [Difference(None, "", "folder", "missing", f"run `{_rerun(path, out_dir)}` and commit {folder}/")]
    if not (folder / "config.toml").is_file() or (folder / "config.toml").read_bytes() != path.read_bytes():
        return [Difference(None, "", "config.toml", f"not a byte copy of {path}",
                           f"run `{_rerun(path, out_dir)}` and commit {folder}/")]
    return []


def _table(exp):
    """The experiment's table, without rendering figures where its kind's run can skip them (PNGs are not
    compared; they cost a third of the check's time)."""
    return KINDS[exp.kind].run(exp, figures=False)[0]


def check(exp_dir: Path, out_dir: Path, fail_fast: bool = False, progress: bool = True) -> CheckReport:
    """Recompute every experiment in ``exp_dir`` (a folder or one .toml) and compare with ``out_dir``.

    ``fail_fast`` stops after the first experiment that differs (the mutation benchmark uses it).
    Raises KLGradError for bad input (missing paths, invalid experiment files), before anything runs.
    """
    exp_dir, out_dir = Path(exp_dir), Path(out_dir)
    if not out_dir.is_dir():
        raise KLGradError(f"cannot check against {out_dir}: it is not a folder of results (expected e.g. results/)")
    experiments = load_experiments(exp_dir)
    report = CheckReport(out_dir)
    for path, exp in experiments:
        name, start = path.stem, time.perf_counter()
        folder = out_dir / name
        diffs = _folder_problems(folder, path, out_dir)
        if not diffs or diffs[0].column == "config.toml":
            table = _table(exp)
            derived = KINDS[exp.kind].tables(exp, table)
            for stem, (kind, t) in {"table": (exp.kind, table), **derived}.items():
                csv, file = render(t, "csv", kind), f"{stem}.csv"
                if (folder / file).is_file():
                    diffs += [replace(d, file=file) for d in table_differences(folder / file, csv)]
                else:  # only a derived table can be missing here (a missing table.csv is a missing folder)
                    diffs.append(Difference(None, "", "file", "missing",
                                            f"run `{_rerun(path, out_dir)}` and commit {folder}/", file=file))
                report.rows += csv.count("\n") - 1
                report.numbers += count_numbers(csv)
            diffs += [Difference(None, "", "file", "stale", f"{path} does not make it; rerun `{_rerun(path, out_dir)}`"
                                 f" (it removes the file) and commit {folder}/", file=f"{stem}.csv")
                      for stem in SUBTITLES if stem not in derived and (folder / f"{stem}.csv").is_file()]
        report.experiments += 1
        if diffs:
            report.differences[name] = diffs
        if progress:
            verdict = _count(len(diffs), "difference") if diffs else "same"
            print(f"   checked {name} ({time.perf_counter() - start:.1f} s): {verdict}", file=sys.stderr)
        if diffs and fail_fast:
            return report
    if exp_dir.is_dir():  # a committed result whose experiment file is gone is stale
        known = {p.stem for p, _ in experiments}
        for folder in sorted(p for p in out_dir.iterdir() if p.is_dir() and p.name not in known):
            if (folder / "config.toml").is_file():
                report.differences[folder.name] = [Difference(None, "", "folder", "stale",
                                                              f"no {exp_dir}/{folder.name}.toml; remove {folder}/")]
    return report


def run_check(exp_dir: Path, out_dir: Path, echo=print) -> int:
    """The CLI's ``reproduce --check``: print the differences and the summary; 0 passed, 1 failed."""
    report = check(exp_dir, out_dir)
    for line in report.lines():
        echo(line)
    return 1 if report.failed else 0
