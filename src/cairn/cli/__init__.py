"""The `cairn` command line: the composition root (main.py) and one module per command.

Exit codes and user-facing error codes live here and only here (errors.py, docs/errors.md).
"""
