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
     "relative to the reference otherwise). It measures the encoder against each model's own "
     "posterior, not the model: estimators whose ELBOs differ by nats can share a gap when the "
     "difference is in the decoder (log p(x) moves with the ELBO), as the REINFORCE variants "
     "on linear_gaussian do (their seeds' gaps differ; the means coincide)."),
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
    ("M",
     "Replicas per gradient measurement: M independent estimates at a frozen checkpoint. With "
     "replicas = \"auto\" M grows in chunks until the total variance's relative standard "
     "error is at most the suite's target (default 5%), between a minimum and a cap; a range "
     "(128–4096) means M differed across seeds."),
    ("≈",
     "After an SNR or a cosine: within the Monte Carlo noise of the mean of M in at least one "
     "seed, so noise rather than signal. SNR: ‖mean‖² ≤ 4 tr(Var)/M (an unbiased estimator of "
     "a zero gradient has SNR about 1/√M). Cosine to exact: ‖exact‖² ≤ 4 tr(Var)/M (the exact "
     "gradient is smaller than the mean's noise, so the cosine's sign and size are noise)."),
    ("†",
     "The variance's precision target was not met in some seeds: M reached the cap first "
     "(heavy tails). Such variances are uncertain beyond their ± over seeds, and for heavy "
     "tails usually too low."),
    ("cosine",
     "Cosine between the mean of the M estimates and the exact gradient: noise in the mean "
     "lowers it, so for noisy unbiased estimators it is below 1 without any bias."),
    ("bias²",
     "Debiased squared bias ‖mean − exact‖² − tr(Var)/M, averaged over seeds and then clipped "
     "at 0, ± a standard error: the larger of the spread between seeds / √n and each cell's "
     "own, from Var ‖mean − exact‖² ≈ 4 bᵀΣb/M + 2 tr(Σ²)/M² with Σ's diagonal (too small "
     "where the gradient's coordinates are correlated, as a VAE's are); intervals use "
     "Student's t with n − 1 degrees of freedom. "
     "The noise floor tr(Var)/M is what ‖mean − exact‖² is for an unbiased estimator: a bias "
     "below it cannot be resolved at that M. Relaxed estimators (Gumbel-Softmax / Concrete, "
     "straight-through) are biased by design: their bias is expected, not a bug."),
    ("bias against a reference",
     "Where an objective has no exact gradient and the suite asks for one (metrics.reference), "
     "\"exact\" above is a reference gradient: an unbiased estimator (pathwise where it "
     "applies, else REINFORCE with the leave-one-out baseline) averaged over many replicas. "
     "Its own Monte Carlo error is folded in: the noise floor adds tr(Var_ref)/M_ref, and the "
     "test widens each direction's spread by the reference's variance along it, so the test "
     "keeps its level. Tables say which: \"bias against exact\" or the reference with its S "
     "and M."),
    ("which estimator",
     "The ranking: MSE of one gradient estimate = squared bias + total variance; at equal "
     "cost C (the costliest estimator's f evaluations per example), an estimator of cost c "
     "averages C/c estimates, so MSE(C) = bias² + Var·c/C. The best is named only where its "
     "95% interval is below the runner-up's; otherwise the estimators whose intervals reach "
     "the best's tie. MSE at equal time is the same with seconds per estimate (machine-"
     "dependent)."),
    ("NVIL's variance normalisation",
     "nvil (variance_normalization = true, the paper's) divides the whole objective's gradient "
     "by a running estimate of the learning signal's deviation, an analytic KL's gradient "
     "included: its direction is unbiased, its magnitude is not, so it is marked ‡ and its "
     "bias is measured; nvil-False (variance_normalization = false) is unbiased."),
    ("unbiasedness test",
     "The error of each replica projected on the exact gradient's direction and on a fixed "
     "random direction; Hall's skewness-corrected t-test per direction, Bonferroni over the "
     "directions and over seeds. \"biased, p = ...\" when p < 0.01, else \"no bias "
     "detected at M = ...\". Its false-positive rate is measured at about its level on "
     "heavy-tailed and rare-event gradients; a small p for an estimator that should be "
     "unbiased points at a bug."),
    ("conventions",
     "KL: analytic (closed form) or sampled (log p(z) − log q(z) at the sample; Concrete "
     "densities at the relaxed sample for relaxed estimators), or the estimators k2 = "
     "(log r)²/2 and k3 = r − 1 − log r with r = p(z)/q(z), k3 also with its score-function "
     "correction. Direct term: whether the term ∇ log q(z) (z fixed) is kept in a sampled KL "
     "(zero-mean for the sampled KL; no effect with an analytic KL). "
     "Temperature: what the cell ran (a value or a schedule), as recorded in its config. "
     "Statistics: the replicas of the gradient statistics computed vectorized (torch.func.vmap "
     "over shared noise) or in a loop, where the estimator draws its own random numbers "
     "(q.sample() in a plugin): slower, the same statistics of its own draws."),
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
