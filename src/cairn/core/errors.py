"""The root of Cairn's exception tree.

```
CairnError
├── FormatError              bytes that do not decode as the expected object
│   └── UnsupportedFormat    a format version this build does not know
├── IntegrityError           bytes that decode but fail a hash or an AEAD tag
├── BackendError             (cairn.backends.errors) storage failures
├── RepositoryError          (cairn.repository.errors) repository-level failures
└── SourceError              (cairn.source) problems reading the files to back up
```

The CLI maps each class to a documented exit code and error code (docs/errors.md). The class
says what a caller should do: an IntegrityError is never retried, a transient backend error is.
"""


class CairnError(Exception):
    """Base of every error Cairn raises on purpose."""


class FormatError(CairnError):
    """Bytes that do not decode as the object they claim to be."""


class UnsupportedFormat(FormatError):
    """A format version this build does not know; refuse rather than guess."""


class IntegrityError(CairnError):
    """Data failed verification: a hash mismatch, a bad AEAD tag, a wrong chunk ID."""
