"""Keys, key derivation and authenticated encryption: pure functions over bytes, no I/O.

Only AEAD suites exist (``cairn.crypto.aead.SUITES``); nothing unauthenticated is selectable.
"""
