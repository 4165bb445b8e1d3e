"""Benchmarks run by `make bench` (`python -m benchmarks`).

Each module in `BENCHMARKS` has a `DESCRIPTION` and `run(repeat) -> dict` returning `rows` (one dict per measured
case, printed as a table) plus any summary values (e.g. `ratio`). Every benchmark measures its baseline in the
same run, so that the ratio holds on a noisy machine; absolute times are for information only.
"""
BENCHMARKS = ["pipeline_overhead", "time_to_quality", "quality_seeds"]  # modules run by `python -m benchmarks`, in this order
