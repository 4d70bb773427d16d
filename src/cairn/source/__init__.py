"""Reading the file system to back up: walking folders, capturing metadata, opening files.

Paths are bytes throughout, so names that are not valid UTF-8 are backed up byte-exact. Nothing
here writes; errors reading one entry are reported as events, never raised.
"""
