"""Benchmarks against the published region-embedding protocols (not shipped in the plugin)."""
