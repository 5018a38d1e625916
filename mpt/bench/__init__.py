"""Benchmarks that train real models and write tables to docs/results/."""
