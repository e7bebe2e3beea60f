"""Load the KL term a user asks to audit: ``module:function`` or ``path/to/file.py:function``.

``load_target(text, kwargs)`` is the one loader (``kl-grad audit``, and any command that takes a user's
callable): it imports the module (the current directory is importable, as ``python -m`` makes it) or runs
the file, finds the attribute (dotted names such as ``Class.method`` work), binds ``kwargs`` with
``functools.partial`` and checks the signature. ``parse_kwargs(["NAME=VALUE", ...])`` reads ``--kwarg``
values as Python literals (``ast.literal_eval``; anything else, e.g. ``k3+``, as a string). Every failure is one
``KLGradError`` line naming what was expected.
"""

from __future__ import annotations

import ast
import functools
import importlib
import importlib.util
import inspect
import os
import sys
from pathlib import Path
from typing import Callable

from ..errors import KLGradError

_POSITIONAL = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)


def parse_kwargs(items: list[str] | None) -> dict:
    """``["kl_penalty=k3+", "coef=0.1"]`` → {name: value}; VALUE is a Python literal, else the text as a string."""
    out = {}
    for item in items or []:
        name, sep, value = item.partition("=")
        name = name.strip()
        if not sep or not name.isidentifier():
            raise KLGradError(f"--kwarg {item!r}: expected NAME=VALUE with a Python identifier as NAME, "
                              "e.g. --kwarg kl_penalty=low_var_kl or --kwarg coef=0.1")
        if name in out:
            raise KLGradError(f"--kwarg {name} is given twice")
        try:
            out[name] = ast.literal_eval(value.strip())
        except (ValueError, SyntaxError):  # not a literal: the text itself (k3+, low_var_kl, mse)
            out[name] = value.strip()
    return out


def _load_module(spec: str):
    """Import ``spec`` (a dotted module name, or a path ending in .py), the current directory importable."""
    if spec.endswith(".py") or os.sep in spec or "/" in spec:
        path = Path(spec)
        if not path.is_file():
            raise KLGradError(f"target file {spec} does not exist (expected path/to/file.py:function)")
        name = f"_kl_grad_target_{abs(hash(str(path.resolve())))}"
        module_spec = importlib.util.spec_from_file_location(name, path)
        if module_spec is None or module_spec.loader is None:
            raise KLGradError(f"target file {spec} is not a Python file")
        module = importlib.util.module_from_spec(module_spec)
        _exec(lambda: module_spec.loader.exec_module(module), spec)
        return module
    if os.getcwd() not in sys.path and "" not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        return _exec(lambda: importlib.import_module(spec), spec)
    except ModuleNotFoundError as exc:
        if exc.name and spec.split(".")[0] == exc.name.split(".")[0] or exc.name == spec:
            raise KLGradError(f"no module named {spec!r} (expected module:function importable from the current "
                              "directory, or path/to/file.py:function)") from None
        raise KLGradError(f"importing {spec} failed: {exc}") from None


def _exec(run, spec: str):
    try:
        return run()
    except KLGradError:
        raise
    except ModuleNotFoundError:
        raise
    except Exception as exc:  # the user's module raised on import: one line, its own message
        raise KLGradError(f"importing {spec} failed: {type(exc).__name__}: {exc}") from None


MASK_NAMES = {"mask", "response_mask", "attention_mask", "loss_mask", "action_mask", "completion_mask"}
OLD_NAMES = {"old_logp", "old_log_probs", "old_logprob", "old_logprobs", "old_log_prob", "old_per_token_logps",
             "behavior_logp", "sampler_logp", "rollout_logp", "rollout_log_probs"}
ROLES = {"logp": "log π_θ of the sampled tokens (carries grad)", "ref": "log π_ref of the tokens",
         "old": "the sampler's log-probs (detached; on-policy: logp's value)",
         "mask": "ones (every token counts; a rerun of markov-3x4 with 2 padded positions, mask 0, checks "
                 "that padding is masked out)"}


def _role(name: str) -> str | None:
    """The input a parameter name asks for, or None (a name the audit cannot read)."""
    n = name.lower()
    if n in MASK_NAMES or n.endswith("_mask"):
        return "mask"
    if n in OLD_NAMES or n == "old" or n.startswith(("old_", "behavior_", "behaviour_", "sampler_", "rollout_")):
        return "old"
    if n.startswith("ref") or "_ref" in n:
        return "ref"
    if "logp" in n or "log_prob" in n or "logprob" in n:
        return "logp"
    return None


def signature_roles(fn: Callable, label: str = "fn") -> tuple[tuple[str, str, bool], ...]:
    """((parameter, role, positional), ...): what the audit passes to each parameter of ``fn``. Roles: logp,
    ref, old, mask (``ROLES``), read from the names trainers use (``mask``/``response_mask``/…, ``old_logp``/
    ``old_log_probs``/…, ``ref_*``); unnamed ones take logp then ref_logp, whichever is left. Parameters with
    defaults are left to them (or ``--kwarg``) unless named as a mask or old log-probs. Anything else the
    audit cannot fill is a one-line KLGradError naming ``--kwarg``."""
    if not callable(fn):
        raise KLGradError(f"{label} is {type(fn).__name__}, not callable: expected a function "
                          "fn(logp, ref_logp) or fn(logp, ref_logp, old_logp)")
    # a torch.nn.Module (or any object with forward): __call__ is (*args, **kwargs), forward names the inputs
    target = fn.forward if not inspect.isroutine(fn) and callable(getattr(fn, "forward", None)) else fn
    try:
        sig = inspect.signature(target)
    except (TypeError, ValueError):
        return (("logp", "logp", True), ("ref_logp", "ref", True))  # a builtin without a signature: two
    params = list(sig.parameters.values())
    empty = inspect.Parameter.empty
    positional = [p for p in params if p.kind in _POSITIONAL]
    star = any(p.kind is inspect.Parameter.VAR_POSITIONAL for p in params)
    if not star and len(positional) < 2:
        raise KLGradError(f"{label}{sig} has the wrong signature: expected fn(logp, ref_logp) or "
                          "fn(logp, ref_logp, old_logp) (bind other parameters with --kwarg NAME=VALUE)")
    logits = [p.name for p in params if "logit" in p.name.lower() and p.default is empty]
    if logits:
        raise KLGradError(f"{label} takes {', '.join(logits)}: the audit passes per-token log-probs of the sampled "
                          "tokens (…, L), not logits over the vocabulary; wrap it as fn(logp, ref_logp)")
    named = {_role(p.name) for p in positional if p.default is empty}
    free = [r for r in ("logp", "ref") if r not in named]  # what unnamed parameters take, in order
    out = []
    for p in positional:
        role = _role(p.name)
        if p.default is not empty:
            if role in ("old", "mask"):
                out.append((p.name, role, False))
            continue
        if role is None:  # unnamed: logp, then ref_logp, whichever the named ones leave
            role = free.pop(0) if free else None
        if role is None:
            raise KLGradError(f"{label} needs parameter {p.name!r}, which is none of logp, ref_logp, old_logp or a "
                              f"mask: bind it with --kwarg {p.name}=VALUE")
        out.append((p.name, role, True))
    for p in params:
        if p.kind is inspect.Parameter.KEYWORD_ONLY:
            role = _role(p.name)
            if role in ("old", "mask", "ref", "logp") and (p.default is empty or role in ("old", "mask")):
                out.append((p.name, role, False))
            elif p.default is empty:
                raise KLGradError(f"{label} needs keyword argument(s) {p.name}: bind them with --kwarg NAME=VALUE")
    if star:  # *args receives what the named positionals leave of (logp, ref_logp, old_logp), in order
        have = {r for _, r, _ in out}
        out[len(positional):len(positional)] = [(name, r, True) for r, name in
                                                (("logp", "logp"), ("ref", "ref_logp"), ("old", "old_logp"))
                                                if r not in have]  # named by what each receives
    roles = [r for _, r, _ in out]
    twice = sorted({r for r in roles if roles.count(r) > 1})
    if twice or "logp" not in roles or "ref" not in roles:
        got = ", ".join(f"{n} → {r}" for n, r, _ in out)
        raise KLGradError(f"{label}: cannot tell which parameter is logp and which ref_logp ({got}); name them "
                          "logp and ref_logp (and old_logp, mask), or bind the others with --kwarg")
    return tuple(out)


def check_signature(fn: Callable, label: str = "fn") -> bool:
    """True when ``fn`` takes the sampler's log-probs (``signature_roles`` has an ``old`` role)."""
    return any(role == "old" for _, role, _ in signature_roles(fn, label))


def load_target(text: str, kwargs: dict | None = None) -> Callable:
    """``module:function`` or ``path/to/file.py:function`` → the callable with ``kwargs`` bound (signature checked)."""
    module_spec, sep, attr = text.rpartition(":")
    if not sep or not module_spec or not attr:
        raise KLGradError(f"target {text!r}: expected module:function or path/to/file.py:function")
    module = _load_module(module_spec)
    obj = module
    for part in attr.split("."):
        if not hasattr(obj, part):
            raise KLGradError(f"{module_spec} has no attribute {attr!r}; {_callables(obj)}")
        obj = getattr(obj, part)
    if not callable(obj):
        raise KLGradError(f"{text} is {type(obj).__name__}, not callable: expected a function "
                          "fn(logp, ref_logp) or fn(logp, ref_logp, old_logp)")
    fn = bind(obj, kwargs, text)
    check_signature(fn, text)
    return fn


def _callables(obj, limit: int = 10) -> str:
    """``"its callables: a, b, ..."`` — the public callables ``obj`` defines (a module's own, not its imports)."""
    names = []
    for name, value in vars(obj).items():
        if name.startswith("_") or not callable(value) or inspect.ismodule(value):
            continue
        if inspect.ismodule(obj) and getattr(value, "__module__", obj.__name__) != obj.__name__:
            continue  # imported (torch, functools.partial, ...), not defined there
        names.append(name)
    if not names:
        return "it defines no callables"
    more = f", ... ({len(names) - limit} more)" if len(names) > limit else ""
    return f"its callables: {', '.join(names[:limit])}{more}"


def bind(fn: Callable, kwargs: dict | None, label: str = "fn") -> Callable:
    """``functools.partial(fn, **kwargs)``, refusing a name the function does not accept."""
    if not kwargs:
        return fn
    try:
        params = inspect.signature(fn).parameters
    except (TypeError, ValueError):  # no signature to check against: the call will tell
        params = None
    if params is not None and not any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        unknown = sorted(set(kwargs) - set(params))
        if unknown:
            raise KLGradError(f"{label} takes no parameter {', '.join(unknown)}; its parameters: {', '.join(params)}")
    return functools.partial(fn, **kwargs)
