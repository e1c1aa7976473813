"""The deterministic synthetic dataset: every store's demo and bench data from one seed."""
