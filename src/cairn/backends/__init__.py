"""Storage backends: places that keep named byte objects, and nothing else.

A backend knows object kinds and names, never blobs, snapshots or keys. Everything clever
(packing, dedup, encryption, indexes) lives above this contract; everything cross-cutting (retries,
fault injection) is a wrapper that implements the same protocol (``cairn.backends.wrappers``).
"""
