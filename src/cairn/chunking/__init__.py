"""Content-defined chunking: cutting file contents where the content says, not at fixed offsets.

Boundaries depend on the bytes, so inserting a byte in the middle of a file changes only the chunk
around it, and every other chunk deduplicates. The gear table is keyed per repository so chunk
sizes do not fingerprint known files.
"""
