"""On-disk formats: bytes in, objects out, versioned (docs/design.md section 3).

Pure functions over bytes. Every decoder bounds what it allocates and raises FormatError (or
UnsupportedFormat) on anything it does not expect.
"""
