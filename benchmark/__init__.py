"""HeTu's benchmark suite: ``python -m benchmark --help``; see docs/benchmarks.md."""
