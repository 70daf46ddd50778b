"""Benchmarks for the replicated log: ``python -m bench`` (see bench/README.md)."""
