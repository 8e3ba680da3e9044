"""Typed values that cross stage boundaries (fetch -> store -> build)."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime

# Article bodies refer to stored images by this URL scheme; the build rewrites it to a
# path relative to each page (or an absolute mirror URL in feeds).  The sanitizer never
# allows this scheme, so only mirrorkit itself can put it into a body.
MEDIA_SCHEME = "mirrorkit:media/"


def article_id(url: str) -> str:
    """Stable id of an article: the same across runs, mirrors and versions."""
    return hashlib.sha256(url.encode("utf-8")).hexdigest()[:16]


@dataclass(frozen=True)
class Media:
    """An image stored once by content: ``name`` is ``<sha256>.<ext>``."""

    name: str
    sha256: str
    size: int
    media_type: str
    # Pixels, when known (set at fetch for the page's <img>; not kept in the store).
    width: int = 0
    height: int = 0


@dataclass(frozen=True)
class Article:
    id: str
    url: str
    source: str
    title: str
    authors: tuple[str, ...]
    published: datetime | None
    updated: datetime | None
    language: str
    text: str
    html: str
    media: tuple[str, ...] = ()
    summary: str = ""
    seq: int = 0  # arrival number in the store (0 until stored); archive pages group by it

    @property
    def content_hash(self) -> str:
        h = hashlib.sha256()
        for part in (self.title, "\x00".join(self.authors), self.html, self.language):
            h.update(part.encode("utf-8"))
            h.update(b"\x01")
        h.update(str(self.published).encode())
        h.update(str(self.updated).encode())
        return h.hexdigest()

    @property
    def sort_time(self) -> datetime | None:
        return self.published or self.updated
