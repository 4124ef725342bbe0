"""estibench.benchmarks: the harness, one subpackage per role, from the bottom up.

- `data`: datasets shipped with packages or read from a user's files; a suite's cached split.
- `objectives`: the problems (toys with exact gradients, VAEs, sigmoid belief nets).
- `metrics`: one (objective, estimator) at a checkpoint: gradient statistics, unbiasedness,
  bounds, throughput.
- `suites`: the experiment description (the pydantic schema, claims, the shipped `*.toml`).
- `results`: what a run leaves on disk (the SQLite store, the run directory).
- `harness`: running a suite (plan, cells, cost and ETA, executors).
- `claims`: checking a suite's claims against a run.
- `regression`: the project's own speed tooling (asv benchmarks, recorder and gate, speed tools,
  micro-benchmarks).

A subpackage imports only those listed above it (checked by the layers contract in CI).
"""
