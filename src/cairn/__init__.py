"""Cairn: deduplicated, encrypted backups.

The packages are layers, listed bottom to top (design.md section 16):

1. ``core``: IDs, errors, the clock, units, patterns;
2. ``backends``, ``format``, ``crypto``, ``chunking``, ``config``, ``statedb``;
3. ``repository``, ``source``, ``notify``;
4. ``snapshot``;
5. ``backup``, ``restore``, ``server``, ``agent``;
6. ``cli``, the composition root.

A package imports only from layers below its own, never from a sibling in its layer (checked by
import-linter, see pyproject.toml); the repository's internals are private to it.
"""

__version__ = "0.1.0"
