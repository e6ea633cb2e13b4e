"""Benchmarks: each module measures one thing, writes `docs/benchmarks/`, and runs as `python -m benchmarks.<name>`."""
