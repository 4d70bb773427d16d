"""Configuration files of the programs that run on a machine (the agent's file, the server's
notification file): a parsed TOML table checked key by key, so that an error names the file, the
key and what is allowed. Imports only `cairn.core`; the callers read the files.
"""
