"""The sample outlet's content: fictional articles and images, loaded from ``articles.json``.

All text was written for mirrorkit (no real news).  Dates are fixed relative to
:data:`BASE_DATE`, and images are drawn from seeds, so every run serves the same bytes.
Russian articles carry the encoding their page is served in (see :mod:`.outlet`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from functools import cache
from importlib import resources
from typing import Any

from mirrorkit.sample.png import sample_png

BASE_DATE = datetime(2026, 11, 1, 9, 0, tzinfo=UTC)
ENCODINGS = ("utf-8", "windows-1251", "koi8-r")


@dataclass(frozen=True)
class SampleImage:
    name: str
    seed: int
    alt: str
    caption: str

    @property
    def path(self) -> str:
        return f"images/{self.name}.png"

    @property
    def data(self) -> bytes:
        return _png(self.seed)


@dataclass(frozen=True)
class SampleArticle:
    """One article as the outlet serves it; ``url`` is set once the server has a port."""

    slug: str
    title: str
    authors: tuple[str, ...]
    published: datetime
    language: str
    summary: str
    paragraphs: tuple[str, ...]
    images: tuple[str, ...] = ()
    encoding: str = "utf-8"
    updated: datetime | None = None
    url: str = field(default="", compare=False)
    # Where the outlet serves it, when not at ``articles/<slug>.html``: dated,
    # extensionless, trailing-slash, percent-encoded Cyrillic and query paths, as real
    # outlets have (mirrors serve every article at its outlet's path too).
    route: str = ""

    @property
    def path(self) -> str:
        """The URL path (relative to the outlet's root, percent-encoded, maybe a query)."""
        return self.route or f"articles/{self.slug}.html"

    @property
    def modified(self) -> datetime:
        return self.updated or self.published

    def at(self, base_url: str) -> SampleArticle:
        """This article with ``url`` absolute under ``base_url`` (which ends in ``/``)."""
        return replace(self, url=base_url + self.path)


@cache
def _png(seed: int) -> bytes:
    return sample_png(seed)


@cache
def _load() -> dict[str, Any]:
    text = resources.files(__package__).joinpath("articles.json").read_text("utf-8")
    data: dict[str, Any] = json.loads(text)
    return data


def _time(value: str) -> datetime:
    return datetime.fromisoformat(value).astimezone(UTC)


def sample_images() -> dict[str, SampleImage]:
    return {
        name: SampleImage(name, entry["seed"], entry["alt"], entry["caption"])
        for name, entry in _load()["images"].items()
    }


@cache
def sample_articles() -> tuple[SampleArticle, ...]:
    """All sample articles, newest first, with ``url`` unset."""
    articles = [
        SampleArticle(
            slug=entry["slug"],
            title=entry["title"],
            authors=tuple(entry["authors"]),
            published=_time(entry["published"]),
            language=entry["language"],
            summary=entry["summary"],
            paragraphs=tuple(entry["paragraphs"]),
            images=tuple(entry["images"]),
            encoding=entry["encoding"],
            route=entry.get("path", ""),
        )
        for entry in _load()["articles"]
    ]
    return tuple(sorted(articles, key=lambda a: a.published, reverse=True))
