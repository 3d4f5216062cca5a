"""Benchmarks: measured and reported, never asserted in tests. Run `python -m bench`."""
