"""Core vocabulary shared by every layer: typed IDs, the error root, the clock, units, path names
and patterns, loopback addresses, the progress protocol, and crash points.

Core imports nothing of ours and nothing third-party (import-linter checks both). It is pure
computation over its arguments, with two deliberate exceptions every layer needs: `clock` reads
the system time (behind the `Clock` protocol, so callers take it as a parameter), and
`crashpoints` may, only when a test harness asks through the environment, append to a trace file
or signal its own process. Beside it, not in it: `cairn.config` (checking configuration
tables), `cairn.statedb` (local SQLite databases, which read and write files).
"""
