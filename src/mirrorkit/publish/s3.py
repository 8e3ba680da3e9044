"""One backend for every S3-compatible store; vendor quirks are data (``providers.toml``).

A mirror names its vendor with ``provider`` (default ``generic``); the preset decides
the addressing style, how boto3 computes checksums, and whether conditional writes are
available.  Adding a vendor is a table in ``providers.toml``, not code.

Guarantees:

- every upload carries Content-MD5, so the store rejects bytes damaged on the way — what
  the manifest lists is what the mirror serves;
- objects get a Content-Type and a Cache-Control (long and immutable for content, short
  for pointers that a publish replaces in place);
- the client retries throttling, 5xx and connection errors itself (botocore "standard"
  mode) with bounded connect and read timeouts, so a dead endpoint fails in bounded time;
- anything left over becomes :class:`~mirrorkit.errors.PublishError` naming the mirror
  and the object, never the credentials.

Objects are not given ACLs (many stores reject them): public reading is the bucket's
setting, made once by ops as each preset's ``notes`` say.
"""

from __future__ import annotations

import base64
import hashlib
import re
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any

import boto3
from botocore.awsrequest import AWSRequest
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from mirrorkit.config import MirrorConfig
from mirrorkit.errors import ConfigError, PublishError
from mirrorkit.publish.base import (
    CACHE_CONTROL,
    CONDITIONAL_WRITE,
    CONTENT_TYPE,
    DELETE,
    LIST,
    Backend,
    ObjectInfo,
    check_limit,
    conflict,
    describe,
    is_retryable_code,
    md5_hex,
    publish_error,
)
from mirrorkit.publish.providers import provider

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client
    from mypy_boto3_s3.type_defs import HeadObjectOutputTypeDef, ObjectIdentifierTypeDef

DELETE_BATCH = 1000  # the most keys one DeleteObjects request may name


def _md5(data: bytes) -> str:
    # MD5 here is the S3 integrity check (Content-MD5), not a security measure.
    return base64.b64encode(hashlib.md5(data, usedforsecurity=False).digest()).decode()


def _legacy_checksum(request: AWSRequest, **_: Any) -> None:
    """Send Content-MD5 instead of boto3's CRC32 where a checksum is mandatory.

    DeleteObjects must carry a checksum.  Since boto3 1.36 that is an x-amz-checksum-crc32
    header even with ``when_required``; stores that predate flexible checksums want the
    Content-MD5 that every S3 implementation understands.
    """
    for header in list(request.headers.keys()):
        lower = header.lower()
        if lower.startswith("x-amz-checksum-") or lower == "x-amz-sdk-checksum-algorithm":
            del request.headers[header]
    if isinstance(request.body, bytes):
        request.headers["Content-MD5"] = _md5(request.body)


class S3Backend(Backend):
    """A bucket (and optional key prefix) on any S3-compatible store.

    ``max_attempts`` and the timeouts bound how long one request may take in total; tests
    lower them to make an unreachable endpoint fail fast.
    """

    def __init__(
        self,
        mirror: MirrorConfig,
        *,
        concurrency: int = 8,
        max_attempts: int = 5,
        connect_timeout: float = 10.0,
        read_timeout: float = 60.0,
    ):
        self.name = mirror.name
        if not mirror.bucket:
            raise ConfigError('required for type "s3"', where=f"mirror {mirror.name}: bucket")
        self.bucket = mirror.bucket
        self.prefix = mirror.prefix.strip("/")
        self.provider = provider(mirror.provider, mirror=mirror.name)
        caps = {LIST, DELETE, CONTENT_TYPE, CACHE_CONTROL}
        if self.provider.conditional_writes:
            caps.add(CONDITIONAL_WRITE)
        self.capabilities = frozenset(caps)

        config = Config(
            retries={"mode": "standard", "max_attempts": max_attempts},
            connect_timeout=connect_timeout,
            read_timeout=read_timeout,
            # One connection per worker thread, so uploads never queue for a socket.
            max_pool_connections=max(concurrency, 10),
            s3={"addressing_style": self.provider.addressing_style},
            request_checksum_calculation=self.provider.checksums,
            response_checksum_validation=self.provider.checksums,
            user_agent_extra="mirrorkit",
        )
        # A session per backend: boto3's default session is shared and not thread-safe.
        # With no keys given, the session falls back to boto3's credential chain.
        session = boto3.session.Session(
            aws_access_key_id=mirror.access_key_id,
            aws_secret_access_key=mirror.secret_access_key,
            region_name=mirror.region,
        )
        try:
            self._client: S3Client = session.client(
                "s3", endpoint_url=mirror.endpoint_url, config=config
            )
        except (BotoCoreError, ValueError) as e:
            raise ConfigError(
                f"cannot set up the S3 client: {describe(e)}", where=f"mirror {mirror.name}",
                hint="check endpoint_url and region",
            ) from e
        if self.provider.checksums == "when_required":
            self._client.meta.events.register(
                "before-sign.s3.DeleteObjects", _legacy_checksum
            )

    def __repr__(self) -> str:
        return f"S3Backend({self.name!r}, bucket={self.bucket!r}, prefix={self.prefix!r})"

    def key(self, path: str) -> str:
        return f"{self.prefix}/{path}" if self.prefix else path

    def close(self) -> None:
        self._client.close()

    def put(self, path: str, data: bytes, media_type: str, *, cache: str,
            if_match: str | None = None, if_absent: bool = False) -> str:
        conditions: dict[str, str] = {}
        if if_match is not None or if_absent:
            if CONDITIONAL_WRITE in self.capabilities:
                conditions = {"IfMatch": f'"{if_match}"'} if if_match else {"IfNoneMatch": "*"}
            elif self.tag(path) != if_match:  # the weaker fallback: look, then write
                raise conflict(self.name, path)
        try:
            self._client.put_object(
                Bucket=self.bucket,
                Key=self.key(path),
                Body=data,
                ContentType=media_type,
                CacheControl=cache,
                ContentMD5=_md5(data),
                **conditions,  # type: ignore[arg-type]
            )
        except ClientError as e:
            status = e.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
            if conditions and status in (409, 412):
                raise conflict(self.name, path) from e
            raise publish_error(self.name, f"upload {path}", e) from e
        except BotoCoreError as e:
            raise publish_error(self.name, f"upload {path}", e) from e
        return md5_hex(data)

    def tag(self, path: str) -> str | None:
        response = self._head(path)
        return None if response is None else str(response.get("ETag", "")).strip('"')

    def get(self, path: str, *, limit: int | None = None) -> bytes | None:
        try:
            response = self._client.get_object(Bucket=self.bucket, Key=self.key(path))
            with response["Body"] as body:
                data: bytes = body.read() if limit is None else body.read(limit + 1)
            return check_limit(self.name, path, data, limit)
        except ClientError as e:
            if _missing(e):
                return None
            raise publish_error(self.name, f"download {path}", e) from e
        except BotoCoreError as e:
            raise publish_error(self.name, f"download {path}", e) from e

    def head(self, path: str) -> ObjectInfo | None:
        response = self._head(path)
        return None if response is None else ObjectInfo(path, response["ContentLength"])

    def _head(self, path: str) -> HeadObjectOutputTypeDef | None:
        try:
            return self._client.head_object(Bucket=self.bucket, Key=self.key(path))
        except ClientError as e:
            if _missing(e):
                return None
            raise publish_error(self.name, f"look up {path}", e) from e
        except BotoCoreError as e:
            raise publish_error(self.name, f"look up {path}", e) from e

    def list(self) -> Iterator[ObjectInfo]:
        start = f"{self.prefix}/" if self.prefix else ""
        pages = self._client.get_paginator("list_objects_v2").paginate(
            Bucket=self.bucket, Prefix=start
        )
        try:
            for page in pages:
                for obj in page.get("Contents", []):
                    path = obj["Key"][len(start):]
                    # Empty keys ending in "/" are "folder" markers some consoles create;
                    # a page at the outlet's own path may end in "/" too (``news/story/``).
                    if path and not (path.endswith("/") and obj["Size"] == 0):
                        yield ObjectInfo(path, obj["Size"], _md5_of(obj.get("ETag")))
        except (BotoCoreError, ClientError) as e:
            raise publish_error(self.name, f"list bucket {self.bucket}", e) from e

    def delete(self, paths: Sequence[str]) -> None:
        for first in range(0, len(paths), DELETE_BATCH):
            batch = paths[first:first + DELETE_BATCH]
            objects: list[ObjectIdentifierTypeDef] = [{"Key": self.key(p)} for p in batch]
            try:
                response = self._client.delete_objects(
                    Bucket=self.bucket, Delete={"Objects": objects, "Quiet": True}
                )
            except (BotoCoreError, ClientError) as e:
                raise publish_error(self.name, f"delete {len(batch)} objects", e) from e
            # DeleteObjects answers 200 even when some keys failed; they are listed here.
            errors = response.get("Errors", [])
            if errors:
                code = errors[0].get("Code", "error")
                raise PublishError(
                    f"cannot delete {len(errors)} objects, e.g. {errors[0].get('Key')}: {code}",
                    where=f"mirror {self.name}",
                    retryable=is_retryable_code(code, None),
                )


def _missing(error: ClientError) -> bool:
    """A 404 for the object itself — not for the bucket, which is a configuration error."""
    code = error.response.get("Error", {}).get("Code")
    status = error.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
    return code in ("NoSuchKey", "404", "NotFound") or (status == 404 and code != "NoSuchBucket")


_MD5 = re.compile(r"^[0-9a-f]{32}$")


def _md5_of(etag: str | None) -> str | None:
    """An ETag that is a plain MD5 (a single PUT's), else None (multipart: "<md5>-<n>")."""
    tag = (etag or "").strip('"').lower()
    return tag if _MD5.match(tag) else None
