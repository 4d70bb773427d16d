"""Robustness: the repository survives kill -9 at every durable step (RELIABILITY.md R1)."""
