"""Benchmarks: each prints its ratios side by side in one run and writes JSON (DESIGN.md section 5)."""
