"""Checks a suite can only pass against its data, made before any cell runs: a suite that the
data cannot feed is refused up front (exit 2), never started and left to hang or fail."""

from __future__ import annotations

from estibench.benchmarks import data as datasets
from estibench.benchmarks.objectives import LatentVariableModel
from estibench.benchmarks.suites.schema import Suite, SuiteError


def check_against_data(suite: Suite, train: datasets.Dataset) -> None:
    """Training batches must fit in the training set (an epoch of none would loop forever) and
    the input dimension of every objective that reads data (one with an example input) must be
    the data's."""
    models = [(i, spec, spec.build()) for i, spec in enumerate(suite.objectives)]
    models = [(i, spec, m) for i, spec, m in models if m.example_input() is not None]
    if not models:
        return  # toys read no data
    batch_size = suite.training.batch_size
    if suite.training.steps > 0 and batch_size > len(train):
        raise SuiteError(
            f"training.batch_size = {batch_size} is larger than the training set of dataset "
            f"{suite.data.name!r} ({len(train)} examples with data.test_fraction = "
            f"{suite.data.test_fraction}); choose a batch_size <= {len(train)}")
    for i, spec, model in models:
        example = model.example_input()
        assert example is not None
        dim = int(example.shape[-1])
        if dim != train.num_features and isinstance(model, LatentVariableModel):
            raise SuiteError(
                f"objectives.{i} ({spec.id}): input_dim = {dim} does not match dataset "
                f"{suite.data.name!r}, whose examples have {train.num_features} features; set "
                f"options.input_dim = {train.num_features}")
        if dim != train.num_features:
            raise SuiteError(
                f"objectives.{i} ({spec.id}): its example input has {dim} features, the "
                f"examples of dataset {suite.data.name!r} have {train.num_features}; read the "
                f"model's own data ([data] name = \"file\", path = ...) or match its input")
