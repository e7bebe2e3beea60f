"""The README's Python examples run as written (a README that is true)."""

import math
import re
from pathlib import Path

import pytest

README = (Path(__file__).parent.parent / "README.md").read_text()
SNIPPETS = re.findall(r"```python\n(.*?)```", README, flags=re.S)


def test_readme_has_python_examples():
    assert SNIPPETS


@pytest.mark.parametrize("code", SNIPPETS, ids=lambda c: c.splitlines()[0][:40])
def test_readme_python_example_runs(code):
    scope: dict = {}
    exec(compile(code, "README.md", "exec"), scope)  # noqa: S102 - our own documentation
    if "kl" in scope:  # the training example: a finite loss whose gradient reached the model
        assert math.isfinite(scope["kl"].item())
        assert scope["logits"].grad is not None and scope["logits"].grad.abs().sum() > 0
