"""Backends that wrap another backend to add one behaviour, implementing the same protocol.

``RetryingBackend`` retries transient failures with backoff; ``RateLimitedBackend`` holds uploads
to a rate (a token bucket shared by the process's threads); ``FaultyBackend`` injects failures,
short reads and incomplete or lying listings for tests. Wrappers are stacked in one place, where
the backend is opened, and every wrapper passes the conformance suite (``cairn.backends.testing``).
"""
