"""The shared training engine: command line, devices and strategy, run directory, the distributed loop.

Each model contributes a task (training/gan.py, ...) that owns its models, optimizers and
train step; everything else here is shared by all three generators.
"""
