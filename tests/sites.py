"""Helpers for tests that read or write whole sites in the manifest's root-and-parts form."""

from __future__ import annotations

import zipfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import BinaryIO

from mirrorkit.build.render import (
    ARCHIVE_INDEX,
    FAVICON,
    archive_path,
    article_path,
    favicon,
    make_environment,
    mirrors_json,
    newest_first,
    render_archive_index,
    render_archive_page,
    render_article,
    render_home,
    render_mirrors,
    render_verify,
    stylesheet,
    stylesheet_path,
    verify_script,
    verify_script_path,
)
from mirrorkit.bundle import Bundle
from mirrorkit.config import Config
from mirrorkit.manifest import (
    MANIFEST_NAME,
    SIGNATURE_NAME,
    FileEntry,
    Manifest,
    MirrorEntry,
    PartRef,
    make_parts,
    media_type,
    read_entries,
    sha256_hex,
)
from mirrorkit.models import Article, article_id
from mirrorkit.sign import SecretKey, sign

T0 = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)


def article(n: int) -> Article:
    """Story ``n`` of a plain test outlet, published ``n`` hours before T0."""
    url = f"https://news.example/{n}"
    return Article(id=article_id(url), url=url, source="feed", title=f"Story {n}",
                   authors=("A. Writer",), published=T0 - timedelta(hours=n), updated=None,
                   language="en", text=f"Body {n}", html=f"<p>Body {n}</p>")


def entries_of(root: bytes, read: Callable[[str], bytes | None]) -> dict[str, FileEntry]:
    """Every entry a root names, its parts read with ``read(path)``; parts must be whole."""
    manifest = Manifest.from_bytes(root)
    entries, problems = read_entries(manifest, {p.path: read(p.path) for p in manifest.parts})
    assert not problems, problems
    return entries


def tree_entries(tree: Path) -> dict[str, FileEntry]:
    """The entries of the site in directory ``tree``."""
    def read(path: str) -> bytes | None:
        target = tree / path
        return target.read_bytes() if target.is_file() else None

    return entries_of((tree / MANIFEST_NAME).read_bytes(), read)


def write_site(tree: Path, version: int, files: Mapping[str, bytes], key: SecretKey, *,
               outlet: str = "test-outlet", mirror: str = "m",
               retired: Mapping[str, bytes] | None = None, previous: bytes | None = None,
               created: datetime | None = None, bins: int | None = None,
               previous_parts: tuple[PartRef, ...] = ()) -> bytes:
    """Write a signed site (files, parts, root, signature) into ``tree``; returns the root.

    Files under ``media/`` are immutable; ``retired`` files are listed as retired but not
    written (they are on the mirror from an earlier version)."""
    created = created or T0 + timedelta(hours=version)
    entries = [FileEntry(p, len(d), sha256_hex(d), media_type(p),
                         mutable=not p.startswith("media/")) for p, d in files.items()]
    entries += [FileEntry(p, len(d), sha256_hex(d), media_type(p), retired=created)
                for p, d in (retired or {}).items()]
    parts, part_bytes = make_parts(entries, bins)
    root = Manifest(
        outlet=outlet, version=version, created=created, expires=created + timedelta(days=7),
        key_id=key.public.key_id_hex, mirror=mirror,
        mirrors=(MirrorEntry(mirror, "http://127.0.0.1:9/"),), parts=parts,
        previous=sha256_hex(previous) if previous else None, previous_parts=previous_parts,
    ).to_bytes()
    for path, data in {**files, **part_bytes}.items():
        (tree / path).parent.mkdir(parents=True, exist_ok=True)
        (tree / path).write_bytes(data)
    (tree / MANIFEST_NAME).write_bytes(root)
    comment = f"timestamp:{int(created.timestamp())} outlet:{outlet} version:{version}"
    (tree / SIGNATURE_NAME).write_bytes(sign(root, key, comment).to_bytes())
    return root


# The key the verify page of a rendered site ships (a build uses the outlet's).
PAGE_KEY = SecretKey(b"\1" * 8, b"\2" * 32).public


def render_site(config: Config, articles: Sequence[Article], *, built: datetime,
                version: int, public_key: str | None = None) -> dict[str, bytes]:
    """Every file the build renders that all mirrors share, by path, rendered at once with
    the build's own renderers (the build does the same, a changed part at a time).
    Articles without a ``seq`` are numbered in the order given."""
    env = make_environment(config.build.templates, config.outlet.language)
    css = stylesheet(env)
    style = stylesheet_path(css)
    numbered = [a if a.seq else replace(a, seq=i) for i, a in enumerate(articles, 1)]
    site = {style: css, FAVICON: favicon(env)}
    for article in numbered:
        site[article_path(article)] = render_article(env, config, article, style)
    size = config.build.archive_page_size
    pages = (len(numbered) + size - 1) // size
    groups = []
    for page in range(1, pages + 1):
        group = [a for a in numbered if (a.seq - 1) // size + 1 == page]
        site[archive_path(page)] = render_archive_page(env, config, page, pages, group, style)
        dates = [d for a in group if (d := a.sort_time) is not None]
        groups.append((page, len(group), min(dates, default=None), max(dates, default=None)))
    site[ARCHIVE_INDEX] = render_archive_index(env, config, groups[::-1], style)
    site["index.html"] = render_home(env, config,
                                     newest_first(numbered)[:config.build.home_articles],
                                     pages=pages, version=version, built=built,
                                     stylesheet=style)
    site["mirrors.html"] = render_mirrors(env, config, version=version, built=built,
                                          stylesheet=style, public_key=public_key)
    site["mirrors.json"] = mirrors_json(config, built=built)
    js = verify_script(env)
    site[verify_script_path(js)] = js
    site["verify.html"] = render_verify(env, config, stylesheet=style,
                                        script=verify_script_path(js), public_key=PAGE_KEY)
    return site


def style_of(site: Mapping[str, bytes]) -> str:
    """The stylesheet's path: its name carries its content hash."""
    return next(p for p in site if p.startswith("style.") and p.endswith(".css"))


def bundle_entries(bundle: Bundle, mirror: str) -> dict[str, FileEntry]:
    """Every entry of ``mirror``'s root in a built version, its parts read from the store."""
    source = bundle.source(mirror)
    return entries_of(source.root(), source.lookup)


def zip_tree(tree: Path, archive: Path | BinaryIO, extra: Sequence[tuple[str, bytes]] = (),
             compression: int = zipfile.ZIP_STORED) -> None:
    """Write the files under ``tree`` into a zip at the archive's root, after ``extra``
    entries (name, bytes)."""
    with zipfile.ZipFile(archive, "w", compression) as z:
        for name, data in extra:
            z.writestr(name, data)
        for path in sorted(tree.rglob("*")):
            if path.is_file():
                z.write(path, path.relative_to(tree).as_posix())
