"""Render the static site of one version: pages, stylesheet and mirror list.

Templates come from the user's directory first (``[build] templates``) and the packaged
theme second, so a user overrides one file (say ``base.html``) and keeps the rest.

What this module guarantees, and the tests show:

- every internal link is relative and names a file (``../../index.html``), so a copy
  works from an S3 REST endpoint, which serves no index documents, and from ``file://``;
- the packaged theme loads nothing from another host and has no JavaScript;
- output depends only on the inputs, never on the clock: the same articles give the
  same bytes, so the publisher skips unchanged files.  Article and archive pages carry
  no version or build time, so they change only when what they show does; only the
  front pages (``index.html``, ``mirrors.html``, ``mirrors.json``) show the version.
"""

from __future__ import annotations

import functools
import hashlib
import json
import re
import textwrap
import unicodedata
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import jinja2
from markupsafe import Markup
from slugify import slugify

from mirrorkit.build import i18n
from mirrorkit.config import Config, MirrorConfig
from mirrorkit.errors import BuildError
from mirrorkit.models import MEDIA_SCHEME, Article
from mirrorkit.resources import theme_dir
from mirrorkit.sign import PublicKey

__all__ = [
    "ARCHIVE_INDEX",
    "FAVICON",
    "archive_path",
    "article_path",
    "body_html",
    "favicon",
    "legacy_article_path",
    "make_environment",
    "mirrors_json",
    "newest_first",
    "render_archive_index",
    "render_archive_page",
    "render_article",
    "render_feeds",
    "render_home",
    "render_mirrors",
    "render_verify",
    "stylesheet",
    "stylesheet_path",
    "summary_text",
    "theme_dir",
    "verify_script",
    "verify_script_path",
]

_SLUG_MAX = 60
_NOT_SLUG = re.compile(r"[^a-z0-9]+")
# Extensions that say how the origin serves a page, not what it is about.
_PAGE_EXTENSION = re.compile(r"\.(?:s?html?|php\d?|aspx?|jspx?|cgi)$")
_SUMMARY_CHARS = 280


# -- paths and values shared with the feeds ------------------------------------------------

def article_path(article: Article) -> str:
    """``articles/<slug>-<id>/index.html``: a readable, ASCII-only, collision-free path.

    The slug comes from the last segment of the article's URL (never from its title, so
    an edited headline does not move the page) and is only for people; the article id
    (as unique as the store's primary key) makes the path unique.  The path depends on
    this article alone, so it never moves when other articles arrive.
    """
    return _article_path(article.url, article.id)


def legacy_article_path(article: Article) -> str:
    """The path renderer 2 gave: non-Latin segments became a bare ``article-<id>``.
    Pages published there stay there too (see the build), so no shared link breaks."""
    return _article_path(article.url, article.id, transliterate=False)


@functools.lru_cache(maxsize=1 << 16)
def _article_path(url: str, article_id: str, *, transliterate: bool = True) -> str:
    # Cached: home, archive pages, feeds and sitemaps all name the same articles.
    try:
        segment = unquote(urlsplit(url).path.rstrip("/").rpartition("/")[2])
    except ValueError:  # a URL urlsplit cannot read still gets a path
        segment = ""
    slug = _ascii_slug(segment)
    if not slug and transliterate:
        # Only what has no Latin letters is transliterated: a Latin slug stays as
        # renderer 2 made it, so upgrading moves none of those pages.
        slug = _ascii_slug(slugify(_PAGE_EXTENSION.sub("", segment.lower())))
    tag = _NOT_SLUG.sub("", article_id.lower())
    return f"articles/{slug or 'article'}-{tag}/index.html"


def _ascii_slug(segment: str) -> str:
    # NFKD splits accented letters into letter + mark, so "Café" keeps its "Cafe".
    ascii_text = unicodedata.normalize("NFKD", segment).encode("ascii", "ignore")
    name = _PAGE_EXTENSION.sub("", ascii_text.decode("ascii").lower())
    return _NOT_SLUG.sub("-", name).strip("-")[:_SLUG_MAX].strip("-")


def body_html(article: Article, media_prefix: str) -> str:
    """The article body with stored images addressed under ``media_prefix``.

    ``media_prefix`` is the site root as seen from where the body is shown: relative
    (``"../../"``) in pages, the mirror's absolute public URL in feeds.
    """
    return article.html.replace(MEDIA_SCHEME, media_prefix + "media/")


def newest_first(articles: Sequence[Article]) -> list[Article]:
    """Newest first, undated last, ties by id, so the order never depends on the input's."""

    def key(a: Article) -> tuple[bool, float, str]:
        when = a.sort_time
        return (when is None, -utc(when).timestamp() if when else 0.0, a.id)

    return sorted(articles, key=key)


def summary_text(article: Article) -> str:
    """The article's summary, or the start of its text when the origin gave none."""
    if article.summary.strip():
        return article.summary.strip()
    return textwrap.shorten(article.text, _SUMMARY_CHARS, placeholder=" …")


_ENCODED_RUN = re.compile(r"(?:%[89A-Fa-f][0-9A-Fa-f])+")


def readable_url(url: str) -> str:
    """``url`` as a reader should see it: percent-encoded words in their own letters
    (``/ru/новости/``, not ``/ru/%D0%BD…``), as browsers show them.  Only runs of
    encoded non-ASCII bytes are decoded, and only into letters, marks and digits, so
    reserved characters stay encoded and nothing invisible or direction-changing
    (U+202E) can hide in the text."""
    def decode(m: re.Match[str]) -> str:
        try:
            text = unquote(m[0], errors="strict")
        except UnicodeDecodeError:
            return m[0]
        ok = all(unicodedata.category(c)[0] in "LMN" for c in text)
        return text if ok else m[0]

    return _ENCODED_RUN.sub(decode, url)


def utc(value: datetime) -> datetime:
    """Aware UTC time; a naive time is taken to be UTC already (as the store writes it)."""
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value.astimezone(UTC)


def iso_time(value: datetime) -> str:
    return utc(value).strftime("%Y-%m-%dT%H:%M:%SZ")


# -- templates ----------------------------------------------------------------------------

def make_environment(user_templates: Path | None, language: str = "en") -> jinja2.Environment:
    """A Jinja environment over the user's templates (if any), then the packaged theme,
    speaking ``language`` (labels from its catalog, dates in its words).

    The packaged theme is :func:`mirrorkit.resources.theme_dir`: inside the wheel, or the
    repository's ``templates/`` in an editable install.
    """
    loaders: list[jinja2.BaseLoader] = []
    if user_templates is not None:
        if not user_templates.is_dir():
            raise BuildError("templates directory not found", where=str(user_templates),
                             hint="check [build] templates in the config")
        loaders.append(jinja2.FileSystemLoader(user_templates))
    loaders.append(jinja2.FileSystemLoader(theme_dir()))
    env = jinja2.Environment(
        loader=jinja2.ChoiceLoader(loaders),
        autoescape=True,
        # A typo in a user template fails the build instead of rendering an empty string.
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
        extensions=["jinja2.ext.i18n"],
    )
    env.install_gettext_translations(  # type: ignore[attr-defined]  # added by the extension
        i18n.translations(language), newstyle=True)

    def lang_attrs(article: Article) -> Markup:
        """``lang``/``dir`` for an article listed on a page when it is in another language."""
        if not article.language or article.language == language:
            return Markup("")
        return Markup(' lang="{}" dir="{}"').format(article.language,
                                                    i18n.direction(article.language))

    def ui_attrs(text_language: str | None) -> Markup:
        """``lang``/``dir`` of the interface for its words (a date, a label) set inside
        an article's element in another language, so that they are read and laid out as
        the interface's: a Persian date in an English block is otherwise scrambled by
        the bidi algorithm and read with an English voice."""
        if not text_language or text_language == language:
            return Markup("")
        return Markup(' lang="{}" dir="{}"').format(language, i18n.direction(language))

    env.filters.update(iso=iso_time, summary=summary_text, lang_attrs=lang_attrs,
                       ui_attrs=ui_attrs, readable_url=readable_url,
                       human=functools.partial(i18n.human_time, language=language),
                       day=functools.partial(i18n.day, language=language))
    env.globals["article_path"] = article_path
    return env


def _render(env: jinja2.Environment, name: str, context: dict[str, Any]) -> bytes:
    try:
        return env.get_template(name).render(context).encode("utf-8")
    except jinja2.TemplateSyntaxError as e:
        raise BuildError(f"template error: {e.message}",
                         where=f"{e.filename or name}:{e.lineno}") from e
    except jinja2.TemplateNotFound as e:
        raise BuildError(f"template not found: {e.name}", where=name,
                         hint="neither in [build] templates nor in the packaged theme") from e
    except jinja2.TemplateError as e:
        raise BuildError(f"cannot render: {e}", where=name) from e


def _raw(env: jinja2.Environment, name: str) -> bytes:
    """A theme file served as is (not a template), still overridable by the user."""
    assert env.loader is not None
    try:
        source, _, _ = env.loader.get_source(env, name)
    except jinja2.TemplateNotFound as e:
        raise BuildError("theme file not found", where=name) from e
    return source.encode("utf-8")


def _page(config: Config, *, root: str, stylesheet: str,
          version: int | None = None, built: datetime | None = None) -> dict[str, Any]:
    """What every page template gets; ``root`` leads from the page to the site root.
    Every page speaks the outlet's language (an article's own is on its element)."""
    lang = config.outlet.language
    return {
        "stylesheet": stylesheet,
        "outlet": config.outlet,
        "lang": lang,
        "dir": i18n.direction(lang),
        "root": root,
        # None on article pages: they must not change with every build.
        "version": version,
        "built": built,
    }


# -- the site -----------------------------------------------------------------------------
#
# One function per kind of page.  ``stylesheet`` is the site path of the stylesheet, whose
# name carries its content hash (see :func:`stylesheet_path`).

def stylesheet_path(css: bytes) -> str:
    return f"style.{hashlib.sha256(css).hexdigest()[:16]}.css"


def archive_path(page: int) -> str:
    return f"archive/{page:04d}.html"


ARCHIVE_INDEX = "archive/index.html"
VERIFY_PAGE = "verify.html"


def render_article(env: jinja2.Environment, config: Config, article: Article,
                   stylesheet: str, *, at: str | None = None) -> bytes:
    """The article's page at its canonical path, or ``at`` another site path (the
    outlet's own, :mod:`mirrorkit.build.aliases`), whose links lead from there and which
    names the canonical page."""
    path = at or article_path(article)
    root = "../" * path.count("/")
    context = _page(config, root=root, stylesheet=stylesheet)
    lang = article.language or config.outlet.language
    context.update(
        article=article,
        article_lang=lang,
        article_dir=i18n.direction(lang),
        canonical=article_path(article) if at else None,
        date=article.published or article.updated,
        body=Markup(body_html(article, root)),  # noqa: S704 - sanitized at fetch
    )
    return _render(env, "article.html", context)


def render_archive_page(env: jinja2.Environment, config: Config, page: int, pages: int,
                        articles: Sequence[Article], stylesheet: str) -> bytes:
    """Archive page ``page`` of ``pages``: its articles, newest first, and links to the
    pages beside it.  It changes only when one of its articles does, or when the page
    after it first appears."""
    context = _page(config, root="../", stylesheet=stylesheet)
    context.update(
        page=page, pages=pages, articles=newest_first(articles),
        older=archive_path(page - 1).removeprefix("archive/") if page > 1 else None,
        newer=archive_path(page + 1).removeprefix("archive/") if page < pages else None,
    )
    return _render(env, "archive.html", context)


def render_archive_index(env: jinja2.Environment, config: Config,
                         pages: Sequence[tuple[int, int, datetime | None, datetime | None]],
                         stylesheet: str) -> bytes:
    """Every archive page, newest first, with how many articles it holds and their dates."""
    context = _page(config, root="../", stylesheet=stylesheet)
    context["pages"] = [
        {"href": archive_path(n).removeprefix("archive/"), "number": n, "count": count,
         "first": first, "last": last}
        for n, count, first, last in pages
    ]
    return _render(env, "archive-index.html", context)


def render_home(env: jinja2.Environment, config: Config, newest: Sequence[Article], *,
                pages: int, version: int, built: datetime, stylesheet: str) -> bytes:
    context = _page(config, root="", version=version,
                    built=built, stylesheet=stylesheet)
    context.update(articles=newest_first(newest),
                   newest_archive=archive_path(pages) if pages else None)
    return _render(env, "index.html", context)


def render_mirrors(env: jinja2.Environment, config: Config, *, version: int,
                   built: datetime, stylesheet: str, public_key: str | None) -> bytes:
    """The mirrors page; ``public_key`` (the minisign public key's text) is shown beside
    the verify instructions."""
    context = _page(config, root="", version=version,
                    built=built, stylesheet=stylesheet)
    context.update(mirrors=config.mirrors, public_key=public_key)
    return _render(env, "mirrors.html", context)


def render_verify(env: jinja2.Environment, config: Config, *, stylesheet: str, script: str,
                  public_key: PublicKey) -> bytes:
    """The "verify this copy" page: instructions for minisign and sha256sum, and, with
    JavaScript on, ``script`` (the site's only script), which checks the copy in the
    browser against ``public_key``, shipped in the page.  It shows no version, so it
    changes only with the key or the theme."""
    context = _page(config, root="", stylesheet=stylesheet)
    context.update(script=script, public_key=public_key.to_text(),
                   key_line=public_key.to_text().splitlines()[1],
                   key_id=public_key.key_id_hex)
    return _render(env, "verify.html", context)


def verify_script(env: jinja2.Environment) -> bytes:
    return _raw(env, "verify.js")


def verify_script_path(js: bytes) -> str:
    """Named by its content, like the stylesheet, so it is cached for good."""
    return f"verify.{hashlib.sha256(js).hexdigest()[:16]}.js"


def theme_files(env: jinja2.Environment) -> dict[str, bytes]:
    """Every template and theme file as the environment finds it (overrides first)."""
    assert env.loader is not None
    out = {}
    for name in sorted(env.loader.list_templates()):
        source, _, _ = env.loader.get_source(env, name)
        out[name] = source.encode("utf-8")
    return out


def stylesheet(env: jinja2.Environment) -> bytes:
    return _raw(env, "style.css")


FAVICON = "favicon.svg"


def favicon(env: jinja2.Environment) -> bytes:
    """The site's icon, linked from every page (so browsers ask for no /favicon.ico)."""
    return _raw(env, FAVICON)


def mirrors_json(config: Config, *, built: datetime) -> bytes:
    """The mirror list in the Bypass Censorship v2 shape that circumvention clients read."""
    stamp = iso_time(built)
    # Bypass Censorship lists origins without "www.", and its clients match them so.
    host = (urlsplit(config.outlet.origin).hostname or "").removeprefix("www.")
    doc = {
        "version": "2.0",
        "sites": [{
            "main_domain": host,
            "available_alternatives": [
                {
                    "proto": urlsplit(m.public_url).scheme,
                    "type": "mirror",
                    "created_at": stamp,
                    "updated_at": stamp,
                    "url": m.public_url,
                }
                for m in config.mirrors
            ],
        }],
    }
    text = json.dumps(doc, sort_keys=True, indent=2, ensure_ascii=False) + "\n"
    return text.encode("utf-8")


def render_feeds(config: Config, articles: Sequence[Article], mirror: MirrorConfig, *,
                 built: datetime,
                 media: Callable[[str], tuple[int, str] | None] | None = None,
                 ) -> dict[str, bytes]:
    """``rss.xml`` and ``atom.xml`` for one mirror; see :mod:`mirrorkit.build.feeds`."""
    # Imported here because the feeds build on this module's helpers.
    from mirrorkit.build import feeds

    return feeds.render_feeds(config, articles, mirror, built=built, media=media)
