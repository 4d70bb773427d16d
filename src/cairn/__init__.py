"""Cairn: deduplicated, encrypted backups.

The packages are layers, listed bottom to top: ``core``; ``chunking``, ``crypto``, ``format``,
``backends``; ``source``; ``repository``; ``snapshot``; ``backup`` and ``restore``; ``cli``.
A layer imports only from layers below it (checked by import-linter, see pyproject.toml).
"""

__version__ = "0.1.0"
