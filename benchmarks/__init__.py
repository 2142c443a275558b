"""Performance measurements against plain-PyTorch baselines; run them with ``make bench``."""
