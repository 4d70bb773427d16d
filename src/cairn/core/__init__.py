"""Core vocabulary shared by every layer: typed IDs, the error root, the clock, crash points.

Nothing here performs I/O or imports a third-party package.
"""
