"""Objectives found by reference: a registered name, "package.module:factory" or
"path/to/file.py:factory".

    objective = load_objective("categorical_vae", variables=4)           # registered
    objective = load_objective("my_models.bandit:make_objective", arms=5)  # a module
    objective = load_objective("models/bandit.py:make_objective")          # a file

A factory (a registered one, an entry point's, or one found by reference) returns either a
ready `Objective` or a `Model` (`user_model`), which is wrapped as a `ModelObjective`. A file is
imported by its path under a module name of its own (from the resolved path), once per version
of the file; a relative path is read from the working directory. Every failure is an
`ObjectiveError` that names the reference: a module that does not import (with its own error and
where it was raised), a factory that is missing, an option it does not take, or a result that is
neither a `Model` nor an `Objective` (what it returned instead).
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import inspect
import re
import sys
import traceback
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

from estibench.estimators import did_you_mean

from .base import Objective, ObjectiveError
from .user_model import Model, ModelObjective

FORMS = "'package.module:factory', 'path/to/file.py:factory' or a registered objective name"
# resolved path -> (the file's (mtime, size) when imported, the module name it was imported as)
_FILES: dict[Path, tuple[tuple[int, int], str]] = {}


def is_reference(text: str) -> bool:
    """Whether `text` names a factory ("module:factory", "file.py:factory"), not a registered
    name (registered names have no colon)."""
    return ":" in text


def _is_path(target: str) -> bool:
    return target.endswith(".py") or "/" in target or "\\" in target


def short_name(reference: str) -> str:
    """A reference's file stem or last module name and its factory: "bandit.make_objective"
    for "examples/bandit.py:make_objective" and for "my_models.bandit:make_objective"."""
    target, _, attribute = reference.rpartition(":")
    if _is_path(target):
        stem = re.split(r"[/\\]", target)[-1].removesuffix(".py")
    else:
        stem = target.rsplit(".", 1)[-1]
    return f"{stem}.{attribute}"


def _where(err: BaseException) -> str:
    """' (file, line N)' for where an import failed: the syntax error's place, else the
    innermost frame outside the import machinery."""
    if isinstance(err, SyntaxError) and err.filename:
        return f" ({err.filename}, line {err.lineno})"
    frames = [f for f in traceback.extract_tb(err.__traceback__)
              if not f.filename.startswith("<frozen") and f.filename != __file__
              and "importlib" not in f.filename]
    return f" ({frames[-1].filename}, line {frames[-1].lineno})" if frames else ""


def _error_text(err: BaseException) -> str:
    return traceback.format_exception_only(type(err), err)[-1].strip()


def _import_module(name: str, reference: str) -> ModuleType:
    try:
        return importlib.import_module(name)
    except Exception as err:
        hint = ""
        if isinstance(err, ModuleNotFoundError) and err.name and (
                name == err.name or name.startswith(err.name + ".")):
            hint = (" (is its folder on sys.path or PYTHONPATH? a file works too: "
                    "'path/to/file.py:factory')")
        raise ObjectiveError(f"objective factory {reference!r}: module {name!r} does not "
                             f"import: {_error_text(err)}{_where(err)}{hint}") from err


def _import_file(text: str, reference: str) -> ModuleType:
    path = Path(text).expanduser()
    if not path.exists():
        raise ObjectiveError(f"objective factory {reference!r}: file {text!r} does not exist "
                             f"(a relative path is read from the working directory, "
                             f"{Path.cwd()})")
    if not path.is_file() or path.suffix != ".py":
        raise ObjectiveError(f"objective factory {reference!r}: {text!r} is not a Python file "
                             "(expected 'path/to/file.py:factory')")
    resolved = path.resolve()
    stat = resolved.stat()
    stamp = (stat.st_mtime_ns, stat.st_size)
    known = _FILES.get(resolved)
    if known is not None and known[0] == stamp and known[1] in sys.modules:
        return sys.modules[known[1]]
    digest = hashlib.sha256(f"{resolved}:{stamp}".encode()).hexdigest()[:12]
    stem = re.sub(r"\W", "_", resolved.stem)
    name = f"estibench_user_{stem}_{digest}"
    spec = importlib.util.spec_from_file_location(name, resolved)
    if spec is None or spec.loader is None:
        raise ObjectiveError(f"objective factory {reference!r}: cannot import {text!r}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # while it runs: dataclasses and pickling look it up there
    try:
        spec.loader.exec_module(module)
    except Exception as err:
        del sys.modules[name]
        raise ObjectiveError(f"objective factory {reference!r}: {text!r} does not import: "
                             f"{_error_text(err)}{_where(err)}") from err
    if known is not None:
        sys.modules.pop(known[1], None)  # the file's previous version
    _FILES[resolved] = (stamp, name)
    return module


def resolve_factory(reference: str) -> Callable[..., Any]:
    """The callable a reference "module:factory" or "file.py:factory" names (importing it)."""
    target, _, attribute = reference.rpartition(":")
    if not target or not attribute:
        raise ObjectiveError(f"objective factory {reference!r}: expected {FORMS}")
    module = (_import_file(target, reference) if _is_path(target)
              else _import_module(target, reference))
    found: Any = module
    for part in attribute.split("."):
        if not hasattr(found, part):
            names = [n for n, v in vars(module).items()
                     if callable(v) and not n.startswith("_")
                     and getattr(v, "__module__", None) == module.__name__]
            raise ObjectiveError(
                f"objective factory {reference!r}: {target!r} has no {attribute!r}"
                f"{did_you_mean(attribute, names)}; its functions and classes: "
                f"{', '.join(sorted(names)) or '(none)'}")
        found = getattr(found, part)
    if not callable(found):
        raise ObjectiveError(f"objective factory {reference!r}: {attribute!r} is a "
                             f"{type(found).__name__}, not a function")
    return found


def _options(factory: Callable[..., Any]) -> list[str] | None:
    """Keyword options a factory takes, or None if it takes **kwargs (or has no signature)."""
    try:
        params = inspect.signature(factory).parameters.values()
    except (TypeError, ValueError):
        return None
    if any(p.kind is p.VAR_KEYWORD for p in params):
        return None
    return [p.name for p in params if p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD)]


def as_objective(built: Any, source: str) -> Objective:
    """`built` as an objective: an `Objective` as it is, a `Model` wrapped; anything else an
    `ObjectiveError` saying what `source` returned."""
    if isinstance(built, Objective):
        return built
    if isinstance(built, Model):
        return ModelObjective(built)
    shown = repr(built)
    shown = shown if len(shown) <= 80 else shown[:77] + "..."
    raise ObjectiveError(f"{source} returned {type(built).__name__} ({shown}); expected an "
                         "estibench.Model (posterior, f, encoder, ...) or an Objective")


def load_objective(reference: str, **options: Any) -> Objective:
    """The objective `reference` names, built with `options`: a registered name (entry points
    included), "package.module:factory" or "path/to/file.py:factory"."""
    if not isinstance(reference, str) or not reference.strip():
        raise ObjectiveError(f"objective reference {reference!r}: expected {FORMS}")
    if not is_reference(reference):
        from . import get  # the registry is built by the package, after this module

        return as_objective(get(reference, **options), f"objective {reference!r}")
    factory = resolve_factory(reference)
    allowed = _options(factory)
    if allowed is not None:
        for key in options:
            if key not in allowed:
                raise ObjectiveError(
                    f"objective factory {reference!r} has no option '{key}'"
                    f"{did_you_mean(key, allowed)}; options: {', '.join(allowed) or '(none)'}")
    try:
        built = factory(**options)
    except ObjectiveError:
        raise
    except Exception as err:
        raise ObjectiveError(f"objective factory {reference!r} failed with options {options}: "
                             f"{_error_text(err)}{_where(err)}") from err
    return as_objective(built, f"objective factory {reference!r}")


__all__ = ["FORMS", "as_objective", "is_reference", "load_objective", "resolve_factory",
           "short_name"]
