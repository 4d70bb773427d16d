"""The root of Cairn's exception tree.

```
CairnError
├── FormatError              bytes that do not decode as the expected object
│   └── UnsupportedFormat    a format version this build does not know
├── IntegrityError           bytes that decode but fail a hash or an AEAD tag
├── BackendError             (cairn.backends.errors) storage failures
├── RepositoryError          (cairn.repository.errors) repository-level failures
├── NotifyError              (cairn.notify.errors) a message that could not be sent
├── ServerError              (cairn.server.errors) a request the server refuses
└── …                        one class per condition a caller must tell apart (PolicyError,
                             ConfigError, PatternError, UsageError…), each in its layer
```

Problems reading the files to back up are not exceptions: the source layer reports them as
events, the archiver records them per file, and a backup that met them ends as partial.

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
