"""Benchmarks of the running daemons, end to end, reusable by the benchmark scripts and the CLI."""
