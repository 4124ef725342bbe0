"""One line per reported quantity: what it is, its unit, and how to read it."""

from __future__ import annotations

NOTES: tuple[tuple[str, str], ...] = (
    ("machine load",
     "The 1-minute load average while the throughput was timed (and while training, in the "
     "store), beside the CPU count. A timing taken with the load above the CPU count is "
     "flagged busy: other work shared the cores, so the time is an upper bound."),
    ("mean ± SE",
     "Every summary number is the mean over seeds ± its standard error (sample sd / sqrt(n)); "
     "'seeds' is n. Only cells with status ok are aggregated."),
    ("test ELBO",
     "E_q[log p(x, z) - log q(z | x)] on held-out data at the final checkpoint, in nats per "
     "example; higher is better."),
    ("IWAE-k",
     "Importance-weighted bound with k samples; it tightens towards log p(x) as k grows "
     "(IWAE-1 is an ELBO estimate)."),
    ("log p(x)",
     "Exact log marginal likelihood where it can be computed (enumeration, closed form); "
     "otherwise a high-k IWAE *reference*, itself a lower bound, never the truth."),
    ("gap",
     "log p(x) - ELBO: how loose the ELBO is (KL(q || p(z | x)) when log p(x) is exact; "
     "relative to the reference otherwise)."),
    ("exact objective",
     "The objective computed exactly (enumeration or closed form) for objectives that allow it, "
     "e.g. the toy problems."),
    ("log10 Var",
     "log10 of the total variance (trace of the covariance) of one gradient estimate, from M "
     "independent estimates at a frozen checkpoint, for the distribution parameters or the "
     "encoder (inference network) parameters; lower is better."),
    ("SNR",
     "Signal-to-noise ratio of the gradient estimate (snr_norm: norm of the mean estimate over "
     "the square root of the total variance); higher is better."),
    ("bias, cosine",
     "Where the exact gradient is known: norm of (mean estimate - exact gradient), that norm "
     "relative to the exact gradient's, and the cosine between them. Relaxed estimators "
     "(Gumbel-Softmax / Concrete, straight-through) are biased by design: their bias is "
     "expected, not a bug."),
    ("z-test",
     "z_max, chi2 and p_value test unbiasedness against the exact gradient; a small p-value "
     "for an estimator that should be unbiased points at a bug."),
    ("time / estimate",
     "Median wall-clock time of one gradient estimate (forward and backward with S samples) "
     "after warm-up, on the device named in the environment; lower is better."),
    ("Var x time",
     "Work-normalised variance: total variance times time per estimate (s). The variance you "
     "get for one second of compute; lower is better and it compares estimators of different "
     "cost fairly."),
    ("peak memory",
     "Peak memory while computing gradient estimates, in MiB, as recorded by the throughput "
     "measurement on the run's device."),
)
