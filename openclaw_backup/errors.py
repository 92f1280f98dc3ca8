"""Typed errors of openclaw-backup and their stable exit codes.

Errors are classified where they arise and translated into a message and an exit code only at the
CLI boundary. Every error carries a one-line ``message`` and, where we can tell the user what to do,
a ``hint``. The tree::

    BackupError (1)                     anything that stops an operation
    ├── UsageError (2)                  bad options or arguments
    ├── IntegrityError (4)              stored data failed authentication or a consistency check
    ├── RepositoryNotFoundError (10)    no repository at the address
    ├── NotFoundError (10)              a named object / snapshot does not exist
    ├── LockedError (11)                another process holds the repository lock
    ├── WrongPasswordError (12)         no key file opens with the password
    ├── ConflictError (13)              the head moved under us and retries were exhausted
    ├── QuotaError (14)                 the store refuses for now (rate/commit quota); retry later
    ├── StoreError (15)                 the storage failed (I/O, network) — ``transient`` says if a retry may help
    ├── UnsafeRestoreError (16)         the repository asks for something a restore must refuse
    └── NoSpaceError (19)               the destination lacks the space the operation needs

Exit code 3 (:data:`EXIT_INCOMPLETE`) is not an error: the operation finished, but its result holds
less than, or other than, what was asked for (a degraded backup; see its warnings). Exit code 130
is reserved for an interrupt (SIGINT/SIGTERM at the CLI).
"""

from __future__ import annotations


class BackupError(Exception):
    """Base class; ``exit_code`` is the documented process exit status for this error."""

    exit_code = 1

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint


class UsageError(BackupError):
    exit_code = 2


class IntegrityError(BackupError):
    exit_code = 4


class RepositoryNotFoundError(BackupError):
    exit_code = 10


class NotFoundError(BackupError):
    """A named object does not exist (a backend ``get`` of a missing name, an unknown snapshot)."""

    exit_code = 10


class LockedError(BackupError):
    exit_code = 11


class WrongPasswordError(BackupError):
    exit_code = 12


class ConflictError(BackupError):
    exit_code = 13


class QuotaError(BackupError):
    """The store refuses for a while. ``retry_after`` is in seconds when the store said so."""

    exit_code = 14

    def __init__(self, message: str, *, retry_after: float | None = None, hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.retry_after = retry_after


class StoreError(BackupError):
    """The storage failed. ``transient`` errors may succeed when retried; permanent ones won't."""

    exit_code = 15

    def __init__(self, message: str, *, transient: bool = False, hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.transient = transient


class UnsafeRestoreError(BackupError):
    exit_code = 16


class NoSpaceError(BackupError):
    """Refused before starting: the destination does not have the free space the operation needs
    (nothing was changed). Not a usage error: the command was right, the disk is full."""

    exit_code = 19


EXIT_SUCCESS = 0
EXIT_INCOMPLETE = 3
EXIT_INTERRUPTED = 130
