"""Repository errors.

```
RepositoryError
├── RepositoryNotFound       nothing at that location: check the path, or run init
├── RepositoryExists         init on a location that already holds a repository
├── NotARepository           something is there, but not a Cairn repository (or a damaged config)
├── WrongPassword            no key object opens with this passphrase
├── KeyError_                key management refused (last key, unknown key)
├── SnapshotNotFound         no snapshot matches the given ID or alias
└── ObjectMissing            an object the repository refers to is not in storage
```
"""

from cairn.core.errors import CairnError, IntegrityError


class RepositoryError(CairnError):
    """A repository-level failure."""


class RepositoryNotFound(RepositoryError):
    """There is no repository at the location."""


class RepositoryExists(RepositoryError):
    """A repository already exists at the location."""


class NotARepository(RepositoryError):
    """The location holds something that is not a readable Cairn repository."""


class WrongPassword(RepositoryError):
    """No key object of the repository opens with the given passphrase."""


class KeyManagementError(RepositoryError):
    """A key operation was refused (for example removing the last key)."""


class SnapshotNotFound(RepositoryError):
    """No snapshot matches."""


class ObjectMissing(IntegrityError):
    """An object that the repository refers to is missing from storage."""
