"""Benchmarks and checks that are run and reported, never timed in tests: python -m benchmarks.<name>."""
