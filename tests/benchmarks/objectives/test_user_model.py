"""A researcher's own model (`estibench.Model`) loaded by reference: by file path and by module,
its exact value against an enumeration written out here, an unbiased estimator against its
exact gradient, and every kind of bad input named (the module's own error, what a factory
returned, f's expected and returned shapes, a family that is not allowed)."""

from __future__ import annotations

import itertools
import textwrap
from pathlib import Path

import pytest
import torch

import estibench
from estibench import estimators
from estibench.benchmarks import objectives
from estibench.benchmarks.objectives import (
    BernoulliToy,
    ModelObjective,
    NoExactValue,
    ObjectiveError,
    load_objective,
)
from estibench.estimators import EstimatorError
from tests.helpers import Summary, assert_unbiased_with_power, exact_gradients, gradient_estimates

# Three latent bits per example, a trained decoder: f(z, x) = -||decoder(z) - x||^2.
MODEL = '''
import torch
from torch import nn
from torch.distributions import Bernoulli, Beta, Independent

import estibench
from estibench.benchmarks import objectives


def make_model(features: int = 4, bits: int = 3, reduce_batch: bool = False):
    encoder = nn.Linear(features, bits)
    decoder = nn.Linear(bits, features)

    def posterior(x):
        return Independent(Bernoulli(logits=encoder(x)), 1)

    def f(z, x):
        value = -((decoder(z) - x) ** 2).sum(-1)  # (S, B)
        return value.mean(-1, keepdim=True) if reduce_batch else value

    return estibench.Model(posterior=posterior, f=f, encoder=encoder, model=decoder,
                           example_input=torch.zeros(1, features), name="bits")


def make_wrong_shape():
    model = make_model()
    return estibench.Model(posterior=model.posterior, f=lambda z, x: model.f(z, x)[..., None],
                           encoder=model.encoder, model=model.model,
                           example_input=model.example_input)


def make_beta():
    encoder = nn.Linear(4, 3)
    return estibench.Model(
        posterior=lambda x: Independent(Beta(encoder(x).exp(), encoder(x).exp()), 1),
        f=lambda z, x: z.sum(-1), encoder=encoder, example_input=torch.zeros(1, 4))


def make_without_independent():
    encoder = nn.Linear(4, 3)
    return estibench.Model(posterior=lambda x: Bernoulli(logits=encoder(x)),
                           f=lambda z, x: z.sum(-1), encoder=encoder,
                           example_input=torch.zeros(1, 4))


def make_toy():
    return objectives.get("bernoulli_toy", dims=2)


def make_text():
    return "a model"
'''


@pytest.fixture
def model_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, str]:
    """The model as a file, and the unique module name it also has on sys.path."""
    module = f"user_model_{tmp_path.name.replace('-', '_')}"
    path = tmp_path / f"{module}.py"
    path.write_text(MODEL)
    monkeypatch.syspath_prepend(str(tmp_path))
    return path, module


def test_loaded_by_path_and_by_module(model_file: tuple[Path, str]) -> None:
    path, module = model_file
    for reference in (f"{path}:make_model", f"{module}:make_model"):
        objective = load_objective(reference, bits=2)
        assert isinstance(objective, ModelObjective) and objective.name == "bits"
        assert objective.has_exact and objective.num_configurations == 4
        assert objective.parameter_groups() == {
            "encoder": ["encoder.weight", "encoder.bias"],
            "decoder": ["model.weight", "model.bias"]}
        assert objective.posterior_params(torch.zeros(5, 4)).shape == (5, 2)  # the logits
    assert estibench.Model is objectives.Model


def test_a_factory_may_return_a_ready_objective(model_file: tuple[Path, str]) -> None:
    path, _ = model_file
    assert isinstance(load_objective(f"{path}:make_toy"), BernoulliToy)
    assert isinstance(load_objective("bernoulli_toy", dims=2), BernoulliToy)


def test_a_file_is_imported_again_when_it_changes(model_file: tuple[Path, str]) -> None:
    path, _ = model_file
    assert load_objective(f"{path}:make_model").name == "bits"
    path.write_text(MODEL.replace('name="bits"', 'name="bits, edited"') + "\n# edited\n")
    assert load_objective(f"{path}:make_model").name == "bits, edited"


def _by_hand(objective: ModelObjective, x: torch.Tensor) -> torch.Tensor:
    """sum_z q(z|x) f(z, x) over the 2^3 bit vectors, from the modules themselves."""
    encoder, decoder = objective.encoder, objective.model
    p = torch.sigmoid(encoder(x))  # (B, 3)
    total = torch.zeros(x.shape[0], dtype=x.dtype)
    for bits in itertools.product([0.0, 1.0], repeat=3):
        z = torch.tensor(bits, dtype=x.dtype)
        prob = (p**z * (1 - p) ** (1 - z)).prod(-1)
        total = total + prob * -((decoder(z) - x) ** 2).sum(-1)
    return total


def test_exact_value_and_gradient_are_the_enumeration(model_file: tuple[Path, str]) -> None:
    path, _ = model_file
    torch.manual_seed(0)
    objective = load_objective(f"{path}:make_model").double()
    x = torch.rand(5, 4, dtype=torch.float64)
    parameters = list(objective.parameters())
    mine = objective.exact(x)
    theirs = _by_hand(objective, x)
    torch.testing.assert_close(mine, theirs)
    for a, b in zip(torch.autograd.grad(mine.sum(), parameters),
                    torch.autograd.grad(theirs.sum(), parameters), strict=True):
        torch.testing.assert_close(a, b)
        assert b.abs().max() > 1e-3  # informative: not a zero gradient


def test_reinforce_loo_is_unbiased_against_the_exact_gradient(
        model_file: tuple[Path, str]) -> None:
    path, _ = model_file
    torch.manual_seed(1)
    objective = load_objective(f"{path}:make_model").double()
    x = torch.rand(3, 4, dtype=torch.float64)
    exact = exact_gradients(objective, x)
    torch.manual_seed(2)
    estimator = estimators.get("reinforce", baseline="loo")
    estimates = gradient_estimates(objective, x, estimator, 3, replicas=200, groups=80)
    for role in ("params", "encoder", "decoder"):
        assert_unbiased_with_power(Summary.of(getattr(estimates, role)), exact[role],
                                   f"reinforce-loo {role}")


def test_which_estimators_apply(model_file: tuple[Path, str]) -> None:
    path, _ = model_file
    objective = load_objective(f"{path}:make_model")
    for name in ("reinforce", "exact", "gumbel_softmax", "straight_through", "disarm"):
        objective.check(estimators.get(name))
    with pytest.raises(EstimatorError, match="pathwise"):
        objective.check(estimators.get("pathwise"))
    with pytest.raises(EstimatorError, match="IWAE"):
        objective.check(estimators.get("vimco"))
    rigid = ModelObjective(estibench.Model(**{**vars(objective.spec), "differentiable": False}))
    rigid.check(estimators.get("reinforce"))
    for name in ("gumbel_softmax", "straight_through", "muprop"):
        with pytest.raises(EstimatorError, match="not differentiable|differentiable=False"):
            rigid.check(estimators.get(name))


@pytest.mark.parametrize(("family", "build"), [
    ("Bernoulli", lambda h: torch.distributions.Bernoulli(logits=h)),
    ("Categorical", lambda h: torch.distributions.Categorical(logits=h.unflatten(-1, (2, 3)))),
    ("OneHotCategorical",
     lambda h: torch.distributions.OneHotCategorical(logits=h.unflatten(-1, (2, 3)))),
    ("Normal", lambda h: torch.distributions.Normal(h, torch.nn.functional.softplus(h) + 0.1)),
])
def test_the_distribution_is_rebuilt_from_one_tensor(family: str, build) -> None:
    torch.manual_seed(3)
    encoder = torch.nn.Linear(4, 6)

    def posterior(x):
        return torch.distributions.Independent(build(encoder(x)), 1)

    def f(z, x):
        return z.reshape(*z.shape[:2], -1).float().sum(-1)

    objective = ModelObjective(estibench.Model(posterior=posterior, f=f, encoder=encoder,
                                               data=torch.rand(10, 4)))
    x = torch.rand(5, 4)
    q, rebuilt = posterior(x), objective.posterior(x)
    assert type(rebuilt.base_dist).__name__ == family
    assert (rebuilt.batch_shape, rebuilt.event_shape) == (q.batch_shape, q.event_shape)
    z = q.sample((7,))
    torch.testing.assert_close(rebuilt.log_prob(z), q.log_prob(z))
    assert torch.equal(objective.example_input(), objective.data[:1])
    if family == "Normal":
        assert not objective.has_exact
        with pytest.raises(NoExactValue, match="continuous latent"):
            objective.exact(x)
        objective.check(estimators.get("pathwise"))
    else:
        torch.testing.assert_close(
            objective.exact(x), objective.estimate(x, estimators.get("exact")).value)


@pytest.mark.parametrize(("factory", "fragments"), [
    ("make_wrong_shape", ["f(z, x) returned shape (2, 1, 1)", "expected (S, *batch) = (2, 1)"]),
    ("make_beta", ["Independent(Beta)", "Bernoulli, Categorical, OneHotCategorical or Normal"]),
    ("make_without_independent", ["batch shape (1, 3)", "expected (1,)", "Independent(q, 1)"]),
    ("make_text", ["returned str ('a model')", "estibench.Model", "Objective"]),
    ("make_modle", ["has no 'make_modle'", "did you mean 'make_model'"]),
])
def test_bad_factories_say_what_is_wrong(model_file: tuple[Path, str], factory: str,
                                         fragments: list[str]) -> None:
    path, _ = model_file
    with pytest.raises(ObjectiveError) as info:
        load_objective(f"{path}:{factory}")
    for fragment in fragments:
        assert fragment in str(info.value), str(info.value)


def test_bad_options_and_modules_say_what_is_wrong(model_file: tuple[Path, str],
                                                   tmp_path: Path) -> None:
    path, _ = model_file
    with pytest.raises(ObjectiveError, match=r"no option 'bitz' \(did you mean 'bits'\?\)"):
        load_objective(f"{path}:make_model", bitz=2)
    broken = tmp_path / "broken_model.py"
    broken.write_text("import torch\n\nraise RuntimeError('the cluster is down')\n")
    with pytest.raises(ObjectiveError) as info:
        load_objective(f"{broken}:make")
    assert "RuntimeError: the cluster is down" in str(info.value)
    assert f"{broken}, line 3" in str(info.value)
    (tmp_path / "typo_model.py").write_text("def make(:\n    pass\n")
    with pytest.raises(ObjectiveError, match=r"SyntaxError.*typo_model\.py, line 1"):
        load_objective(f"{tmp_path / 'typo_model.py'}:make")
    with pytest.raises(ObjectiveError, match="No module named 'no_such_package'.*PYTHONPATH"):
        load_objective("no_such_package.models:make")
    with pytest.raises(ObjectiveError, match="does not exist"):
        load_objective(f"{tmp_path / 'missing.py'}:make")


def test_f_of_the_wrong_shape_is_caught_at_every_call(model_file: tuple[Path, str]) -> None:
    """An f that averages over the batch passes the one-example check and is caught when it
    meets a batch, with the shapes expected and returned."""
    path, _ = model_file
    objective = load_objective(f"{path}:make_model", reduce_batch=True)
    with pytest.raises(ObjectiveError, match=r"returned shape \(4, 1\); expected .* \(4, 5\)"):
        objective.estimate(torch.rand(5, 4), estimators.get("reinforce"), 4)


def test_the_contract_is_checked_when_wrapped() -> None:
    encoder = torch.nn.Linear(4, 3)
    good = dict(posterior=lambda x: torch.distributions.Independent(
        torch.distributions.Bernoulli(logits=encoder(x)), 1),
        f=lambda z, x: z.sum(-1), encoder=encoder, example_input=torch.zeros(1, 4))
    cases = {
        "no trainable parameters": {"encoder": None},
        "encoder must be a torch.nn.Module": {"encoder": encoder.weight},
        "posterior(x) returned Tensor": {"posterior": lambda x: encoder(x)},
        "f(z, x) failed": {"f": lambda z, x: z @ torch.zeros(5, 5)},
        "max_configurations must be an integer": {"max_configurations": 0},
    }
    for fragment, change in cases.items():
        with pytest.raises(ObjectiveError, match=fragment.replace("(", r"\(").replace(")", r"\)")):
            ModelObjective(estibench.Model(**{**good, **change}))
    small = ModelObjective(estibench.Model(**good, max_configurations=4))
    with pytest.raises(NoExactValue, match="8 latent configurations"):
        small.exact(torch.zeros(2, 4))


def test_the_docs_example_runs() -> None:
    """The module docstring's example, as written."""
    doc = objectives.user_model.__doc__.split("The researcher gives")[0]
    source = textwrap.dedent(doc[doc.index("    import"):])
    scope: dict = {}
    exec(source, scope)  # noqa: S102 - the documentation's own code
    objective = objectives.as_objective(scope["make_objective"](), "the example")
    out = objective.estimate(torch.rand(6, 4), estimators.get("reinforce", baseline="loo"), 3)
    assert out.loss.shape == (6,)
