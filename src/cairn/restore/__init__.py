"""Restoring: writing a snapshot, or the part of it selected by patterns, into a target folder.

Every write goes through ``fswriter.SafeTarget``, which works relative to open folder descriptors
and refuses unsafe names, so a crafted snapshot cannot make restore write outside its target.
"""
