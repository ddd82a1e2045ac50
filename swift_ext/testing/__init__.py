"""Tiny checkpoint recipes, generated images and videos, tiny-run command lines. Internal package (tests, demos,
benchmarks).
"""
