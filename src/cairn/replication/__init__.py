"""Offsite replication (design 17): the server pushes what changed in its tenants' storage to
any number of targets, from a journal of its own saves and removals, never opening an object.

Keyless by contract (pyproject.toml): this package may not import `cairn.repository` or
`cairn.snapshot`. It sits in layer 3 beside `repository` and `notify`; the server (layer 5)
records into its journal and runs it.
"""
