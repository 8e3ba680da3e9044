"""Every error mirrorkit raises on purpose, in one tree.

::

    MirrorkitError                 what, where, and what to do; exit code 1 unless below
    ├── ConfigError                bad config file, key or value (exit 2)
    ├── KeyFileError               missing, unreadable or wrong secret/public key (exit 2)
    │   └── KeyLockedError         the secret key is encrypted and no passphrase was given
    ├── UsageError                 a command's argument is wrong, e.g. no such path (exit 2)
    ├── FetchError                 a source or article could not be fetched or read
    │   ├── BlockedAddressError    a URL resolves to a private or link-local address
    │   └── SourceError            a feed or page that is broken or unreadable
    ├── StoreError                 the state directory or database is unusable
    │   └── StateError             the state in object storage could not be read or written
    │       └── LeaseError         another run holds the state's lease, or took it over
    ├── BuildError                 rendering or writing the bundle failed
    ├── PublishError               a mirror could not be brought to the new version
    │   └── PublishConflictError   another publisher changed the mirror meanwhile: it won
    └── VerifyError                a target could not be verified at all
        └── TargetUnreachableError the target could not be read (exit 3 for verify)

Library errors (aiohttp, botocore, sqlite3, OSError) are wrapped where they cross into
mirrorkit with ``raise ... from e``.  Whether an error is worth retrying is decided in one
place: :attr:`MirrorkitError.retryable`.

No message ever carries a secret: keys and credentials are named by where they come
from (file path, config key, environment variable), never by value.
"""

from __future__ import annotations


class MirrorkitError(Exception):
    """Base of all mirrorkit errors.  ``str(e)`` is one line: what, where, what to do."""

    exit_code = 1
    retryable = False

    def __init__(self, message: str, *, where: str | None = None, hint: str | None = None):
        self.what = message
        self.where = where
        self.hint = hint
        super().__init__(self._line())

    def _line(self) -> str:
        text = f"{self.where}: {self.what}" if self.where else self.what
        if self.hint:
            text += f" ({self.hint})"
        return printable(" ".join(text.split()))


def printable(text: str) -> str:
    """``text`` with every control, format (bidi) and separator character shown as its
    escape (``\\x1b``, ``\\u202e``): names and addresses come from hostile copies and
    servers, and one carrying a carriage return or a terminal escape could otherwise
    rewrite the lines above it or hide the verdict below it."""
    return "".join(c if c.isprintable() else ascii(c)[1:-1] for c in text)


class ConfigError(MirrorkitError):
    exit_code = 2


class KeyFileError(MirrorkitError):
    exit_code = 2


class KeyLockedError(KeyFileError):
    pass


class UsageError(MirrorkitError):
    exit_code = 2


class FetchError(MirrorkitError):
    pass


class BlockedAddressError(FetchError):
    pass


class SourceError(FetchError):
    pass


class StoreError(MirrorkitError):
    pass


class StateError(StoreError):
    pass


class LeaseError(StateError):
    """Another run holds the lease on the state in object storage (or took it over from
    this one): this run changes nothing there."""


class BuildError(MirrorkitError):
    pass


class PublishError(MirrorkitError):
    def __init__(
        self,
        message: str,
        *,
        where: str | None = None,
        hint: str | None = None,
        retryable: bool = False,
    ):
        super().__init__(message, where=where, hint=hint)
        self.retryable = retryable


class PublishConflictError(PublishError):
    """Another publisher changed the mirror's manifest while this one was publishing: it
    won.  Nothing it may need is removed; the next run starts from what it published."""


class VerifyError(MirrorkitError):
    pass


class TargetUnreachableError(VerifyError):
    exit_code = 3
