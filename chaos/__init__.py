"""The chaos suite: `make chaos` (full) or `python -m chaos.run --quick` (CI)."""
