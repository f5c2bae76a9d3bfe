"""An hpo user project: a residual MLP of its own, tuned on three interleaved spirals it ships."""
