"""The backup server: many tenants' repositories behind one authenticated HTTP service.

It never holds a key. It stores the same objects a local repository holds, one local-backend
layout per tenant, checks that every object's bytes hash to its name, and enforces roles and
quotas. Its own state (tenants, tokens, usage, arrivals, audit log) lives in SQLite. The wire
protocol is docs/wire-protocol.md; the design is docs/design.md section 14.
"""
