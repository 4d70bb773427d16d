"""Backing up: walk the sources, cut and store their contents, build trees, commit a snapshot.

The pipeline (design.md section 7) keeps both cores busy: the walker runs in the calling thread,
file contents are chunked, hashed, compressed and sealed by a worker pool, and directory trees are
assembled bottom-up by a finalizer thread as soon as their children are done.
"""
