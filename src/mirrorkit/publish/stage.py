"""Bring a mirror to a new version so that readers never meet a broken copy.

The live ``manifest.json`` is the commit point: readers and verifiers trust what it names,
so it is replaced only once everything it will name is in place.  One publish runs::

    plan     read the bundle's manifest and the mirror's live one; list the mirror
    stage 1  upload paths the live manifest does not name (new files, and repairs of
             named files found missing) — invisible to readers until the commit
    stage 2  replace paths the live manifest names (in ``files`` or ``retired``) with
             other content (the pointers: home page, feeds, mirror list; pages that
             changed; retired pages brought back changed), then the signature,
             then ``manifest.json`` LAST — the commit.  If that last write fails, the old
             signature is put back, so the old manifest still verifies
    stage 3  delete what the new manifest names neither in ``files`` nor in ``retired``
             (the build keeps files in ``retired`` for the grace window)

Guarantees:

- A failure stops the publish at once (running uploads finish, queued ones are dropped)
  and raises :class:`~mirrorkit.errors.PublishError` naming the mirror and the object.
  Nothing the live manifest names has been removed, so the mirror still serves the old
  version whole; the next run skips what already arrived and completes the work.
- Every uploaded file is checked against the bundle's manifest (size and SHA-256) before
  it leaves the machine, and S3 checks it again on arrival (Content-MD5).
- The live manifest is not trusted: it only lets unchanged files be skipped, and only when
  the mirror's listing shows the object present with the listed size.
- The root is *ours* only if its live manifest parses and names this outlet.  A publish
  into a root that is not ours and holds files the bundle does not name is refused rather
  than deleting them: a mirror path pointed at the wrong directory (or at another app's
  site with its own ``manifest.json``) must not be wiped.  A first publish that was
  interrupted left only files the bundle names, so it is completed, not refused.
- A publish never takes an owned mirror backwards: a bundle older than the live version,
  or the same version with other content, is refused (a state directory restored from a
  backup restarts the version count; readers and verifiers would see a rollback).

Accepted window: during stage 2, replaced files (pointers, changed pages) and the
signature are already new while the old manifest is still live, so for those few objects
a verifier can see a hash or signature mismatch for the seconds stage 2 takes.  Every
*new* file is in place before anything links to it, so readers following links never
meet a missing file.  One publisher per mirror at a time is assumed.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path

from mirrorkit.errors import PublishError, VerifyError
from mirrorkit.manifest import (
    MANIFEST_NAME,
    POINTERS,
    SIGNATURE_NAME,
    FileEntry,
    Manifest,
    RetiredEntry,
    media_type,
    sha256_hex,
)
from mirrorkit.publish.base import DELETE, LIST, Backend, publish_error

Progress = Callable[[str], None]

_CONTROL_FILES = frozenset({MANIFEST_NAME, SIGNATURE_NAME})


@dataclass(frozen=True)
class PublishResult:
    """What one publish did (or, with ``dry_run``, would do) to one mirror.

    ``uploaded`` and ``bytes_uploaded`` include the manifest and its signature.
    """

    mirror: str
    version: int
    uploaded: int
    skipped: int
    deleted: int
    bytes_uploaded: int
    dry_run: bool


@dataclass(frozen=True)
class Plan:
    """The work of one publish, decided before anything is written."""

    first: tuple[FileEntry, ...]    # stage 1: not named by the live manifest, or missing
    replace: tuple[FileEntry, ...]  # stage 2: named by the live manifest with other content
                                    # (as a file or as retired)
    skipped: int                    # already on the mirror as listed
    delete: tuple[str, ...]         # stage 3
    foreign: tuple[str, ...]        # unnamed objects found in a root that is not ours


def plan_publish(
    new: Manifest,
    live: Manifest | None,
    present: Mapping[str, int],
    *,
    listed: bool = True,
) -> Plan:
    """Decide each file's stage from the new manifest, the live one and what is present.

    ``live`` is the mirror's parsed manifest, or None if it has none or it is unreadable.
    ``present`` maps paths on the mirror to sizes: the whole listing if ``listed``, else
    only the paths that were looked up one by one (then deletion falls back to what the
    old manifest named).
    """
    old = live.by_path if live else {}
    # Retired files are named by the live manifest too (verify checks them while they are
    # listed): one that comes back with other content is replaced in stage 2, not stage 1.
    old_retired = {r.path: r for r in live.retired} if live else {}
    first: list[FileEntry] = []
    replace: list[FileEntry] = []
    skipped = 0
    for entry in new.files:
        before: FileEntry | RetiredEntry | None = old.get(entry.path)
        if before is None:
            before = old_retired.get(entry.path)
        same = (before is not None and before.sha256 == entry.sha256
                and before.size == entry.size)
        if same and present.get(entry.path) == entry.size:
            skipped += 1
        elif before is None or same:
            first.append(entry)
        else:
            replace.append(entry)

    keep = {f.path for f in new.files} | {r.path for r in new.retired} | _CONTROL_FILES
    candidates = set(present) if listed else set(old)
    if not listed and live is not None:
        candidates |= {r.path for r in live.retired}
    delete = tuple(sorted(candidates - keep))
    # Any object called manifest.json is not enough to make the root ours: a web app's
    # manifest.json, or an unreadable one, must not license deleting everything beside it.
    foreign = () if is_ours(new, live) else delete
    return Plan(tuple(first), tuple(replace), skipped, delete, foreign)


def is_ours(new: Manifest, live: Manifest | None) -> bool:
    """Whether the live manifest shows that this outlet's publishes own the mirror root."""
    return live is not None and live.outlet == new.outlet


def fetch_live_manifest(backend: Backend) -> Manifest | None:
    """The mirror's current manifest, or None if it has none or it is unreadable.

    Not verified: publish uses it only to skip uploads, never to decide what is safe.
    Transport errors raise :class:`PublishError` — an unreachable mirror is not empty.
    """
    return _parse_live(backend.get(MANIFEST_NAME))


def _parse_live(data: bytes | None) -> Manifest | None:
    if data is None:
        return None
    try:
        return Manifest.from_bytes(data)
    except VerifyError:
        return None


def publish_tree(
    backend: Backend,
    tree: Path,
    *,
    concurrency: int = 8,
    dry_run: bool = False,
    progress: Progress | None = None,
) -> PublishResult:
    """Publish the built site in ``tree`` (one mirror's bundle) to ``backend``."""
    say: Progress = progress or (lambda _: None)
    name = backend.name
    manifest_bytes = _read(tree, MANIFEST_NAME, name)
    signature = _read(tree, SIGNATURE_NAME, name)
    try:
        new = Manifest.from_bytes(manifest_bytes)
    except VerifyError as e:
        raise PublishError(
            e.what, where=f"mirror {name}: {tree / MANIFEST_NAME}",
            hint="rebuild with 'mirrorkit build'",
        ) from e

    live_bytes = backend.get(MANIFEST_NAME)
    live = _parse_live(live_bytes)
    if live is not None and is_ours(new, live):
        _refuse_going_back(name, new, manifest_bytes, live, live_bytes)
    listed = LIST in backend.capabilities
    present = _present(backend, new, live, listed)
    plan = plan_publish(new, live, present, listed=listed)
    if plan.foreign:
        if live_bytes is None:
            why = "the mirror has no manifest.json"
        elif live is None:
            why = "the mirror's manifest.json is not a mirrorkit manifest"
        else:
            why = f"the mirror's manifest.json is for outlet {live.outlet!r}"
        raise PublishError(
            f"refusing to publish: {why} and the mirror holds {len(plan.foreign)} files that "
            f"the bundle does not name, e.g. {plan.foreign[0]}",
            where=f"mirror {name}",
            hint="point the mirror at an empty directory, bucket or prefix, or empty it",
        )
    can_delete = DELETE in backend.capabilities
    deleting = plan.delete if can_delete else ()
    say(f"{name}: version {new.version}: {len(plan.first)} new, {len(plan.replace)} changed,"
        f" {plan.skipped} unchanged, {len(deleting)} to delete")

    # Publishing the version that is already live (a sync with nothing new) sends nothing.
    current = (not plan.first and not plan.replace and live_bytes == manifest_bytes
               and backend.get(SIGNATURE_NAME) == signature)
    control = 0 if current else len(manifest_bytes) + len(signature)
    controls = 0 if current else 2
    if dry_run:
        planned = sum(f.size for f in plan.first + plan.replace) + control
        return PublishResult(name, new.version, len(plan.first) + len(plan.replace) + controls,
                             plan.skipped, len(deleting), planned, dry_run=True)

    backend.discard_partial_writes()
    # What stage 2 overwrites is kept, so a publish that fails before its commit can leave
    # the live version whole: the old files back, the new ones it does not name gone.
    previous: dict[str, bytes | None] = {}
    try:
        sent = _upload(backend, tree, plan.first, concurrency, say, replacing=False)
        previous = {f.path: backend.get(f.path) for f in plan.replace}
        sent += _upload(backend, tree, plan.replace, concurrency, say, replacing=True)
        if not current:
            _commit(backend, manifest_bytes, signature)
    except PublishError:
        _roll_back(backend, manifest_bytes, live, plan, previous)
        raise
    if not current:
        say(f"{name}: version {new.version} is live")

    if deleting:
        backend.delete(deleting)
        say(f"{name}: deleted {len(deleting)} stale files")
    return PublishResult(name, new.version, len(plan.first) + len(plan.replace) + controls,
                         plan.skipped, len(deleting), sent + control, dry_run=False)


def publish_all(
    trees: Mapping[str, Path],
    backends: Mapping[str, Backend],
    concurrency: int = 8,
    dry_run: bool = False,
    *,
    progress: Progress | None = None,
) -> dict[str, PublishResult | PublishError]:
    """Publish every backend's tree in parallel; one mirror failing never stops another.

    Returns each mirror's result or its error.  ``progress`` is called under a lock, one
    message at a time.  An exception that is not a :class:`PublishError` is a bug: it is
    raised once every mirror has finished.
    """
    lock = threading.Lock()

    def say(message: str) -> None:
        if progress is not None:
            with lock:
                progress(message)

    def one(name: str) -> PublishResult:
        tree = trees.get(name)
        if tree is None:
            raise PublishError("no bundle was built for this mirror", where=f"mirror {name}")
        return publish_tree(backends[name], tree, concurrency=concurrency, dry_run=dry_run,
                            progress=say)

    with ThreadPoolExecutor(max_workers=max(1, len(backends)),
                            thread_name_prefix="mirror") as pool:
        futures = {name: pool.submit(one, name) for name in backends}
    # Leaving the block waited for every mirror.
    results: dict[str, PublishResult | PublishError] = {}
    for name, future in futures.items():
        error = future.exception()
        if error is None:
            results[name] = future.result()
        elif isinstance(error, PublishError):
            results[name] = error
        else:
            raise error
    return results


# -- helpers ------------------------------------------------------------------------------

def _refuse_going_back(
    mirror: str, new: Manifest, new_bytes: bytes, live: Manifest, live_bytes: bytes | None
) -> None:
    """Raise if publishing ``new`` over this outlet's ``live`` manifest would go backwards."""
    if live.version > new.version:
        what = (f"the mirror is at version {live.version}, newer than this bundle's "
                f"version {new.version}")
    elif live.version == new.version and live_bytes != new_bytes:
        what = (f"the mirror is at version {live.version} with other content than this "
                f"bundle's version {new.version}")
    else:
        return
    raise PublishError(
        f"refusing to publish: {what}",
        where=f"mirror {mirror}",
        hint="the state directory looks older than this mirror (restored from a backup?); "
             "rebuild after raising the version, or publish to an empty mirror",
    )


def _commit(backend: Backend, manifest_bytes: bytes, signature: bytes) -> None:
    """Write the signature, then the manifest: the commit.

    The signature goes first, so a reader who sees the new manifest finds its signature.
    If the manifest cannot be written, the old signature is put back (best effort), so the
    mirror goes on serving the old version with a signature that verifies.
    """
    old_signature = backend.get(SIGNATURE_NAME)
    backend.put(SIGNATURE_NAME, signature, media_type(SIGNATURE_NAME), immutable=False)
    try:
        backend.put(MANIFEST_NAME, manifest_bytes, media_type(MANIFEST_NAME), immutable=False)
    except PublishError:
        _restore_signature(backend, manifest_bytes, signature, old_signature)
        raise


def _roll_back(backend: Backend, manifest_bytes: bytes, live: Manifest | None, plan: Plan,
               previous: Mapping[str, bytes | None]) -> None:
    """Best effort after a failed publish: put back what stage 2 replaced and remove what
    stage 1 added that the live manifest does not name.  A first publish (nothing live)
    keeps its uploads, for the next run to complete."""
    try:
        if live is None or backend.get(MANIFEST_NAME) == manifest_bytes:
            return  # nothing to protect, or the commit landed after all
        for path, data in previous.items():
            if data is not None:
                backend.put(path, data, media_type(path), immutable=False)
        named = {f.path for f in live.files} | {r.path for r in live.retired}
        added = [f.path for f in plan.first if f.path not in named]
        if added and DELETE in backend.capabilities:
            backend.delete(added)
    except PublishError:
        pass  # the caller reports the original failure; the next run completes the work


def _restore_signature(
    backend: Backend, manifest_bytes: bytes, signature: bytes, old_signature: bytes | None
) -> None:
    if old_signature == signature:
        return
    try:
        # A write reported as failed may still have landed (a lost response); then the new
        # signature is the right one.
        if backend.get(MANIFEST_NAME) == manifest_bytes:
            return
        if old_signature is not None:
            backend.put(SIGNATURE_NAME, old_signature, media_type(SIGNATURE_NAME),
                        immutable=False)
        elif DELETE in backend.capabilities:
            backend.delete([SIGNATURE_NAME])
    except PublishError:
        pass  # best effort: the caller reports the original failure


def _read(tree: Path, path: str, mirror: str) -> bytes:
    try:
        return (tree / path).read_bytes()
    except OSError as e:
        raise publish_error(mirror, f"read {path} from the bundle {tree}", e) from e


def _present(
    backend: Backend, new: Manifest, live: Manifest | None, listed: bool
) -> dict[str, int]:
    """Sizes of the objects on the mirror: its listing, or HEADs of the skip candidates."""
    if listed:
        return {o.path: o.size for o in backend.list()}
    old = live.by_path if live else {}
    present: dict[str, int] = {}
    for entry in new.files:
        if old.get(entry.path) == entry:
            info = backend.head(entry.path)
            if info is not None:
                present[entry.path] = info.size
    return present


def _upload(
    backend: Backend,
    tree: Path,
    entries: Sequence[FileEntry],
    concurrency: int,
    say: Progress,
    *,
    replacing: bool,
) -> int:
    """Upload ``entries`` in parallel; returns bytes sent.  Stops at the first failure."""
    if not entries:
        return 0

    def one(entry: FileEntry) -> int:
        data = _read(tree, entry.path, backend.name)
        if len(data) != entry.size or sha256_hex(data) != entry.sha256:
            raise PublishError(
                f"bundle file {entry.path} does not match its manifest entry",
                where=f"mirror {backend.name}: {tree}", hint="rebuild with 'mirrorkit build'",
            )
        # Files replaced in place have shown that they change, so caches must not keep
        # them for a year; the same holds for the pointers from the start.
        immutable = not replacing and entry.path not in POINTERS
        backend.put(entry.path, data, entry.type, immutable=immutable)
        return len(data)

    sent = 0
    with ThreadPoolExecutor(max_workers=max(1, concurrency),
                            thread_name_prefix=f"put-{backend.name}") as pool:
        futures: dict[Future[int], FileEntry] = {pool.submit(one, e): e for e in entries}
        try:
            for future in as_completed(futures):
                sent += future.result()
                say(f"{backend.name}: uploaded {futures[future].path}")
        except BaseException:
            # Drop the queue; the with-block then waits for the uploads already running,
            # so nothing of this publish is still writing when the error surfaces.
            pool.shutdown(wait=True, cancel_futures=True)
            raise
    return sent
