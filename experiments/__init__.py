"""Scripts that regenerate every figure and table under experiments/results/."""
