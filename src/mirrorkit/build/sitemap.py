"""Per-mirror sitemaps: ``sitemap.xml`` is a sitemap index of ``sitemaps/NNNN.xml`` files.

Each sitemap file lists a fixed group of articles by arrival (``seq``), with absolute URLs
on that mirror, so a new article rewrites only the newest file and the index.  The index
form is used at every size (search engines read it alike): a single ``urlset`` would be
rewritten whole by every sync, and the protocol caps one file at 50,000 URLs anyway.
"""

from __future__ import annotations

from collections.abc import Sequence
from xml.sax.saxutils import escape

from mirrorkit.build.render import article_path, iso_time
from mirrorkit.models import Article

SITEMAP_INDEX = "sitemap.xml"
# URLs per sitemap file: well under the protocol's 50,000, and a file of about 150 KB.
URLS_PER_FILE = 1000

_NS = "http://www.sitemaps.org/schemas/sitemap/0.9"


def sitemap_path(number: int) -> str:
    return f"sitemaps/{number:04d}.xml"


def file_of(seq: int) -> int:
    """The sitemap file that lists the article that arrived ``seq``-th (from 1)."""
    return (seq - 1) // URLS_PER_FILE + 1


def render_sitemap(base_url: str, articles: Sequence[Article]) -> bytes:
    lines = ['<?xml version="1.0" encoding="UTF-8"?>', f'<urlset xmlns="{_NS}">']
    for article in sorted(articles, key=lambda a: a.seq):
        when = article.updated or article.published
        lastmod = f"<lastmod>{iso_time(when)}</lastmod>" if when else ""
        lines.append(f"<url><loc>{escape(base_url + article_path(article))}</loc>"
                     f"{lastmod}</url>")
    lines.append("</urlset>")
    return ("\n".join(lines) + "\n").encode("utf-8")


def render_index(base_url: str, files: int) -> bytes:
    lines = ['<?xml version="1.0" encoding="UTF-8"?>', f'<sitemapindex xmlns="{_NS}">']
    lines += [f"<sitemap><loc>{escape(base_url + sitemap_path(n))}</loc></sitemap>"
              for n in range(1, files + 1)]
    lines.append("</sitemapindex>")
    return ("\n".join(lines) + "\n").encode("utf-8")
