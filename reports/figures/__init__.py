"""estibench.reports.figures: the figures of a report, one function per figure.

- `standard`: the standard figures' registry `FIGURES` (name, title, caption, function) and
  `draw_all`, which draws every one of them into a report's figures folder;
- `variance`: the gradient-statistics figures: `variance_over_training`, `variance_vs_samples`,
  `encoder_snr_vs_samples`, `bias_variance`;
- `bounds`: the objective's figures: `training_curves`, `tightness`;
- `cost`: the time figures: `efficiency` (variance against time per estimate), `throughput`;
- `paper`: the figures in the style of the papers the reproduction suites follow
  (`PAPER_FIGURES`, by suite name) and `draw_paper_figures`;
- `axes`: what every figure shares: `NoData`, the house `style`, panel grids, labels, log axes,
  the figure legend, the notes of what a figure leaves out, the `RenderedFigure` and
  `SkippedFigure` records and saving;
- `style`: the fixed look (colour, marker, line style) of an estimator label;
- `palette`: the estimator -> colour map a report passes to every figure.
"""
