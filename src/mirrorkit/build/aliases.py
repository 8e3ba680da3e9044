"""The outlet's own paths on the mirrors: where a host-swapped origin link lands.

A reader holds ``https://outlet.example/2026/11/28/some-story-a12345`` from a message or
a search result; replacing the host with a mirror's address must open the article.  So
every article is also written at its origin path, in the mirror's own way:

- ``key`` style (object storage): an object at exactly the decoded path, served as
  ``text/html``; a key may have no extension or end in ``/``;
- ``dir`` style (directory mirrors, offline copies): ``PATH/index.html`` for a path
  without a ``.html`` file name, which web servers serve for ``PATH`` and ``PATH/``.

The query string is dropped (``?utm_source=…``), but an article whose query carries more
than tracking (``story.php?id=31``) is identified by it, and a mirror cannot tell such
articles apart by path: it is *not host-swappable*.  So are paths that are unsafe or
clash with the site's own files, and a path two articles claim (the same path with
another query or host): the first holder loses it too, since a link could mean either.
Each is reported and the article stays at its canonical page only.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from urllib.parse import parse_qsl, unquote, urlsplit

from mirrorkit.manifest import check_path

KEY = "key"
DIR = "dir"
# A mirror type's style; types not listed (none today) get no aliases.
STYLES = {"s3": KEY, "local": DIR}
HTML = "text/html; charset=utf-8"

# The site's own files, by the names it gives them: an origin path there would replace
# one.  Folders only the site uses are reserved whole; in ``articles/``, ``archive/`` and
# ``media/``, which outlets use too, only the site's own kind of name.  Names are compared
# case-folded: a directory mirror or an unpacked offline copy on a case-insensitive file
# system (Windows, macOS) holds ``Parts/`` and ``parts/`` in one folder.
_OWN_FOLDERS = frozenset({"parts", "signatures", "sitemaps"})
_OWN_NAME = re.compile(
    r"^(?:articles/[a-z0-9-]*[0-9a-f]{16}(?:/.*)?|archive/(?:index|\d{4,})\.html"
    r"|media/[0-9a-f]{64}\..*)$", re.IGNORECASE)
_OWN_FILE = re.compile(r"^(?:index\.html?|mirrors\..*|manifest\.json.*|rss\.xml|atom\.xml"
                       r"|sitemap.*\.xml|style\..*\.css|favicon\..*|robots\.txt|offline.*|"
                       r"verify.*)$", re.IGNORECASE)
# What every mirror can hold: file systems take names of at most 255 bytes and S3 keys of
# 1024, and a directory mirror adds "/index.html", a bucket perhaps a prefix.
MAX_NAME_BYTES = 200
MAX_KEY_BYTES = 800
# Names Windows cannot hold (devices, a trailing dot, which it drops): an offline copy
# unpacked there would lose the page, or put it where another is.
_NOT_ON_WINDOWS = re.compile(r"^(?:(?:con|prn|aux|nul|com\d|lpt\d)(?:\..*)?|.*\.)$",
                             re.IGNORECASE)
_FILE_PAGE = re.compile(r"\.html?$", re.IGNORECASE)
# Query parameters that only say where a reader came from.
_TRACKING = re.compile(r"^(?:utm_.*|fbclid|gclid|yclid|mc_cid|mc_eid|ref|ref_src|_ga)$")


@dataclass(frozen=True)
class NotSwappable:
    """Why an article has no page at its origin path."""

    url: str
    reason: str


def group(style: str) -> str:
    """The files table's name for one style's aliases (mirror names cannot start so)."""
    return f"~{style}"


def origin_key(url: str) -> str | NotSwappable:
    """The decoded path (``ru/новости/``) of ``url`` below its host, without the query."""
    try:
        parts = urlsplit(url)
        query = parse_qsl(parts.query, keep_blank_values=True)
        key = unquote(parts.path, errors="strict").removeprefix("/")
    except (ValueError, UnicodeDecodeError):
        return NotSwappable(url, "its path is not valid UTF-8")
    if "%2f" in parts.path.lower():  # a slash inside a name: servers disagree on it
        return NotSwappable(url, "its path has characters or segments a mirror cannot hold")
    if any(not _TRACKING.match(name) for name, _ in query):
        return NotSwappable(url, "identified by its query string, which a mirror's path"
                                 " cannot carry")
    if not key or key == "/":
        return NotSwappable(url, "it has no path of its own")
    try:
        check_path(key)
    except ValueError:
        return NotSwappable(url, "its path has characters or segments a mirror cannot hold")
    if any(_NOT_ON_WINDOWS.match(name) for name in key.split("/")):
        return NotSwappable(url, "its path has characters or segments a mirror cannot hold")
    if (len(key.encode()) > MAX_KEY_BYTES
            or any(len(name.encode()) > MAX_NAME_BYTES for name in key.split("/"))):
        return NotSwappable(url, "its path is longer than a mirror can hold")
    if own_path(key):
        return NotSwappable(url, "its path clashes with the site's own files")
    return key


def own_path(path: str) -> bool:
    """Whether ``path`` (an origin path, or where a mirror holds it) is, or on a
    case-insensitive file system would be, the place of one of the site's own files."""
    folded = unicodedata.normalize("NFKC", path).casefold()
    first = folded.split("/", 1)[0]
    # A site file's name as a folder ("rss.xml/x") is a folder where a directory mirror
    # holds that file: it could write neither.
    alone = "/" not in folded.removesuffix("/")
    return bool(first in _OWN_FOLDERS or first.startswith(".") or _OWN_NAME.match(folded)
                or ((alone or "." in first) and _OWN_FILE.match(first)))


def site_path(key: str, style: str) -> str | None:
    """Where a ``style`` mirror holds the page for origin path ``key``; None if it cannot."""
    if style == KEY:
        return key
    names = key.removesuffix("/").split("/")
    path = key if not key.endswith("/") and _FILE_PAGE.search(names[-1]) else (
        key.removesuffix("/") + "/index.html")
    if any(_FILE_PAGE.search(name) for name in path.split("/")[:-1]):
        return None  # a folder named like a page would clash with such a page on disk
    return path
