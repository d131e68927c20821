"""Benchmarks of sigma-load against the limits of the machine (`python -m benchmarks`).

Every figure is a ratio against a baseline measured in the same run, on the same data, with
medians of several runs: these machines are shared and noisy. Not part of `make test`.
"""
