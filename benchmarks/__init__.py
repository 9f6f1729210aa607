"""Benchmarks for launchkit, run as ``python -m benchmarks NAME``; see benchmarks/README.md."""
