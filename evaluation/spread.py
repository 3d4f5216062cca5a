"""The mean and spread of one measure over repeated draws: the FID floor over subsets of real digits,
a reproduced experiment over seeds. No TensorFlow, so reproduce.py can use it."""

import statistics


def spread(values):
    """{"n", "mean", "std", "min", "max"} of a list of numbers. std is the sample standard deviation
    (n - 1 in its denominator), 0.0 for a single value."""
    values = [float(value) for value in values]
    return {"n": len(values), "mean": statistics.fmean(values),
            "std": statistics.stdev(values) if len(values) > 1 else 0.0, "min": min(values), "max": max(values)}
