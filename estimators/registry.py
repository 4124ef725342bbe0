"""A name -> factory registry with entry-point plugins; shared by estimators and objectives."""

from __future__ import annotations

import difflib
import inspect
import traceback
from collections.abc import Callable
from importlib.metadata import entry_points
from typing import Any, Generic, TypeVar

from .errors import EstimatorError

T = TypeVar("T")


def did_you_mean(name: str, choices: list[str]) -> str:
    """A ' (did you mean 'x'?)' hint for a misspelt name, or ''."""
    close = difflib.get_close_matches(name, choices, n=1)
    return f" (did you mean '{close[0]}'?)" if close else ""


def _options(factory: Callable[..., Any]) -> list[str] | None:
    """Keyword options a factory accepts, or None if it takes **kwargs."""
    params = inspect.signature(factory).parameters.values()
    if any(p.kind is p.VAR_KEYWORD for p in params):
        return None
    return [p.name for p in params if p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD)]


class Registry(Generic[T]):
    """Maps names to factories. Third-party packages add entries through an entry-point group.

    `kind` names what is registered ("estimator", "objective") in error messages; `error` is the
    exception class raised for unknown names and options.
    """

    def __init__(self, kind: str, group: str, error: type[Exception] = EstimatorError) -> None:
        self.kind = kind
        self.group = group
        self.error = error
        self._factories: dict[str, Callable[..., T]] = {}
        self._broken: dict[str, str] = {}  # plugins that failed to load: name -> reason
        self._plugins_loaded = False

    def register(
        self, name: str, factory: Callable[..., T] | None = None
    ) -> Callable[..., Any]:
        """Register `factory` under `name`; usable as a decorator (`@register("name")`)."""

        def add(f: Callable[..., T]) -> Callable[..., T]:
            if name in self._factories and self._factories[name] is not f:
                raise self.error(f"{self.kind} '{name}' is already registered")
            self._factories[name] = f
            return f

        return add(factory) if factory is not None else add

    def load_plugins(self, reload: bool = False) -> None:
        """Import the factories advertised under the entry-point group (once, or again)."""
        if self._plugins_loaded and not reload:
            return
        self._plugins_loaded = True
        for ep in entry_points(group=self.group):
            if ep.name in self._factories:
                continue
            try:
                self._factories[ep.name] = ep.load()
            except Exception as err:  # one broken package must not break every command
                last = traceback.format_exception_only(type(err), err)[-1].strip()
                self._broken[ep.name] = f"entry point {ep.value!r} cannot be loaded: {last}"

    def broken(self) -> dict[str, str]:
        """Installed plugins that failed to load, with the reason (not in `available`)."""
        self.load_plugins()
        return dict(self._broken)

    def available(self) -> list[str]:
        """Sorted registered names, plugins included."""
        self.load_plugins()
        return sorted(self._factories)

    def factory(self, name: str) -> Callable[..., T]:
        """The factory registered as `name`; unknown names raise with a suggestion."""
        self.load_plugins()
        if name in self._broken:
            raise self.error(f"{self.kind} '{name}' is installed but broken: "
                             f"{self._broken[name]}")
        if name not in self._factories:
            names = sorted(self._factories)
            raise self.error(
                f"unknown {self.kind} '{name}'{did_you_mean(name, names)}; "
                f"available: {', '.join(names)}"
            )
        return self._factories[name]

    def get(self, name: str, **options: Any) -> T:
        """Build the entry `name` with keyword `options`; unknown options name the allowed ones."""
        factory = self.factory(name)
        allowed = _options(factory)
        if allowed is not None:
            for key in options:
                if key not in allowed:
                    raise self.error(
                        f"{self.kind} '{name}' has no option '{key}'{did_you_mean(key, allowed)}; "
                        f"options: {', '.join(allowed) or '(none)'}"
                    )
        return factory(**options)
