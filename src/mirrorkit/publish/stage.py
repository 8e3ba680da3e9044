"""Bring a mirror to a new version so that readers never meet a broken copy.

The live ``manifest.json`` is the commit point: readers and verifiers trust what it names,
so it is replaced only once everything it will name is in place.  One publish runs::

    read     GET the live root.  The same bytes as ours: nothing to do (one request).
             Otherwise GET its signature; a root signed by the outlet's key is the plan's
             basis, and only the parts whose hashes differ from ours are compared (read
             from the local store when held, else from the mirror, each capped at its
             signed size).  A root that is missing or not signed by the key makes the
             mirror *unknown*: it is listed, and every file is sent.
    stage 1  upload paths the live root does not name (new files, new parts) —
             invisible to readers until the commit
    stage 2  replace paths the live root names with other content (home page, feeds,
             changed pages), then the signature, then ``manifest.json`` LAST — the
             commit.  If that last write fails, the old signature is put back
    stage 3  delete what the live root named and the new one names nowhere (the build
             keeps replaced files as ``retired`` for the grace window, and replaced
             parts as ``previous_parts`` for one version)

So the cost of a publish follows what changed: a no-op costs one GET; ten new articles
cost the GETs of the root and signature, the puts of what changed and of a few parts.

Trust comes only from signed data (DESIGN invariant 10): what to skip and what to delete
is decided from a root whose signature verifies with the outlet's key.  An unsigned or
forged root neither freezes publishing (its version is not believed) nor spares a
tampered file (its hashes are not believed).

Guarantees:

- A failure stops the publish at once (running uploads finish, queued ones are dropped)
  and raises :class:`~mirrorkit.errors.PublishError` naming the mirror and the object.
  Nothing the live manifest names has been removed, so the mirror still serves the old
  version whole; the next run completes the work.
- Every uploaded file is checked against its manifest entry (size and SHA-256) before it
  leaves the machine, and S3 checks it again on arrival (Content-MD5).
- A publish into an unknown root that holds files the new version does not name is
  refused rather than deleting them, unless the root's (unsigned) manifest names this
  outlet: a mirror pointed at the wrong directory must not be wiped.
- A publish never takes a mirror backwards: a version older than the live signed one, or
  the same version with other content, is refused.

Accepted window: during stage 2, replaced files and the signature are already new while
the old manifest is still live, so for those few objects a verifier can see a hash or
signature mismatch for the seconds stage 2 takes.  One publisher per mirror at a time is
assumed.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor, as_completed
from dataclasses import dataclass, replace
from pathlib import Path

from mirrorkit.bundle import SiteSource, TreeSource
from mirrorkit.errors import MirrorkitError, PublishError, VerifyError
from mirrorkit.manifest import (
    MANIFEST_NAME,
    MAX_ROOT_SIZE,
    MAX_SIGNATURE_SIZE,
    SIGNATURE_NAME,
    FileEntry,
    Manifest,
    PartRef,
    decode_part,
    media_type,
    sha256_hex,
)
from mirrorkit.publish.base import DELETE, LIST, Backend, cache_control
from mirrorkit.sign import PublicKey
from mirrorkit.verify import authentic_root

Progress = Callable[[str], None]

_CONTROL_FILES = frozenset({MANIFEST_NAME, SIGNATURE_NAME})
_MANIFEST_CACHE = cache_control(60)


@dataclass(frozen=True)
class PublishResult:
    """What one publish did (or, with ``dry_run``, would do) to one mirror.

    ``uploaded`` and ``bytes_uploaded`` include the manifest and its signature;
    ``written`` lists the files and parts sent (what a check after publish reads back).
    """

    mirror: str
    version: int
    uploaded: int
    skipped: int
    deleted: int
    bytes_uploaded: int
    dry_run: bool
    written: tuple[FileEntry, ...] = ()


@dataclass(frozen=True)
class Plan:
    """The work of one publish, decided before anything is written."""

    first: tuple[FileEntry, ...]    # stage 1: not named by the live root
    replace: tuple[FileEntry, ...]  # stage 2: named by the live root with other content
    skipped: int                    # already on the mirror as the live root says
    delete: tuple[str, ...]         # stage 3
    foreign: tuple[str, ...]        # unnamed objects found in a root that is not ours
    before: tuple[FileEntry, ...] = ()  # what the live root names at the replaced paths


def plan_publish(
    new: Mapping[str, FileEntry],
    old: Mapping[str, FileEntry] | None,
    *,
    present: Mapping[str, int] | None = None,
    ours: bool = True,
) -> Plan:
    """Decide each file's stage.

    ``new`` and ``old`` are the entries (files, retired files and parts) of the new and
    the live signed root, over the same bins: bins whose parts are equal may be left out
    of both.  ``old`` is None for an unknown mirror; then ``present`` is its listing
    (path to size), if it can be listed, and ``ours`` whether its unsigned manifest names
    this outlet.
    """
    first: list[FileEntry] = []
    replacing: list[FileEntry] = []
    replaced: list[FileEntry] = []
    skipped = 0
    for entry in new.values():
        before = old.get(entry.path) if old is not None else None
        if entry.same_content(before):
            skipped += 1
        elif before is None:
            # A retired file is kept only for readers of older pages: never sent again.
            if entry.retired is None:
                first.append(entry)
        else:
            replacing.append(entry)
            replaced.append(before)
    if old is not None:
        delete = tuple(sorted(set(old) - set(new)))
        foreign: tuple[str, ...] = ()
    else:
        delete = tuple(sorted(set(present or ()) - set(new) - _CONTROL_FILES))
        foreign = () if ours else delete
    return Plan(tuple(sorted(first, key=_order)), tuple(sorted(replacing, key=_order)),
                skipped, delete, foreign, tuple(replaced))


def _order(entry: FileEntry) -> tuple[bool, str]:
    # Parts last within a stage: a reader who finds a part finds what it names.
    return entry.path.startswith("parts/"), entry.path


def publish_tree(
    backend: Backend,
    source: SiteSource | Path,
    *,
    key: PublicKey | None = None,
    concurrency: int = 8,
    dry_run: bool = False,
    progress: Progress | None = None,
) -> PublishResult:
    """Publish one mirror's version from ``source`` (a built version or a site tree) to
    ``backend``.  ``key`` is the outlet's public key: without it the live root cannot
    be trusted, and every file is sent."""
    say: Progress = progress or (lambda _: None)
    if isinstance(source, Path):
        source = TreeSource(source)
    name = backend.name
    try:
        root_bytes = source.root()
        signature = source.signature()
        new = Manifest.from_bytes(root_bytes)
    except MirrorkitError as e:
        raise PublishError(e.what, where=f"mirror {name}: {e.where or source.label}",
                           hint="rebuild with 'mirrorkit build'") from e

    live_bytes = backend.get(MANIFEST_NAME, limit=MAX_ROOT_SIZE)
    if live_bytes == root_bytes:
        say(f"{name}: version {new.version} is already live")
        return PublishResult(name, new.version, 0, 0, 0, 0, dry_run)
    live = None
    live_sig = None
    if live_bytes is not None and key is not None:
        live_sig = backend.get(SIGNATURE_NAME, limit=MAX_SIGNATURE_SIZE)
        live = authentic_root(live_bytes, live_sig, key) if live_sig is not None else None
        if live is not None and live.outlet != new.outlet:
            live = None
    if live is not None:
        _refuse_going_back(name, new, live)
        plan = plan_publish(*_changed_entries(backend, source, new, live))
    else:
        plan = _plan_unknown(backend, source, new, live_bytes)

    can_delete = DELETE in backend.capabilities
    deleting = plan.delete if can_delete else ()
    say(f"{name}: version {new.version}: {len(plan.first)} new, {len(plan.replace)} changed,"
        f" {plan.skipped} unchanged, {len(deleting)} to delete")
    sending = plan.first + plan.replace
    control = len(root_bytes) + len(signature)
    if dry_run:
        return PublishResult(name, new.version, len(sending) + 2, plan.skipped,
                             len(deleting), sum(f.size for f in sending) + control,
                             dry_run=True, written=sending)

    backend.discard_partial_writes()
    # What stage 2 overwrites is kept, so a publish that fails before its commit can leave
    # the live version whole: the old files back, the new ones it does not name gone.
    previous: dict[str, bytes | None] = {}
    try:
        sent = _upload(backend, source, plan.first, concurrency, say)
        # From the local store where it still holds them: no download per replaced file.
        previous = {f.path: source.cached(f) or backend.get(f.path) for f in plan.before}
        sent += _upload(backend, source, plan.replace, concurrency, say)
        _commit(backend, root_bytes, signature,
                live_sig if live is not None else backend.get(SIGNATURE_NAME,
                                                              limit=MAX_SIGNATURE_SIZE))
    except PublishError:
        _roll_back(backend, root_bytes, live, plan, previous)
        raise
    say(f"{name}: version {new.version} is live")

    if deleting:
        backend.delete(deleting)
        say(f"{name}: deleted {len(deleting)} stale files")
    return PublishResult(name, new.version, len(sending) + 2, plan.skipped, len(deleting),
                         sent + control, dry_run=False, written=sending)


def _changed_entries(backend: Backend, source: SiteSource, new: Manifest, live: Manifest,
                     ) -> tuple[dict[str, FileEntry], dict[str, FileEntry]]:
    """The entries of the bins whose parts differ between ``new`` and ``live``, plus
    each root's parts as entries: the only places a plan can find a difference."""
    if new.bins == live.bins:
        bins = [i for i in range(new.bins) if new.parts[i] != live.parts[i]]
    else:
        bins = list(range(new.bins))
    new_entries: dict[str, FileEntry] = {}
    for i in bins:
        ref = new.parts[i]
        for entry in decode_part(source.read(ref.entry()), ref, i, new.bins):
            new_entries[entry.path] = entry
    old_entries: dict[str, FileEntry] = {}
    old_bins = bins if new.bins == live.bins else range(live.bins)
    for i in old_bins:
        ref = live.parts[i]
        for entry in decode_part(_live_part(backend, source, ref), ref, i, live.bins):
            old_entries[entry.path] = entry
    for ref in new.parts:
        new_entries[ref.path] = ref.entry()
    for ref in new.previous_parts:
        # Kept one more version for verifiers that read the old root: optional, as retired.
        new_entries[ref.path] = replace(ref.entry(), retired=new.created)
    for ref in live.parts + live.previous_parts:
        old_entries[ref.path] = ref.entry()
    return new_entries, old_entries


def _live_part(backend: Backend, source: SiteSource, ref: PartRef) -> bytes:
    """A part of the live root: from the local store if it holds it, else the mirror."""
    data = source.cached(ref.entry())
    if data is not None:
        return data
    data = backend.get(ref.path, limit=ref.size)
    if data is None or sha256_hex(data) != ref.sha256:
        raise PublishError(
            f"{ref.path}, named by the mirror's signed manifest, is missing or damaged",
            where=f"mirror {backend.name}",
            hint="the mirror was changed by hand; 'mirrorkit verify' shows what else is")
    return data


def _plan_unknown(backend: Backend, source: SiteSource, new: Manifest,
                  live_bytes: bytes | None) -> Plan:
    """A mirror without a root signed by this outlet's key: send every file."""
    entries: dict[str, FileEntry] = {}
    for i, ref in enumerate(new.parts):
        try:
            for entry in decode_part(source.read(ref.entry()), ref, i, new.bins):
                entries[entry.path] = entry
        except (VerifyError, MirrorkitError) as e:
            raise PublishError(str(e), where=f"mirror {backend.name}: {source.label}",
                               hint="rebuild with 'mirrorkit build'") from e
        entries[ref.path] = ref.entry()
    # Retired files are not sent to a mirror that never had them.
    entries = {p: e for p, e in entries.items() if e.retired is None}
    present = ({o.path: o.size for o in backend.list()}
               if LIST in backend.capabilities else None)
    outlet = None
    if live_bytes is not None:
        try:
            outlet = Manifest.from_bytes(live_bytes).outlet
        except VerifyError:
            outlet = None
    plan = plan_publish(entries, None, present=present, ours=outlet == new.outlet)
    if plan.foreign:
        if live_bytes is None:
            why = "the mirror has no manifest.json"
        elif outlet is None:
            why = "the mirror's manifest.json is not a mirrorkit manifest"
        else:
            why = f"the mirror's manifest.json is for outlet {outlet!r}"
        raise PublishError(
            f"refusing to publish: {why} and the mirror holds {len(plan.foreign)} files that "
            f"the bundle does not name, e.g. {plan.foreign[0]}",
            where=f"mirror {backend.name}",
            hint="point the mirror at an empty directory, bucket or prefix, or empty it",
        )
    return plan


def publish_all(
    sources: Mapping[str, SiteSource | Path],
    backends: Mapping[str, Backend],
    concurrency: int = 8,
    dry_run: bool = False,
    *,
    key: PublicKey | None = None,
    progress: Progress | None = None,
) -> dict[str, PublishResult | PublishError]:
    """Publish every backend's source in parallel; one mirror failing never stops another.

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
        source = sources.get(name)
        if source is None:
            raise PublishError("no bundle was built for this mirror", where=f"mirror {name}")
        try:
            return publish_tree(backends[name], source, key=key, concurrency=concurrency,
                                dry_run=dry_run, progress=say)
        except VerifyError as e:
            raise PublishError(str(e), where=f"mirror {name}") from e
        except MirrorkitError as e:
            if isinstance(e, PublishError):
                raise
            raise PublishError(e.what, where=f"mirror {name}: {e.where}", hint=e.hint) from e

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

def _refuse_going_back(mirror: str, new: Manifest, live: Manifest) -> None:
    """Raise if publishing ``new`` over this outlet's signed ``live`` root would go back."""
    if live.version > new.version:
        what = (f"the mirror is at version {live.version}, newer than this bundle's "
                f"version {new.version}")
    elif live.version == new.version:
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


def _commit(backend: Backend, root: bytes, signature: bytes,
            old_signature: bytes | None) -> None:
    """Write the signature, then the manifest: the commit.

    The signature goes first, so a reader who sees the new manifest finds its signature.
    If the manifest cannot be written, the old signature is put back (best effort), so the
    mirror goes on serving the old version with a signature that verifies.
    """
    backend.put(SIGNATURE_NAME, signature, media_type(SIGNATURE_NAME), cache=_MANIFEST_CACHE)
    try:
        backend.put(MANIFEST_NAME, root, media_type(MANIFEST_NAME), cache=_MANIFEST_CACHE)
    except PublishError:
        _restore_signature(backend, root, signature, old_signature)
        raise


def _roll_back(backend: Backend, root: bytes, live: Manifest | None, plan: Plan,
               previous: Mapping[str, bytes | None]) -> None:
    """Best effort after a failed publish: put back what stage 2 replaced and remove what
    stage 1 added.  A mirror with no signed root keeps its uploads, for the next run."""
    try:
        if live is None or backend.get(MANIFEST_NAME, limit=MAX_ROOT_SIZE) == root:
            return  # nothing to protect, or the commit landed after all
        for path, data in previous.items():
            if data is not None:
                backend.put(path, data, media_type(path), cache=cache_control(60))
        added = [f.path for f in plan.first]
        if added and DELETE in backend.capabilities:
            backend.delete(added)
    except PublishError:
        pass  # the caller reports the original failure; the next run completes the work


def _restore_signature(
    backend: Backend, root: bytes, signature: bytes, old_signature: bytes | None
) -> None:
    if old_signature == signature:
        return
    try:
        # A write reported as failed may still have landed (a lost response); then the new
        # signature is the right one.
        if backend.get(MANIFEST_NAME, limit=MAX_ROOT_SIZE) == root:
            return
        if old_signature is not None:
            backend.put(SIGNATURE_NAME, old_signature, media_type(SIGNATURE_NAME),
                        cache=_MANIFEST_CACHE)
        elif DELETE in backend.capabilities:
            backend.delete([SIGNATURE_NAME])
    except PublishError:
        pass  # best effort: the caller reports the original failure


def _upload(
    backend: Backend,
    source: SiteSource,
    entries: Sequence[FileEntry],
    concurrency: int,
    say: Progress,
) -> int:
    """Upload ``entries`` in parallel; returns bytes sent.  Stops at the first failure."""
    if not entries:
        return 0
    # Parts go after the files they name (sorted last): a kill between leaves no part
    # naming a file that is not there yet.
    files = [e for e in entries if not e.path.startswith("parts/")]
    parts = [e for e in entries if e.path.startswith("parts/")]
    sent = 0
    for group in (files, parts):
        sent += _upload_group(backend, source, group, concurrency, say)
    return sent


def _upload_group(backend: Backend, source: SiteSource, entries: Sequence[FileEntry],
                  concurrency: int, say: Progress) -> int:
    if not entries:
        return 0

    def one(entry: FileEntry) -> int:
        try:
            data = source.read(entry)
        except MirrorkitError as e:
            raise PublishError(f"cannot read {entry.path} from the bundle: {e.what}",
                               where=f"mirror {backend.name}: {e.where}", hint=e.hint) from e
        if len(data) != entry.size or sha256_hex(data) != entry.sha256:
            raise PublishError(
                f"bundle file {entry.path} does not match its manifest entry",
                where=f"mirror {backend.name}: {source.label}",
                hint="rebuild with 'mirrorkit build'",
            )
        backend.put(entry.path, data, entry.type,
                    cache=cache_control(source.max_age(entry)))
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
