"""kl_grad.lab.target: loading module:function and path/to/file.py:function, --kwarg parsing, signatures."""

import functools
import sys

import pytest

from kl_grad.errors import KLGradError
from kl_grad.lab.target import check_signature, load_target, parse_kwargs

SOURCE = '''
import torch

def two(logp, ref_logp):
    return logp - ref_logp

def three(logp, ref_logp, old_logp):
    return torch.exp(logp - old_logp)

def framework(logprob, ref_logprob, kl_penalty):
    return logprob - ref_logprob

class Terms:
    @staticmethod
    def k2(logp, ref_logp):
        return 0.5 * (logp - ref_logp) ** 2

not_callable = 3
'''


@pytest.fixture
def module_dir(tmp_path, monkeypatch):
    (tmp_path / "my_terms_mod.py").write_text(SOURCE)
    (tmp_path / "broken_mod.py").write_text("raise RuntimeError('boom at import')\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", [p for p in sys.path if p not in ("", str(tmp_path))])
    yield tmp_path
    for name in ("my_terms_mod", "broken_mod"):
        sys.modules.pop(name, None)


def test_module_from_the_current_directory_and_file_path(module_dir):
    assert load_target("my_terms_mod:two").__name__ == "two"
    assert load_target(f"{module_dir / 'my_terms_mod.py'}:three").__name__ == "three"
    assert load_target("my_terms_mod.py:Terms.k2").__name__ == "k2"  # a relative path, a dotted attribute


def test_kwargs_are_bound_with_partial(module_dir):
    fn = load_target("my_terms_mod:framework", {"kl_penalty": "low_var_kl"})
    assert isinstance(fn, functools.partial) and fn.keywords == {"kl_penalty": "low_var_kl"}
    assert check_signature(fn) is False  # the bound keyword is not old_logp
    with pytest.raises(KLGradError, match="needs parameter 'kl_penalty'.*--kwarg kl_penalty=VALUE"):
        load_target("my_terms_mod:framework")  # unbound, and not a name the audit can fill


@pytest.mark.parametrize("text, match", [
    ("no_such_module_xyz:fn", "no module named 'no_such_module_xyz'"),
    ("missing/file.py:fn", "does not exist"),
    ("my_terms_mod:nope", "has no attribute 'nope'"),
    ("my_terms_mod:not_callable", "not callable"),
    ("my_terms_mod", "expected module:function"),
    ("broken_mod:fn", "importing broken_mod failed: RuntimeError: boom at import"),
])
def test_bad_targets_are_one_line_errors(module_dir, text, match):
    with pytest.raises(KLGradError, match=match) as err:
        load_target(text)
    assert "\n" not in str(err.value)


def test_unknown_kwarg_is_refused(module_dir):
    with pytest.raises(KLGradError, match="takes no parameter coef; its parameters: logp, ref_logp"):
        load_target("my_terms_mod:two", {"coef": 1.0})


@pytest.mark.parametrize("fn, takes_old", [
    (lambda logp, ref_logp: 0, False),
    (lambda logp, ref_logp, old_logp: 0, True),
    (lambda logp, ref_logp, kl_penalty="kl": 0, False),  # a default: a framework option, not old_logp
    (lambda *args: 0, True),
    (lambda logp, ref_logp, old: 0, True),
    (lambda logp, ref_logp, mask: 0, False),  # a mask, not old_logp (named as trainers name it)
    (lambda logp, ref_logp, response_mask, old_log_probs: 0, True),
    (lambda logp, ref_logp, *, coef=0.1: 0, False),
])
def test_signature_decides_old_logp(fn, takes_old):
    assert check_signature(fn) is takes_old


@pytest.mark.parametrize("fn, match", [
    (lambda logp: 0, "wrong signature"),
    (lambda a, b, c, d: 0, "needs parameter 'c'.*--kwarg c=VALUE"),
    (lambda logp, ref_logp, beta: 0, "needs parameter 'beta'.*--kwarg beta=VALUE"),
    (lambda logp, ref_logp, *, coef: 0, "needs keyword argument"),
    (3, "not callable"),
])
def test_bad_signatures(fn, match):
    with pytest.raises(KLGradError, match=match):
        check_signature(fn)


def test_parse_kwargs_reads_literals_and_bare_words():
    got = parse_kwargs(["kl_penalty=low_var_kl", "coef=0.1", "name='k3'", "flag=True", "caps=[1, 2]", "mode=k3+",
                        "expr=1 + "])
    assert got == {"kl_penalty": "low_var_kl", "coef": 0.1, "name": "k3", "flag": True, "caps": [1, 2],
                   "mode": "k3+", "expr": "1 +"}  # not a literal: the text, as a verl user types k3+
    for bad, match in (("novalue", "NAME=VALUE"), ("1x=2", "NAME=VALUE")):
        with pytest.raises(KLGradError, match=match):
            parse_kwargs([bad])
    with pytest.raises(KLGradError, match="given twice"):
        parse_kwargs(["a=1", "a=2"])


def test_missing_attribute_lists_the_callables_the_module_defines(module_dir):
    with pytest.raises(KLGradError) as info:
        load_target("my_terms_mod:k1_value")
    message = str(info.value)
    assert "\n" not in message and "has no attribute 'k1_value'" in message
    listed = message.split("its callables: ")[1].split(", ")
    assert listed == ["two", "three", "framework", "Terms"]  # defined there; torch (imported) and 3 are not


def test_missing_attribute_lists_at_most_ten_callables(module_dir):
    (module_dir / "many_mod.py").write_text("".join(f"def f{i}(logp, ref_logp):\n    return logp\n" for i in range(13)))
    try:
        with pytest.raises(KLGradError, match=r"its callables: f0, f1, .*, f9, \.\.\. \(3 more\)$"):
            load_target(str(module_dir / "many_mod.py") + ":nope")
    finally:
        sys.modules.pop("many_mod", None)
