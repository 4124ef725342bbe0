"""Speed measurements, printed by running code (never constants):

    python -m estibench.benchmarks.regression.speed.engine       # vectorized vs loop
    python -m estibench.benchmarks.regression.speed.handwritten  # against hand-written torch
    python -m estibench.benchmarks.regression.speed.per_evaluation
    python -m estibench.benchmarks.regression.speed.step_profile
"""
