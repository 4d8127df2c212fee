"""Tools that run on a finished experiment: the ablation grid and single-trial verification."""
