"""The build stage: render the site, write per-mirror feeds, the manifest, and sign it.

A build is a new **version** (a monotonic integer) written under
``<state>/builds/<version>/<mirror>/``: one complete site tree per mirror.  The pages,
images and mirror list are identical on every mirror; the feeds (which link to that
mirror's own copies) and so the manifest and signature differ.  Images are hard links to
the blob store, so a tree costs little more than its pages.

The bundle directory is written under a temporary name and renamed when complete, so a
build killed half-way leaves nothing that publish could pick up.
"""

from __future__ import annotations

import os
import shutil
import zipfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from mirrorkit.build.render import render_feeds, render_site
from mirrorkit.config import Config
from mirrorkit.errors import BuildError, ConfigError, KeyFileError, VerifyError
from mirrorkit.manifest import (
    MANIFEST_NAME,
    SIGNATURE_NAME,
    FileEntry,
    Manifest,
    MirrorEntry,
    RetiredEntry,
    media_type,
    sha256_hex,
)
from mirrorkit.sign import load_public_key, load_secret_key, sign
from mirrorkit.store import Store

KEEP_BUILDS = 3


@dataclass(frozen=True)
class Bundle:
    version: int
    path: Path
    trees: Mapping[str, Path]

    @classmethod
    def open(cls, path: Path, version: int) -> Bundle:
        trees = {p.name: p for p in sorted(path.iterdir()) if (p / MANIFEST_NAME).is_file()}
        return cls(version=version, path=path, trees=trees)

    def manifest(self, mirror: str) -> Manifest:
        return Manifest.from_bytes((self.trees[mirror] / MANIFEST_NAME).read_bytes())


def latest_bundle(store: Store) -> Bundle | None:
    version = store.last_version()
    path = store.build_path(version) if version else None
    if path is None or not path.is_dir():
        return None
    return Bundle.open(path, version)


def build(config: Config, store: Store, *, now: datetime | None = None,
          progress: Callable[[str], None] | None = None) -> Bundle:
    """Render, sign and write a new version; returns the bundle."""
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
    # What the store held when this build read it: sync rebuilds if articles changed since.
    started = now or datetime.now(UTC)
    created = started.replace(microsecond=0)
    expires = created + config.signing.expires_after
    previous = latest_bundle(store)
    version = store.last_version() + 1
    articles = store.articles()
    say = progress or (lambda _msg: None)
    say(f"building version {version}: {len(articles)} articles, {len(config.mirrors)} mirrors")

    site = render_site(config, articles, built=created, version=version,
                       public_key=public.to_text())
    media = sorted({name for a in articles for name in a.media})
    mirrors = tuple(MirrorEntry(m.name, m.public_url) for m in config.mirrors)

    final = store.builds_dir / f"{version:06d}"
    tmp = store.builds_dir / f".{version:06d}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        for mirror in config.mirrors:
            tree = tmp / mirror.name
            files: dict[str, bytes] = dict(site)
            files.update(render_feeds(config, articles, mirror, built=created))
            entries = [_write(tree, path, data) for path, data in files.items()]
            entries += [_link_media(store, tree, name) for name in media]
            old = _previous_manifest(previous, mirror.name)
            manifest = Manifest(
                outlet=config.outlet.id, version=version, created=created, expires=expires,
                key_id=public.key_id_hex, mirror=mirror.name, mirrors=mirrors,
                files=tuple(sorted(entries, key=lambda e: e.path)),
                previous=sha256_hex(old.to_bytes()) if old else None,
                retired=_retired(old, entries, created, config.publish.grace.total_seconds()),
            )
            manifest_bytes = manifest.to_bytes()
            comment = (f"timestamp:{int(created.timestamp())} outlet:{config.outlet.id} "
                       f"version:{version} mirror:{mirror.name} "
                       f"expires:{expires.strftime('%Y-%m-%dT%H:%M:%SZ')}")
            signature = sign(manifest_bytes, secret, comment)
            (tree / MANIFEST_NAME).write_bytes(manifest_bytes)
            (tree / SIGNATURE_NAME).write_bytes(signature.to_bytes())
        # A build killed between this rename and record_build left a folder that no
        # record names; this version number is ours, so it goes.
        shutil.rmtree(final, ignore_errors=True)
        tmp.rename(final)
    except OSError as e:
        shutil.rmtree(tmp, ignore_errors=True)
        raise BuildError(f"cannot write the bundle: {e}", where=str(tmp)) from e
    store.record_build(version, started, final)
    _prune(store, version)
    say(f"built version {version} at {final}")
    return Bundle.open(final, version)


def write_archive(bundle: Bundle, mirror: str, out: Path) -> Path:
    """One zip of a mirror's whole site with its manifest and signature, for readers to
    pass on (USB stick, messenger) and open from ``file://``; ``mirrorkit verify`` checks
    it.  Entries are stored in manifest order with a fixed time, so the same version gives
    the same bytes."""
    tree = bundle.trees[mirror]
    names = [f.path for f in bundle.manifest(mirror).files] + [MANIFEST_NAME, SIGNATURE_NAME]
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp")
    with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED) as z:
        for name in names:
            info = zipfile.ZipInfo(name, date_time=(2000, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            z.writestr(info, (tree / name).read_bytes())
    tmp.replace(out)
    return out


def _write(tree: Path, path: str, data: bytes) -> FileEntry:
    target = tree / path
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(data)
    return FileEntry(path, len(data), sha256_hex(data), media_type(path))


def _link_media(store: Store, tree: Path, name: str) -> FileEntry:
    info = store.media(name)
    if info is None:
        raise BuildError("image named by an article is not in the store", where=name)
    source = store.blob_path(info.sha256)
    target = tree / "media" / name
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(source, target)
    except OSError:
        shutil.copyfile(source, target)
    return FileEntry(f"media/{name}", info.size, info.sha256, info.media_type)


def _previous_manifest(previous: Bundle | None, mirror: str) -> Manifest | None:
    if previous is None or mirror not in previous.trees:
        return None
    try:
        return previous.manifest(mirror)
    except (OSError, VerifyError):
        return None


def _retired(old: Manifest | None, entries: list[FileEntry], now: datetime,
             grace_seconds: float) -> tuple[RetiredEntry, ...]:
    """Files the previous version served that this one drops, still within the grace."""
    if old is None:
        return ()
    current = {e.path for e in entries}
    retired = {r.path: r for r in old.retired
               if (now - r.since).total_seconds() < grace_seconds}
    for f in old.files:
        if f.path not in current:
            retired[f.path] = RetiredEntry(f.path, f.size, f.sha256, now)
    return tuple(r for path, r in sorted(retired.items()) if path not in current)


def _prune(store: Store, version: int) -> None:
    for path in store.builds_dir.iterdir():
        name = path.name
        old = name.isdigit() and int(name) <= version - KEEP_BUILDS
        if old or (name.startswith(".") and name.endswith(".tmp")):
            shutil.rmtree(path, ignore_errors=True)
