"""The storage interface every mirror backend implements, and its error boundary.

A backend stores bytes under site-relative paths (``articles/x/index.html``) below one
site root: a directory, or a bucket plus an optional key prefix.  The interface is
deliberately small — put, get, head, list, delete — so that a new kind of mirror is a
short class plus a conformance run (``tests/test_backends.py``).  What a backend can do
beyond storing bytes is declared in :attr:`Backend.capabilities`, never probed with
``hasattr``.

Backends are synchronous and must be safe to call from several threads at once: the
publish stage runs uploads in a thread pool.

Errors: every library error (botocore, OSError) is turned into
:class:`~mirrorkit.errors.PublishError` by :func:`publish_error`, which names the mirror
and the object and decides — in this one place — whether retrying could help.  Messages
never carry credentials: they are built from error codes and statuses, not from requests.
"""

from __future__ import annotations

import errno
import hashlib
from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from types import TracebackType

from botocore.exceptions import ClientError, HTTPClientError
from botocore.exceptions import ConnectionError as BotoConnectionError

from mirrorkit.errors import PublishConflictError, PublishError

# Capability names a backend may declare.
LIST = "list"                    # list() enumerates the site root
DELETE = "delete"                # delete() removes objects
CONTENT_TYPE = "content_type"    # put() stores the media type and serves it back
CACHE_CONTROL = "cache_control"  # put() stores a Cache-Control header
CONDITIONAL_WRITE = "conditional_write"  # the store honours If-Match/If-None-Match on PUT

CACHE_IMMUTABLE = "public, max-age=31536000, immutable"


def cache_control(max_age: int | None) -> str:
    """Cache-Control for a file: for good if its name carries its content (None), else
    ``max_age`` seconds."""
    return CACHE_IMMUTABLE if max_age is None else f"public, max-age={max_age}"


def md5_hex(data: bytes) -> str:
    return hashlib.md5(data, usedforsecurity=False).hexdigest()


def conflict(mirror: str, path: str) -> PublishConflictError:
    return PublishConflictError(
        f"another publisher changed {path} during this publish: it won",
        where=f"mirror {mirror}",
        hint="nothing it needs was removed; run again to publish on top of its version, "
             "and let one publisher (one state directory) own each mirror",
    )


def check_limit(mirror: str, path: str, data: bytes, limit: int | None) -> bytes:
    """``data`` read with ``limit + 1`` bytes at most; more than ``limit`` is an error."""
    if limit is not None and len(data) > limit:
        raise PublishError(f"{path} is larger than the {limit} bytes expected",
                           where=f"mirror {mirror}")
    return data


@dataclass(frozen=True)
class ObjectInfo:
    path: str
    size: int
    # The store's own MD5 of the content where its listing gives one (an S3 ETag of a
    # single PUT); None where it does not, or where it is not an MD5 (multipart uploads).
    md5: str | None = None


class Backend(ABC):
    """One mirror's storage.  Paths are site-relative and already checked to be safe."""

    name: str
    capabilities: frozenset[str]

    @abstractmethod
    def put(self, path: str, data: bytes, media_type: str, *, cache: str,
            if_match: str | None = None, if_absent: bool = False) -> str:
        """Store ``data`` at ``path``, replacing what is there; readers see old or new.
        ``cache`` is the Cache-Control value, for backends that serve one.  Returns the
        object's tag (the MD5 of ``data``, as S3 ETags of single PUTs are).

        The commit's conditions: with ``if_match`` the write happens only if the object's
        tag is that one, with ``if_absent`` only if there is no object; otherwise
        :class:`~mirrorkit.errors.PublishConflictError`.  Backends with the
        ``conditional_write`` capability decide this atomically in the store; the others
        look first, which leaves a short race."""

    @abstractmethod
    def tag(self, path: str) -> str | None:
        """The object's tag (see :meth:`put`), or None if there is no such object."""

    @abstractmethod
    def get(self, path: str, *, limit: int | None = None) -> bytes | None:
        """The object's bytes, or None if there is no such object.  With ``limit``, an
        object larger than that raises :class:`PublishError` (and no more is read)."""

    @abstractmethod
    def head(self, path: str) -> ObjectInfo | None:
        """The object's size, or None if there is no such object."""

    @abstractmethod
    def list(self) -> Iterator[ObjectInfo]:
        """Every object under the site root, with paths relative to it."""

    @abstractmethod
    def delete(self, paths: Sequence[str]) -> None:
        """Remove these objects; paths that do not exist are not an error."""

    @contextmanager
    def publishing(self) -> Iterator[None]:
        """Held for a whole publish.  Backends without conditional writes in the store
        (directories) take a lock here, so a second publisher fails at once."""
        yield

    def discard_partial_writes(self) -> None:  # noqa: B027 - optional hook
        """Remove what writes killed part-way left behind (never anything under the site
        root that a reader could see).  Publish calls it once before its first upload, on
        real runs only; no other write of this mirror is running then."""

    def close(self) -> None:  # noqa: B027 - optional hook; most backends hold nothing
        """Release connections; the backend is unusable afterwards."""

    def __enter__(self) -> Backend:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


# -- the error boundary -------------------------------------------------------------------

# S3 error codes that mean "the service is busy or hiccupped", whatever the HTTP status.
_RETRYABLE_CODES = frozenset({
    "SlowDown", "Throttling", "ThrottlingException", "RequestLimitExceeded",
    "TooManyRequests", "RequestTimeout", "RequestTimeTooSkewed", "InternalError",
    "ServiceUnavailable", "OperationAborted",
})
_RETRYABLE_STATUSES = frozenset({408, 429, 500, 502, 503, 504})
_RETRYABLE_ERRNOS = frozenset({errno.EAGAIN, errno.EBUSY, errno.EINTR})


def is_retryable_code(code: str | None, status: int | None) -> bool:
    """Whether an S3 error code or HTTP status means "busy or hiccupped, try again"."""
    return code in _RETRYABLE_CODES or status in _RETRYABLE_STATUSES


def is_retryable(error: BaseException) -> bool:
    """Whether the same request could succeed later: throttling, 5xx, network, timeouts."""
    if isinstance(error, ClientError):
        info = error.response.get("Error", {})
        status = error.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        return is_retryable_code(info.get("Code"), status)
    if isinstance(error, HTTPClientError | BotoConnectionError | TimeoutError | ConnectionError):
        return True  # connection refused/reset/closed, connect and read timeouts
    if isinstance(error, OSError):
        return error.errno in _RETRYABLE_ERRNOS
    return False


def describe(error: BaseException) -> str:
    """A one-line, credential-free account of a library error."""
    if isinstance(error, ClientError):
        info = error.response.get("Error", {})
        status = error.response.get("ResponseMetadata", {}).get("HTTPStatusCode", "?")
        code = info.get("Code", "error")
        message = info.get("Message", "")
        # The server's message text is short and fixed by the protocol; requests, signed
        # headers and keys are never part of it.
        return f"{code} (HTTP {status}){': ' + message[:200] if message else ''}"
    if isinstance(error, OSError) and error.strerror:
        return f"{error.strerror} (errno {error.errno})"
    return f"{type(error).__name__}: {error}"


def publish_error(mirror: str, action: str, error: BaseException) -> PublishError:
    """Wrap a library error met while doing ``action`` (e.g. "upload x.html") on a mirror.

    Use as ``raise publish_error(...) from e``.
    """
    retryable = is_retryable(error)
    return PublishError(
        f"cannot {action}: {describe(error)}",
        where=f"mirror {mirror}",
        hint="temporary; the next run retries" if retryable else None,
        retryable=retryable,
    )
