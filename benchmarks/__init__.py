"""Reproducible performance runs for imgkit, against baselines measured in the same run.

Run ``python -m benchmarks`` (or ``make bench``); ``--quick`` for a few-minute pass,
``--only throughput,polling`` to pick scenarios. Every figure is a median over repeated runs
with its min-max; targets are ratios against baselines or ideals from the same run, never
absolute timings checked in the test suite. See ``benchmarks/README.md``.
"""
