"""Speed measurements behind the issue's targets, printed by running code (never constants):

    python -m estibench.benchmarks.regression.speed.engine        # vectorized vs loop,
    per-estimate cost, overhead
    python -m estibench.benchmarks.regression.speed.handwritten   # one estimate vs a hand-written
    plain-torch step
"""
