"""`python -m estibench.benchmarks.regression record|gate ...`: see `tracking`."""

from estibench.benchmarks.regression.tracking import main

raise SystemExit(main())
