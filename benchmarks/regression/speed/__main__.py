"""`python -m estibench.benchmarks.regression.speed --gpu | --compile | --page`: the GPU table
(`gpu`), compiled against eager (`compiled`), or the performance page (`page`)."""

import sys

from estibench.benchmarks.regression.speed import compiled, gpu, page

if "--gpu" in sys.argv[1:]:
    gpu.main()
elif "--compile" in sys.argv[1:]:
    compiled.main()
elif "--page" in sys.argv[1:]:
    page.main()
else:
    raise SystemExit("python -m estibench.benchmarks.regression.speed --gpu | --compile | --page"
                     " (each with --help); the other tools: see the package's docstring")
