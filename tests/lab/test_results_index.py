"""results/ follows experiments/: each folder's config.toml is its experiment file's bytes, and results/README.md
carries each experiment's current heading, description and notes (what ``make reproduce`` writes from them).
An experiment edited without a rerun (its notes, its problems, its counts) fails here, without running anything."""

from pathlib import Path

import pytest

from kl_grad.lab.experiments import KINDS
from kl_grad.lab.results.reproduce import load_experiments

ROOT = Path(__file__).resolve().parents[2]
EXPERIMENTS = load_experiments(ROOT / "experiments")


@pytest.mark.parametrize("path,exp", EXPERIMENTS, ids=[p.stem for p, _ in EXPERIMENTS])
def test_results_carry_the_experiment_as_it_is(path, exp):
    folder = ROOT / "results" / path.stem
    assert (folder / "config.toml").read_bytes() == path.read_bytes(), f"rerun make reproduce: {path.name} changed"
    index = (ROOT / "results" / "README.md").read_text()
    block = "\n".join([f"## [{exp.title}]({path.stem}/)", "", KINDS[exp.kind].describe(exp)]
                      + (["", exp.notes.strip()] if exp.notes else []))
    assert block in index, f"results/README.md is stale for {path.stem}: rerun make reproduce"
