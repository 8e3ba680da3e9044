"""The build stage: render what changed, write per-mirror feeds and sitemaps, the manifest,
and sign it.  Its cost follows what changed, not the size of the archive.

A build is a new **version** (a monotonic integer).  Every file it makes is a blob in the
store, named by its SHA-256, so a file identical on every mirror and in every version is
stored once; the ``files`` table says which blob each mirror serves at each path.  Per
version only each mirror's signed root is written, to ``builds/<version>/<mirror>/``.

What a build renders:

- article pages of articles stored or changed since the last build (by the store's
  ``rev``), and archive pages of the groups they belong to, plus the newest two;
- the pages that show the version or the newest articles (home, archive index, mirror
  list), the verify page, and each mirror's feeds and sitemap index, which are small;
- the offline zip of the whole site (:mod:`mirrorkit.build.offline`), only when
  ``[build] offline_every`` has passed since the last one: it reads the whole archive;
- everything, when a template or a config value that shows on pages changed (the
  *inputs* fingerprint; :func:`inputs_fingerprint`), or with ``full``.

Then each mirror's manifest re-encodes only the parts whose bins hold a changed path.

Kill-safety: blobs are written first (content-addressed, so a leftover is harmless and
reused), then the roots under a temporary name; the store's records of the new version
are one transaction, committed last.  A build killed anywhere leaves the last version
as it was, and the next build does the same work again.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import shutil
import tempfile
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import jinja2

from mirrorkit.build import aliases, i18n, offline, sitemap
from mirrorkit.build.render import (
    ARCHIVE_INDEX,
    FAVICON,
    VERIFY_PAGE,
    archive_path,
    article_path,
    favicon,
    legacy_article_path,
    make_environment,
    mirrors_json,
    render_archive_index,
    render_archive_page,
    render_article,
    render_feeds,
    render_home,
    render_mirrors,
    render_verify,
    stylesheet,
    stylesheet_path,
    theme_files,
    verify_script,
    verify_script_path,
)
from mirrorkit.bundle import Bundle
from mirrorkit.config import Config, MirrorConfig
from mirrorkit.errors import BuildError, ConfigError, KeyFileError, MirrorkitError
from mirrorkit.manifest import (
    MANIFEST_NAME,
    SIGNATURE_NAME,
    Manifest,
    MirrorEntry,
    PartRef,
    bin_of,
    bin_range,
    choose_bins,
    encode_part,
    media_type,
    sha256_hex,
)
from mirrorkit.models import Article
from mirrorkit.progress import Meter
from mirrorkit.sign import PublicKey, SecretKey, load_public_key, load_secret_key, sign
from mirrorkit.store import SiteFile, Store

__all__ = [
    "BuildStats",
    "Bundle",
    "build",
    "inputs_fingerprint",
    "latest_bundle",
    "write_archive",
]

KEEP_BUILDS = 3
SHARED = ""  # the files table's mirror name for files every mirror serves
# Bumped when the renderer itself changes what it writes: every page is rebuilt then.
RENDERER = "3"

Progress = Callable[[str], None]


@dataclass
class BuildStats:
    """What one build did: the figures benchmarks and logs report."""

    rendered: int = 0          # pages, feeds and sitemaps rendered
    changed: int = 0           # paths whose content changed (all mirrors counted once)
    parts: int = 0             # manifest parts re-encoded (all mirrors)
    full: bool = False
    changed_paths: dict[str, set[str]] = field(default_factory=lambda: defaultdict(set))
    # Articles rendered now that have no page at their origin path, and why.
    not_swappable: dict[str, str] = field(default_factory=dict)  # url -> reason


def latest_bundle(store: Store) -> Bundle | None:
    version = store.last_version()
    path = store.build_path(version) if version else None
    if path is None or not path.is_dir():
        return None
    return Bundle.open(store, path, version)


def inputs_fingerprint(config: Config, env: jinja2.Environment | None = None) -> str:
    """A hash of everything besides the articles that shows in the built site: the
    templates (the user's and the theme's), the config values pages show, and the
    mirrors.  A change rebuilds what depends on it, without a manual ``build``."""
    return hashlib.sha256(json.dumps({
        "pages": _pages_fingerprint(config, env or make_environment(
            config.build.templates, config.outlet.language)),
        "build": [config.build.home_articles, config.build.feed_items],
        "cache": [config.publish.cache_front.total_seconds(),
                  config.publish.cache_pages.total_seconds()],
        "mirrors": [[m.name, m.public_url] for m in config.mirrors],
    }, sort_keys=True).encode()).hexdigest()


def _pages_fingerprint(config: Config, env: jinja2.Environment) -> str:
    """What every article and archive page depends on besides its articles."""
    h = hashlib.sha256(RENDERER.encode())
    for name, data in theme_files(env).items():
        h.update(f"\0{name}\0{len(data)}\0".encode())
        h.update(data)
    outlet = config.outlet
    catalog = i18n.catalog_path(outlet.language)
    h.update(catalog.read_bytes() if catalog else b"")
    h.update(json.dumps([outlet.id, outlet.name, outlet.origin, outlet.language,
                         outlet.description, config.build.archive_page_size]).encode())
    return h.hexdigest()


def build(config: Config, store: Store, *, now: datetime | None = None,
          progress: Progress | None = None, full: bool = False,
          meter: Meter | None = None) -> Bundle:
    """Render what changed, sign and record a new version; returns the bundle."""
    return build_with_stats(config, store, now=now, progress=progress, full=full,
                            meter=meter)[0]


def build_with_stats(config: Config, store: Store, *, now: datetime | None = None,
                     progress: Progress | None = None, full: bool = False,
                     meter: Meter | None = None) -> tuple[Bundle, BuildStats]:
    if not config.mirrors:
        raise ConfigError("no [[mirrors]] configured; nothing to build for",
                          where=str(config.path))
    secret = load_secret_key(config.signing.secret_key)
    public = load_public_key(config.signing.public_key)
    if secret.public != public:
        raise KeyFileError(
            "the secret key does not belong to the public key",
            where=f"{config.signing.secret_key} / {config.signing.public_key}",
        )
    say = progress or (lambda _msg: None)
    started = now or datetime.now(UTC)
    # Space first: what no version needs goes before anything new is written, so a
    # nearly full disk can still take the next build.
    _prune(store, store.last_version(), started - config.publish.grace)
    env = make_environment(config.build.templates, config.outlet.language)
    version = store.last_version() + 1
    final = store.builds_dir / f"{version:06d}"
    tmp = store.builds_dir / f".{version:06d}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        with store.transaction():
            job = _Build(config, store, env, started, version, say, full, meter or Meter())
            job.run(public, secret, tmp)
            # A build killed between this rename and the commit left a folder that no
            # record names; this version number is ours, so it goes.
            shutil.rmtree(final, ignore_errors=True)
            tmp.rename(final)
            store.record_build(version, started, final, rev=job.rev,
                               inputs=inputs_fingerprint(config, env))
    except OSError as e:
        shutil.rmtree(tmp, ignore_errors=True)
        raise BuildError(f"cannot write the bundle: {e.strerror or e}", where=str(tmp),
                         hint="check free space and permissions of [state] dir") from e
    except MirrorkitError:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    _prune(store, version, started - config.publish.grace)
    stats = job.stats
    say(f"built version {version}: {stats.rendered} rendered, {stats.changed} changed"
        f"{' (full build)' if stats.full else ''}")
    return Bundle.open(store, final, version), stats


class _Build:
    """One build's work, in the store's transaction."""

    def __init__(self, config: Config, store: Store, env: jinja2.Environment,
                 now: datetime, version: int, say: Progress, full: bool, meter: Meter):
        self.config = config
        self.store = store
        self.env = env
        self.now = now
        self.created = now.replace(microsecond=0)
        self.version = version
        self.say = say
        self.meter = meter
        self.stats = BuildStats()
        self.rev = store.last_rev()
        pages_key = _pages_fingerprint(config, env)
        self.why_full = ("asked for" if full else "first build" if store.last_version() == 0
                         else "templates, config or renderer changed"
                         if store.meta("pages") != pages_key else "")
        self.full = bool(self.why_full)
        self.pages_key = pages_key
        self.front_age = int(config.publish.cache_front.total_seconds())
        self.page_age = int(config.publish.cache_pages.total_seconds())
        self.stats.full = self.full
        self._stubs: dict[int, list[Article]] = {}  # one sitemap file's articles at a time
        # Directory style always: the offline copy every mirror serves is a directory.
        self.styles = sorted({aliases.STYLES[m.type] for m in config.mirrors
                              if m.type in aliases.STYLES} | {aliases.DIR})

    # -- recording files ----------------------------------------------------------------

    def put(self, mirror: str, path: str, data: bytes, *, max_age: int,
            mutable: bool = True) -> None:
        sha = self.store.put_blob(data)
        self.record(mirror, SiteFile(path, sha, len(data), media_type(path), mutable, max_age))

    def record(self, mirror: str, entry: SiteFile) -> None:
        """``entry`` is this build's file at its path (its blob already stored)."""
        if self.store.put_site_file(mirror, entry, self.now):
            self.stats.changed_paths[mirror].add(entry.path)
            self.stats.changed += 1
        self.written[mirror].add(entry.path)

    def render(self, mirror: str, path: str, data: bytes, *, front: bool) -> None:
        self.stats.rendered += 1
        self.put(mirror, path, data, max_age=self.front_age if front else self.page_age)

    # -- the build ----------------------------------------------------------------------

    def run(self, public: PublicKey, secret: SecretKey, out: Path) -> None:
        config, store = self.config, self.store
        self.written: dict[str, set[str]] = defaultdict(set)
        last_rev = int(store.meta("rev") or 0)
        if self.full:
            self.say(f"building version {self.version}: every page ({self.why_full})")
        css = stylesheet(self.env)
        style = stylesheet_path(css)
        self.put(SHARED, style, css, max_age=0, mutable=False)
        js = verify_script(self.env)
        script = verify_script_path(js)
        self.put(SHARED, script, js, max_age=0, mutable=False)
        self.put(SHARED, FAVICON, favicon(self.env), max_age=self.page_age)

        store.number_articles()
        size = config.build.archive_page_size
        count = store.article_count()
        pages = (count + size - 1) // size
        dirty_pages: set[int] = set()
        if self.full:
            changed: Iterator[Article] = store.iter_articles()
            self.meter.add_total(count)
        else:
            listed = store.changed_since(last_rev)
            changed = iter(listed)
            self.meter.add_total(len(listed))
        dirty_seqs: list[int] = []
        for n, article in enumerate(changed, 1):
            self._article(article, style)
            self._aliases(article, style, self.styles)
            self.meter.advance()
            dirty_seqs.append(article.seq)
            if n % 5000 == 0:
                self.say(f"  {n} article pages rendered")
        self._alias_styles(style)
        dirty_pages |= {(seq - 1) // size + 1 for seq in dirty_seqs if seq > 0}
        if self.full:
            dirty_pages = set(range(1, pages + 1))
        # The newest page shows new articles; the one before gains a link to it.
        dirty_pages |= {p for p in (pages, pages - 1) if p >= 1}
        for page in sorted(dirty_pages):
            self._archive_page(page, pages, size, style)

        newest = store.newest(max(config.build.home_articles, config.build.feed_items))
        self.render(SHARED, ARCHIVE_INDEX,
                    render_archive_index(self.env, config, store.archive_pages(), style),
                    front=True)
        self.render(SHARED, "index.html", render_home(
            self.env, config, newest[:config.build.home_articles], pages=pages,
            version=self.version, built=self.created, stylesheet=style), front=True)
        public_text = public.to_text()
        self.render(SHARED, "mirrors.html", render_mirrors(
            self.env, config, version=self.version, built=self.created, stylesheet=style,
            public_key=public_text), front=True)
        self.render(SHARED, "mirrors.json", mirrors_json(config, built=self.created),
                    front=True)
        self.render(SHARED, VERIFY_PAGE, render_verify(
            self.env, config, stylesheet=style, script=script, public_key=public),
            front=False)
        # The zip made by an earlier build stays until it is due again.
        self.written[SHARED].add(offline.OFFLINE_PATH)
        if self.full:
            self._retire_unwritten(SHARED)

        dirty_files = {sitemap.file_of(seq) for seq in dirty_seqs if seq > 0}
        for mirror in config.mirrors:
            self._mirror_files(mirror, newest[:config.build.feed_items], count, dirty_files)
        mirrors = tuple(MirrorEntry(m.name, m.public_url) for m in config.mirrors)
        kept = store.site_file(SHARED, offline.OFFLINE_PATH)
        if (kept is None or kept.retired is not None or offline.due(
                store.meta(offline.MADE_KEY), self.now, config.build.offline_every)):
            self._offline_zip(mirrors, secret)
        for gone in set(store.built_mirrors()) - {m.name for m in config.mirrors}:
            store.drop_mirror(gone, self.now)

        for mirror_name, path in store.expire_retired(self.now - config.publish.grace):
            self.stats.changed_paths[mirror_name].add(path)

        out.mkdir(parents=True)
        for mirror in config.mirrors:
            self._manifest(mirror, mirrors, public, secret, out / mirror.name)
        store.set_meta("pages", self.pages_key)
        store.set_meta("rev", str(self.rev))

    def _offline_zip(self, mirrors: tuple[MirrorEntry, ...], secret: SecretKey) -> None:
        """The offline copy of the first mirror's site as this build leaves it."""
        config, store = self.config, self.store
        first = config.mirrors[0].name
        root = Manifest(outlet=config.outlet.id, version=self.version, created=self.created,
                        expires=self.created + config.signing.expires_after,
                        key_id=secret.public.key_id_hex, mirror=first, mirrors=mirrors,
                        parts=())
        data = offline.make_zip((f.entry() for f in _copy_entries(store, first)),
                                lambda e: store.read_blob(e.sha256, e.size), root,
                                functools.partial(_sign_with, secret))
        self.put(SHARED, offline.OFFLINE_PATH, data, max_age=self.page_age)
        store.set_meta(offline.MADE_KEY, self.now.isoformat())
        self.say(f"  offline copy made: {len(data) / 1e6:.1f} MB")

    def _article(self, article: Article, style: str) -> None:
        page = render_article(self.env, self.config, article, style)
        self.render(SHARED, article_path(article), page, front=False)
        legacy = legacy_article_path(article)
        old = self.store.site_file(SHARED, legacy) if legacy != article_path(article) else None
        if old is not None and old.retired is None:
            # Published by renderer 2 under a bare id: links to it keep working.
            self.render(SHARED, legacy, render_article(self.env, self.config, article, style,
                                                       at=legacy), front=False)
        for name in article.media:
            if f"media/{name}" in self.written[SHARED]:
                continue  # an image shared with an article already built
            info = self.store.media(name)
            if info is None:
                raise BuildError("image named by an article is not in the store",
                                 where=f"{article.url}: {name}")
            self.record(SHARED, SiteFile(f"media/{name}", info.sha256, info.size,
                                         info.media_type, mutable=False, max_age=0))

    def _aliases(self, article: Article, style: str, styles: Iterable[str]) -> None:
        """The article's page at its origin path on each style of mirror, or a report."""
        key = aliases.origin_key(article.url)
        pages: dict[int, bytes] = {}  # by depth: the same page serves paths as deep
        for kind in styles:
            path = key if isinstance(key, aliases.NotSwappable) else aliases.site_path(key, kind)
            problem = self._alias_problem(article, kind, path)
            if problem is not None:
                self.stats.not_swappable[problem.url] = problem.reason
                continue
            assert isinstance(path, str)
            depth = path.count("/")
            if depth not in pages:
                pages[depth] = render_article(self.env, self.config, article, style, at=path)
            data = pages[depth]
            self.stats.rendered += 1
            self.record(aliases.group(kind), SiteFile(
                path, self.store.put_blob(data), len(data), aliases.HTML, True, self.page_age))

    def _alias_problem(self, article: Article, kind: str,
                       path: str | aliases.NotSwappable | None) -> aliases.NotSwappable | None:
        if isinstance(path, aliases.NotSwappable):
            return path
        if path is None:
            return aliases.NotSwappable(article.url, "its path has a folder named like a page")
        # Where the mirror holds it, too: "/archive/" becomes archive/index.html there.
        if aliases.own_path(path) or self.store.site_file(SHARED, path) is not None:
            return aliases.NotSwappable(article.url, "its path clashes with the site's own files")
        owner = self.store.origin_path_owner(kind, path)
        if owner is None:
            self.store.set_origin_path_owner(kind, path, article.id)
        elif owner != article.id:
            if owner:  # the first holder loses it too: a link could mean either article
                self.store.set_origin_path_owner(kind, path, "")
                self.store.retire_site_file(aliases.group(kind), path, self.now)
                self.stats.changed_paths[aliases.group(kind)].add(path)
            return aliases.NotSwappable(article.url, "another article has the same path"
                                        " (with another query or host)")
        return None

    def _alias_styles(self, style: str) -> None:
        """A style of mirror new to this store gets every article's alias; a style no
        mirror has any more loses them; and what could not be placed is reported."""
        store = self.store
        for kind in self.styles:
            if self.full or store.meta(f"aliases:{kind}") is None:
                if not self.full:
                    for article in store.iter_articles():
                        self._aliases(article, style, [kind])
                self._retire_unwritten(aliases.group(kind))
                store.set_meta(f"aliases:{kind}", "1")
        for kind in {aliases.KEY, aliases.DIR} - set(self.styles):
            if store.meta(f"aliases:{kind}") is not None:
                store.drop_mirror(aliases.group(kind), self.now)
                store.drop_meta(f"aliases:{kind}")
        refused = self.stats.not_swappable
        for url, reason in list(refused.items())[:10]:
            self.say(f"  not reachable at its own path: {url}: {reason}")
        if len(refused) > 10:
            self.say(f"  ... and {len(refused) - 10} more articles not reachable at their"
                     " own paths")

    def _archive_page(self, page: int, pages: int, size: int, style: str) -> None:
        articles = self.store.articles_by_seq((page - 1) * size + 1, page * size)
        dates = [d for a in articles if (d := a.sort_time) is not None]
        self.store.set_archive_page(page, len(articles), min(dates, default=None),
                                    max(dates, default=None))
        self.render(SHARED, archive_path(page), render_archive_page(
            self.env, self.config, page, pages, articles, style), front=page >= pages - 1)

    def _mirror_files(self, mirror: MirrorConfig, newest: list[Article], count: int,
                      dirty_files: set[int]) -> None:
        """The files that link to this mirror with absolute URLs: feeds and sitemaps."""
        store, name = self.store, mirror.name
        base = mirror.public_url
        for path, data in render_feeds(self.config, newest, mirror, built=self.created,
                                       media=self._media_info).items():
            self.render(name, path, data, front=True)
        files = (count + sitemap.URLS_PER_FILE - 1) // sitemap.URLS_PER_FILE
        # A new or moved mirror gets every sitemap file; otherwise only those that list a
        # changed article, and the newest.
        full = self.full or store.meta(f"url:{name}") != base
        todo = set(range(1, files + 1)) if full else dirty_files | ({files} if files else set())
        for number in sorted(todo):
            self.render(name, sitemap.sitemap_path(number),
                        sitemap.render_sitemap(base, self._sitemap_articles(number)),
                        front=number == files)
        self.render(name, sitemap.SITEMAP_INDEX, sitemap.render_index(base, files), front=True)
        if full:
            self._retire_unwritten(name)
        store.set_meta(f"url:{name}", base)

    def _media_info(self, name: str) -> tuple[int, str] | None:
        info = self.store.media(name)
        return (info.size, info.media_type) if info else None

    def _sitemap_articles(self, number: int) -> list[Article]:
        """The articles sitemap file ``number`` lists, read once for every mirror."""
        if number not in self._stubs:
            per = sitemap.URLS_PER_FILE
            self._stubs = {number: self.store.article_stubs((number - 1) * per + 1,
                                                            number * per)}
        return self._stubs[number]

    def _retire_unwritten(self, mirror: str) -> None:
        """After a full pass: paths of ``mirror`` this build did not write are retired."""
        for path in set(self.store.site_paths(mirror)) - self.written[mirror]:
            self.store.retire_site_file(mirror, path, self.now)
            self.stats.changed_paths[mirror].add(path)

    def _manifest(self, mirror: MirrorConfig, mirrors: tuple[MirrorEntry, ...],
                  public: PublicKey, secret: SecretKey, out: Path) -> None:
        store, name = self.store, mirror.name
        old = store.parts(name)
        previous_root = _previous_root(store, name)
        groups = _groups(mirror)
        same_groups = store.meta(f"groups:{name}") == json.dumps(groups)
        store.set_meta(f"groups:{name}", json.dumps(groups))  # read by _entries, bundles
        bins = choose_bins(sum(store.site_file_count(g) for g in groups))
        if len(old) == bins and previous_root is not None and same_groups:
            parts: list[PartRef] = list(old)
            changed = set().union(*(self.stats.changed_paths[g] for g in groups))
            dirty: Iterable[int] = sorted({bin_of(p, bins) for p in changed})
        else:
            parts = [PartRef("", 0)] * bins
            dirty = range(bins)
        for index in dirty:
            low, high = bin_range(index, bins)
            files = _one_per_path(store.site_files(g, low, high) for g in groups)
            raw = encode_part(f.entry() for f in files)
            parts[index] = PartRef(store.put_blob(raw), len(raw))
            self.stats.parts += 1
        store.set_parts(name, parts, self.now)
        previous = Manifest.from_bytes(previous_root) if previous_root else None
        kept = set(parts)
        manifest = Manifest(
            outlet=self.config.outlet.id, version=self.version, created=self.created,
            expires=self.created + self.config.signing.expires_after,
            key_id=public.key_id_hex, mirror=name, mirrors=mirrors, parts=tuple(parts),
            previous=sha256_hex(previous_root) if previous_root else None,
            previous_parts=tuple(sorted(
                {p for p in (previous.parts if previous else ()) if p not in kept},
                key=lambda p: p.sha256)),
        )
        data, signature = sign_root(manifest, secret)
        out.mkdir(parents=True)
        (out / MANIFEST_NAME).write_bytes(data)
        (out / SIGNATURE_NAME).write_bytes(signature)


def sign_root(manifest: Manifest, secret: SecretKey) -> tuple[bytes, bytes]:
    """A root's bytes and its minisign signature, whose trusted comment repeats what a
    verifier checks first (outlet, version, mirror, expiry)."""
    data = manifest.to_bytes()
    comment = (f"timestamp:{int(manifest.created.timestamp())} outlet:{manifest.outlet} "
               f"version:{manifest.version} mirror:{manifest.mirror} "
               f"expires:{manifest.expires.strftime('%Y-%m-%dT%H:%M:%SZ')}"
               + (" transition:1" if manifest.transition else "")
               + (" offline:1" if manifest.offline else ""))
    return data, sign(data, secret, comment).to_bytes()


def load_signer(config: Config) -> Callable[[Manifest], tuple[bytes, bytes]]:
    """Signs transition roots at publish time with the outlet's secret key."""
    secret = load_secret_key(config.signing.secret_key)
    return functools.partial(_sign_with, secret)


def _sign_with(secret: SecretKey, manifest: Manifest) -> tuple[bytes, bytes]:
    return sign_root(manifest, secret)


def _previous_root(store: Store, mirror: str) -> bytes | None:
    bundle = latest_bundle(store)
    if bundle is None or mirror not in bundle.mirrors:
        return None
    try:
        data = (bundle.path / mirror / MANIFEST_NAME).read_bytes()
        Manifest.from_bytes(data)
    except (OSError, MirrorkitError):
        return None
    return data


def write_archive(bundle: Bundle, mirror: str, out: Path, sign: offline.Signer) -> Path:
    """The offline copy (:mod:`mirrorkit.build.offline`) of a mirror's site in the latest
    build, signed with ``sign``, written to ``out``.  The same version gives the same
    bytes."""
    source = bundle.source(mirror)
    root = Manifest.from_bytes(source.root())
    data = offline.make_zip((f.entry() for f in _copy_entries(bundle.store, mirror)),
                            source.read, root, sign)
    out.parent.mkdir(parents=True, exist_ok=True)
    # An unpredictable name, created exclusively: a link planted at a fixed temporary
    # name would be written through.
    fd, name = tempfile.mkstemp(dir=out.parent, prefix=f".{out.name}.", suffix=".tmp")
    tmp = Path(name)
    os.fchmod(fd, 0o644)  # a copy to pass on, readable as any file written here
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        tmp.replace(out)
    except OSError:
        tmp.unlink(missing_ok=True)
        raise
    return out


def _groups(mirror: MirrorConfig) -> list[str]:
    """The files table's names for what ``mirror`` serves: shared files, the outlet's own
    paths in its mirror's style, its own files."""
    style = aliases.STYLES.get(mirror.type)
    return [SHARED, *([aliases.group(style)] if style else []), mirror.name]


def _copy_entries(store: Store, mirror: str) -> list[SiteFile]:
    """What an offline copy of ``mirror`` holds: a directory's layout of its site (the
    outlet's own paths as ``PATH/index.html``, never an object store's ``PATH/`` key)."""
    return _one_per_path(store.site_files(g) for g in (SHARED, aliases.group(aliases.DIR), mirror))


def _one_per_path(groups: Iterable[Iterable[SiteFile]]) -> list[SiteFile]:
    """The files of ``groups`` (in :func:`_groups`' order), one per path: a live file
    before a retired one, else the earlier group's (the site's own before an outlet's
    path that an earlier build let onto it), so no manifest names a path twice."""
    kept: dict[str, SiteFile] = {}
    for files in groups:
        for f in files:
            held = kept.get(f.path)
            if held is None or (held.retired is not None and f.retired is None):
                kept[f.path] = f
    return list(kept.values())


def _prune(store: Store, version: int, before: datetime) -> None:
    """Drop roots of old versions and blobs no version needs any more (after the grace)."""
    for path in store.builds_dir.iterdir():
        name = path.name
        old = name.isdigit() and int(name) <= version - KEEP_BUILDS
        if old or (name.startswith(".") and name.endswith(".tmp")):
            shutil.rmtree(path, ignore_errors=True)
    store.forget_builds(version - KEEP_BUILDS)
    store.collect_garbage(before)
