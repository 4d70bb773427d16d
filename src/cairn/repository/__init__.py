"""The repository: keys, packing, the index, and storing and fetching blobs and snapshots.

It turns the Backend's named byte objects into a deduplicated, encrypted store, and enforces the
write ordering of design.md section 5: packs, then indexes, then reflists, then the snapshot.
"""
