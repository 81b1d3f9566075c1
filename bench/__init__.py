"""Benchmarks of issue 7: `python -m bench.run [--size small|full] [--db sqlite|postgresql|both]`."""
