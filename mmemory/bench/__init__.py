"""Benchmarks, run as `python -m mmemory.bench <name> [options]`. Each <name> is a module here with `main(argv)`."""
