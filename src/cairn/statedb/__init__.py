"""The local SQLite databases that long-running programs keep beside their data (the server's
database, the agent's job history): one write transaction at a time, and numbered migrations.
Reads and writes files; imports only `cairn.core`.
"""
