"""Backends that wrap another backend to add one behaviour, implementing the same protocol.

``RetryingBackend`` retries transient failures with backoff; ``RateLimitedBackend`` holds uploads
to a rate (a token bucket shared by the process's threads); ``FaultyBackend`` injects failures,
short reads and incomplete or lying listings for tests. Wrappers are stacked where the backend
is opened: for a client, where the CLI opens its repository; for the server's tenants, in
``cairn.server.tenantstore`` (accounting and quota, the one stack of every route and the
janitor). Every wrapper passes the conformance suite (``cairn.backends.testing``).
"""
