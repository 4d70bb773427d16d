"""Shipped test support for backends: the conformance suite every backend and wrapper passes.

``cairn.backends.testing.conformance.BackendConformance`` holds one test per obligation of the
Backend protocol; a backend's test file subclasses it and provides a ``backend`` fixture. Fault
injection lives with the other wrappers (``cairn.backends.wrappers.faulty``).
"""
