"""What is registered, described from the code itself (so the listing cannot drift).

    rows = describe_estimators()   # name, family, applies to, unbiased, evaluations, options
    rows = describe_objectives()   # name, latent, exact, options

Options come from each factory's signature: the default, and the allowed values where the
annotation is a `Literal` (a bool allows true/false). Unbiased: whether the estimator is with
its default options, and which allowed option values make it the other way (`unbiased_text`).
Evaluations of f per sample come from the estimator's `evaluations_per_sample` attribute if it
declares one, else from a dry run on a toy (the number of points f was evaluated at,
`out.evaluations` or the leading size of `out.samples`, over S): an estimator whose count does
not grow with S enumerates the support, one that grows by a per sample from b fixed points shows
"a + b per estimate".
For the built-in estimators the listing shows the dry run's result from `BUILTIN_EVALUATIONS`
instead of running it (a test runs it and compares): running 23 estimators cost 1.6 s, most of
it torch.func importing torch._dynamo for DReG's first call.
"""

from __future__ import annotations

import functools
import inspect
import traceback
import typing
from dataclasses import dataclass
from typing import Any

import torch

from estibench import estimators
from estibench.benchmarks import objectives
from estibench.benchmarks.harness.time_limit import time_limit
from estibench.estimators import distributions

ENUMERATES = "whole support"
# seconds to describe one estimator: building it and a few estimates on a toy take
# milliseconds, so a plugin past this is stuck (planning a real suite allows more)
LIST_TIME_LIMIT = 10.0


@dataclass(frozen=True)
class Option:
    name: str
    default: Any
    allowed: tuple[Any, ...] | None  # None: any value of the annotated type
    fixed: bool = False  # set by an alias (carms-clipped is carms with ratio='clipped')

    def text(self) -> str:
        shown = "required" if self.default is inspect.Parameter.empty else repr(self.default)
        if self.fixed:
            return f"{self.name}={shown} (fixed)"
        allowed = "" if self.allowed is None else f" ({' | '.join(map(repr, self.allowed))})"
        return f"{self.name}={shown}{allowed}"


def options(factory: Any) -> list[Option]:
    """The keyword options of a factory (a class: its __init__), with defaults and choices."""
    target = factory.__init__ if inspect.isclass(factory) else factory
    try:
        hints = typing.get_type_hints(target)
    except Exception:  # noqa: BLE001 - unresolvable annotations: defaults are still shown
        hints = {}
    found = []
    for p in inspect.signature(factory).parameters.values():
        if p.kind not in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD):
            continue
        found.append(Option(p.name, p.default, _allowed(hints.get(p.name))))
    return found


def _allowed(annotation: Any) -> tuple[Any, ...] | None:
    if annotation is bool:
        return (True, False)
    if typing.get_origin(annotation) is typing.Literal:
        return typing.get_args(annotation)
    return None


def evaluations(objective: Any, estimator: Any, num_samples: int, out: Any = None) -> int:
    """Points f is evaluated at by one estimate on the objective's example input (`out`: that
    estimate, when the caller already made it)."""
    if out is None:
        with torch.no_grad():
            out = objective.estimate(objective.example_input(), estimator, num_samples)
    counted = getattr(out, "evaluations", None)
    return int(counted) if counted is not None else int(out.samples.shape[0])


def evaluations_per_sample(objective: Any, estimator: Any, num_samples: int,
                           out: Any = None) -> float:
    """f evaluations per requested sample for this pair (K^N / S for enumeration)."""
    declared = getattr(estimator, "evaluations_per_sample", None)
    if declared is not None:
        return float(declared)
    return evaluations(objective, estimator, num_samples, out) / num_samples


# Toys the dry run tries, in order: the first the estimator applies to is used. A Bernoulli has
# 2 configurations, fewer than S = 3, so enumeration shows as a count that does not grow with S.
_TOYS = (("bernoulli_toy", {}), ("gaussian_toy", {}))


# f evaluations per sample of each built-in estimator, as `dry_run_text` counts them on toys
# (tests/cli/test_discover.py checks each entry, and that every built-in has one); where the
# count grows with the latent, D is its number of variables (the dimensions an Independent
# adds) and K their categories (2 for a Bernoulli). Plugins are dry-run.
BUILTIN_EVALUATIONS: dict[str, str] = {
    "arm": "2", "carms": "1", "carms-clipped": "1", "disarm": "2", "dreg": "1",
    "exact": ENUMERATES, "gapped_st": "1",
    "gumbel_rao": "1", "gumbel_softmax": "1", "indecater": "D x K", "iwae": "1",
    "measure_valued": "4 D", "muprop": "1 + 1 per estimate", "nvil": "1", "pathwise": "1",
    "rebar": "3", "reinforce": "1", "reinmax": "1", "relax": "1", "st_gumbel": "1",
    "straight_through": "1", "u2g": "2", "unordered_set": "2", "vimco": "1", "zgr": "1",
}


def builtin(name: str) -> bool:
    """Whether `name` is registered by the estimators package itself (not by a plugin)."""
    return estimators.registry.factory(name).__module__.startswith(estimators.__name__ + ".")


@functools.cache
def _per_sample_text(name: str) -> str:
    estimator = estimators.get(name)
    declared = getattr(estimator, "evaluations_per_sample", None)
    if declared is not None:
        return f"{declared:g}"
    if name in BUILTIN_EVALUATIONS and builtin(name):
        return BUILTIN_EVALUATIONS[name]
    return dry_run_text(name)


def dry_run_text(name: str) -> str:
    """The listing's f evaluations per sample of an estimator, from dry runs at S = 3 and 6 on
    the first toy it applies to."""
    estimator = estimators.get(name)
    for toy, toy_options in _TOYS:
        objective = objectives.get(toy, **toy_options)
        try:
            counts = [evaluations(objective, estimator, s) for s in (3, 6)]
        except estimators.EstimatorError:
            continue
        return _per_sample(*counts)
    return "?"  # applies to no toy: nothing ran, nothing is claimed


def _per_sample(at_3: int, at_6: int) -> str:
    """The text for f evaluated at_3 and at_6 times with S = 3 and 6: a count that does not
    grow with S enumerates the support; one that grows by a points per sample plus b fixed
    ones (MuProp's mean-field point) reads "a + b per estimate"."""
    if at_6 == at_3:
        return ENUMERATES
    per = (at_6 - at_3) / 3
    extra = at_3 - 3 * per
    return f"{per:g}" if extra == 0 else f"{per:g} + {extra:g} per estimate"


@dataclass(frozen=True)
class EstimatorRow:
    name: str
    family: str
    applies_to: str
    unbiased: str
    evaluations_per_sample: str
    options: list[Option]


def unbiased_text(name: str, factory: Any, estimator: Any) -> str:
    """"yes" or "no" for the default options, with the option values (among those a `Literal`
    or a bool allows) that turn it the other way: "yes; no with baseline='grpo'"."""
    default = bool(estimator.unbiased)
    flipped = []
    for option in options(factory):
        for value in option.allowed or ():
            if value == option.default:
                continue
            try:
                other = estimators.get(name, **{option.name: value})
            except Exception:  # noqa: BLE001 - a value that needs other options: not listed
                continue
            if bool(other.unbiased) != default:
                flipped.append(f"{option.name}={value!r}")
    text = "yes" if default else "no"
    return f"{text}; {'no' if default else 'yes'} with {', '.join(flipped)}" if flipped else text


def describe_estimators() -> list[EstimatorRow]:
    """One row per registered estimator; a plugin that cannot be built or run, or whose entry
    point does not load, is a row saying so (it never takes the listing down)."""
    rows = []
    for name in estimators.available():
        try:  # a plugin's dry run that never returns breaks its row only
            with time_limit(LIST_TIME_LIMIT, f"describing estimator {name!r}"):
                factory = estimators.registry.factory(name)
                estimator = estimators.get(name)
                family = (getattr(factory, "family", None)
                          or factory.__module__.rsplit(".", 1)[-1])
                unbiased = ("exact" if family == "exact"
                            else unbiased_text(name, factory, estimator))
                rows.append(EstimatorRow(name, family, str(estimator.supports), unbiased,
                                         _per_sample_text(name), _alias_options(name, factory)))
        except Exception as err:  # a misbehaving plugin
            last = traceback.format_exception_only(type(err), err)[-1].strip()
            rows.append(EstimatorRow(name, "broken", last, "-", "-", []))
    for name, reason in estimators.registry.broken().items():
        rows.append(EstimatorRow(name, "broken", f"entry point does not load: {reason}", "-",
                                 "-", []))
    return rows


def _alias_options(name: str, factory: Any) -> list[Option]:
    """`options(factory)`, with the values an alias fixes shown as fixed."""
    fixed = estimators.registry.aliases().get(name, (name, {}))[1]
    return [Option(o.name, fixed[o.name], None, fixed=True) if o.name in fixed else o
            for o in options(factory)]


@dataclass(frozen=True)
class ObjectiveRow:
    name: str
    latent: str
    exact: str
    options: list[Option]


def describe_objectives() -> list[ObjectiveRow]:
    rows = []
    for name in objectives.available():
        objective = objectives.get(name)
        with torch.no_grad():
            q = objective.posterior(objective.example_input())
        rows.append(ObjectiveRow(name, distributions.describe(q),
                                 "yes" if objective.has_exact else "no",
                                 options(objectives.registry.factory(name))))
    return rows
