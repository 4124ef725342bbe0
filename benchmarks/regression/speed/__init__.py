"""Speed measurements, printed by running code (never constants):

    python -m estibench.benchmarks.regression.speed.handwritten  # against hand-written torch
    python -m estibench.benchmarks.regression.speed.engine       # the statistics engine
    python -m estibench.benchmarks.regression.speed --compile    # torch.compile against eager
    python -m estibench.benchmarks.regression.speed --gpu        # the GPU table (needs CUDA)
    python -m estibench.benchmarks.regression.speed --page       # docs/development/performance.md
    python -m estibench.benchmarks.regression.speed.per_evaluation
    python -m estibench.benchmarks.regression.speed.step_profile

`timing` holds what they share: the device (`--device`), per-call timers (CUDA events on a GPU)
and the machine's load.
"""
