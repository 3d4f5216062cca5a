"""Measures of a finished run's models, used by evaluate.py."""
