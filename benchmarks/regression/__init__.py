"""estibench.benchmarks.regression: the project's own performance tooling.

- `asv/`: the asv benchmark suite (asv.conf.json's benchmark_dir).
- `tracking`: record commits with asv and gate two of them
  (`python -m estibench.benchmarks.regression record|gate`).
- `speed/`: speed tools (against hand-written torch, the statistics engine, step profiles).
- `microbench/`: pytest-benchmark micro-benchmarks (not installed; run from a checkout).
"""
