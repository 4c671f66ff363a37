"""Benchmark suite: load generator, reference servers, scenarios and the runner."""
