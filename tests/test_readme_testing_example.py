"""The README's pytest example (between the testing-example markers) runs and passes as written, in a fresh
pytest process that finds the kl_audit fixture through the installed pytest11 entry point alone."""

import os
import re
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def readme_example() -> str:
    text = open(os.path.join(ROOT, "README.md"), encoding="utf-8").read()
    block = re.search(r"<!-- testing-example -->\s*```python\n(.*?)```\s*<!-- /testing-example -->", text, re.S)
    assert block, "README.md has no testing-example block"
    return block.group(1)


def test_readme_testing_example_passes(tmp_path):
    code = readme_example()
    assert "kl_audit" in code and "assert_unbiased_kl_gradient" in code
    (tmp_path / "test_kl_term.py").write_text(code)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}  # kl_grad as installed, not from ROOT
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(tmp_path)],
                          capture_output=True, text=True, cwd=tmp_path, env=env, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert re.search(r"\b3 passed\b", proc.stdout), proc.stdout
    # (that such assertions can fail, with the message the README promises, is tests/test_testing.py's job)
