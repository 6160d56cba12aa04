"""Benchmarks of qextract against the baselines a user would otherwise reach for.

Run everything with ``python -m benchmarks.run`` (or ``python benchmarks/run.py``);
see :mod:`benchmarks.run` and ``benchmarks/RESULTS.md``. Every ratio is measured
in one process, alternating qextract and its baseline, because the machine is
shared and noisy: a number from another run is never a baseline.
"""
