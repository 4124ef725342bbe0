"""Labels as people read them: what differs is named, the stored identity is untouched."""

from __future__ import annotations

import inspect

from estibench import estimators
from estibench.benchmarks.results.labels import display_estimators, display_objective


def _config(label: str, name: str, **options: object) -> dict:
    return {"estimator": label, "estimator_name": name, "estimator_options": options}


def test_a_bare_estimator_beside_its_variants_names_the_defaults_they_change():
    default = inspect.signature(estimators.registry.factory("reinforce")).parameters["baseline"]
    configs = [_config("reinforce", "reinforce", baseline="none"),
               _config("reinforce-loo", "reinforce", baseline="loo"),
               _config("reinforce-ema", "reinforce", baseline="ema", decay=0.9),
               _config("gumbel_softmax", "gumbel_softmax")]
    shown = display_estimators(configs)
    assert shown == {"reinforce": f"reinforce(baseline={default.default})",
                     "reinforce-loo": "reinforce-loo", "reinforce-ema": "reinforce-ema",
                     "gumbel_softmax": "gumbel_softmax"}
    # decay is at its default in every variant: not named
    assert "decay" not in shown["reinforce"]


def test_labels_stay_as_stored_alone_set_by_the_suite_or_unknown():
    alone = [_config("reinforce", "reinforce")]
    assert display_estimators(alone) == {"reinforce": "reinforce"}
    pair = [_config("reinforce", "reinforce"), _config("reinforce-loo", "reinforce",
                                                       baseline="loo")]
    assert display_estimators(pair, explicit=frozenset({"reinforce"}))["reinforce"] == "reinforce"
    unknown = [_config("mine", "mine"), _config("mine-2", "mine", width=2)]
    assert display_estimators(unknown) == {"mine": "mine", "mine-2": "mine-2"}


def test_an_automatic_objective_label_names_its_options():
    config = {"objective": "categorical_vae-4-4", "objective_name": "categorical_vae",
              "objective_options": {"categories": 4, "variables": 4}}
    assert display_objective(config) == "categorical_vae(categories=4, variables=4)"
    assert display_objective({**config, "objective": "mine"}) == "mine"  # set by the suite
    assert display_objective({**config, "objective_name": "nope"}) == "categorical_vae-4-4"
