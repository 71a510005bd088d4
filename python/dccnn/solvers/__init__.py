"""One-layer solvers: the certified dual solver and the primal FISTA baseline."""
