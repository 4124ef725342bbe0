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
        self._aliases: dict[str, tuple[str, dict[str, Any]]] = {}
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

    def alias(self, name: str, target: str, **options: Any) -> None:
        """Register `name` as another name of the entry `target` built with fixed `options`
        (`u2g` is `disarm`; `zgr` is `reinmax` at temperature 1): one implementation, and
        `resolve` gives the canonical name that results show."""
        if name in self._factories or name in self._aliases:
            raise self.error(f"{self.kind} '{name}' is already registered")
        self._aliases[name] = (target, dict(options))

    def resolve(self, name: str, options: dict[str, Any] | None = None
                ) -> tuple[str, dict[str, Any]]:
        """The canonical (name, options) of `name` with `options`: aliases resolved; an option
        that contradicts an alias's fixed option is an error."""
        options = dict(options or {})
        if name not in self._aliases:
            return name, options
        target, fixed = self._aliases[name]
        for key, value in fixed.items():
            if key in options and options[key] != value:
                raise self.error(
                    f"{self.kind} '{name}' is '{target}' with {key}={value!r}; it cannot take "
                    f"{key}={options[key]!r} (use '{target}' directly)"
                )
        return target, {**options, **fixed}

    def aliases(self) -> dict[str, tuple[str, dict[str, Any]]]:
        """Alias name -> (canonical name, fixed options)."""
        return dict(self._aliases)

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

    def ignore_installed_plugins(self) -> None:
        """List and build only what this process registers: the entry-point group is not
        read (a test suite of the built-in entries, which an installed plugin would change)."""
        self._plugins_loaded = True

    def broken(self) -> dict[str, str]:
        """Installed plugins that failed to load, with the reason (not in `available`)."""
        self.load_plugins()
        return dict(self._broken)

    def available(self) -> list[str]:
        """Sorted registered names, plugins included."""
        self.load_plugins()
        return sorted([*self._factories, *self._aliases])

    def factory(self, name: str) -> Callable[..., T]:
        """The factory registered as `name` (an alias's: its target's); unknown names raise
        with a suggestion."""
        self.load_plugins()
        name = self._aliases.get(name, (name, {}))[0]
        if name in self._broken:
            raise self.error(f"{self.kind} '{name}' is installed but broken: "
                             f"{self._broken[name]}")
        if name not in self._factories:
            names = self.available()
            raise self.error(
                f"unknown {self.kind} '{name}'{did_you_mean(name, names)}; "
                f"available: {', '.join(names)}"
            )
        return self._factories[name]

    def get(self, name: str, **options: Any) -> T:
        """Build the entry `name` with keyword `options`; unknown options name the allowed ones."""
        if name in self._aliases:
            target, resolved = self.resolve(name, options)
            return self.get(target, **resolved)
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
