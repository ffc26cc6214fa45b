"""Benchmarks: one script per area (python -m benchmarks.<name>); results in BENCHMARKS.md."""
