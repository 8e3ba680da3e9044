"""Bring a mirror to a new version so that readers never meet a broken copy.

The live ``manifest.json`` is the commit point: readers and verifiers trust what it names.
One publish runs::

    read     GET the live root.  The same bytes as ours: check its signature and finish
             what an earlier run left to delete, nothing else (two requests).  Otherwise
             GET its signature; a root signed by the outlet's key for this mirror is the
             plan's basis, and only the parts whose hashes differ from ours are compared
             (read from the local store when held, else from the mirror, each capped at
             its signed size).  A root that is missing, not signed by the key or for
             another mirror makes the mirror *unknown*: it is listed and every file sent.
    stage 1  upload what the live root does not name: new files, then the new parts, then
             the signatures of the roots to come under ``signatures/<sha256 of root>``
    commit 1 (only if files change in place) the *transition root*: this version's root
             plus, for each path about to be replaced in place, the contents it may still
             hold.  Signed at publish time, written with a conditional PUT
    stage 2  replace those files in place: at every moment each holds old or new content,
             and the transition root allows both
    commit 2 the final root, conditional on the transition root (or on the live root);
             then ``manifest.json.minisig``
    stage 3  delete what the live root named and the new one names nowhere; the live
             root's parts and signature go at the *next* publish (kept in the journal),
             so a verifier that read the old root still finds them

So at every instant, including after ``kill -9`` anywhere, the mirror verifies: as the old
version, as a declared transition, or as the new version.  ``mirrorkit verify`` reads the
signature by the root's hash, which is in place before the root.  A bare
``minisign -Vm manifest.json`` user can catch one instant: between the PUT of
``manifest.json`` and of ``manifest.json.minisig`` (milliseconds) the two disagree.

Cost follows what changed: a no-op is two GETs; ten new articles cost the GETs of the
root and signature and the PUTs of what changed and of a few parts.

Trust comes only from signed data (DESIGN invariant 10): what to skip and what to delete
is decided from a root whose signature verifies with the outlet's key.

One writer per mirror: both commits are conditional writes (If-Match on the tag of what
this publish saw, If-None-Match on a first publish) where the store supports them (AWS
S3, R2, MinIO, moto), a lock held for the whole publish on directories, and elsewhere a
look just before the write (a short race).  The loser raises
:class:`~mirrorkit.errors.PublishConflictError` and deletes nothing.

Repair (``repair=True``, ``mirrorkit publish --repair`` and ``sync --repair``): once this
version is live, the mirror is read whole — its listing, then each file's MD5 where the
listing gives the store's own (an S3 ETag), else its bytes, hashed — and every file that
differs from what the live root signs is sent again; unnamed files are deleted.  A
normal publish reads only what it plans from; damage elsewhere is mended by repair or by
a sync whose check happens upon it.

Resumable: the journal (the store, per mirror) remembers an unfinished publish; the next
one checks each file it would upload against the mirror by hash (the object's MD5 tag)
and sends only what is missing or different.
"""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor, as_completed
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Protocol

from mirrorkit.bundle import SiteSource, TreeSource, bundle_entries
from mirrorkit.errors import MirrorkitError, PublishConflictError, PublishError, VerifyError
from mirrorkit.manifest import (
    MANIFEST_NAME,
    MAX_ROOT_SIZE,
    MAX_SIGNATURE_SIZE,
    PART_DIR,
    SIGNATURE_DIR,
    SIGNATURE_NAME,
    FileEntry,
    Manifest,
    PartRef,
    bin_of,
    decode_part,
    media_type,
    sha256_hex,
    signature_path,
)
from mirrorkit.publish.base import (
    CONDITIONAL_WRITE,
    DELETE,
    LIST,
    Backend,
    cache_control,
    conflict,
    md5_hex,
)
from mirrorkit.sign import PublicKey
from mirrorkit.verify import authentic_root

Progress = Callable[[str], None]
# How long a transition root stays valid: a sync replaces it within minutes; one left by
# a publisher that died says so (expired) after this.
TRANSITION_LIFETIME = timedelta(days=1)
# Signs a root at publish time (the transition root): returns its bytes and signature.
Signer = Callable[[Manifest], tuple[bytes, bytes]]

_CONTROL_FILES = frozenset({MANIFEST_NAME, SIGNATURE_NAME})
_MANIFEST_CACHE = cache_control(60)


class Journal(Protocol):
    """What a publish remembers about a mirror between runs (the store, in practice)."""

    def get(self, key: str) -> str | None: ...

    def set(self, key: str, value: str | None) -> None: ...


@dataclass(frozen=True)
class PublishResult:
    """What one publish did (or, with ``dry_run``, would do) to one mirror.

    ``uploaded`` and ``bytes_uploaded`` count every PUT (files, parts, signatures, roots);
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
    repaired: int = 0  # files a repair sent again (they are in ``written`` too)


@dataclass(frozen=True)
class Plan:
    """The work of one publish, decided before anything is written."""

    first: tuple[FileEntry, ...]    # stage 1: not (certainly) on the mirror
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
    of both.  An old entry that is retired, or in a declared transition, may not be on
    the mirror as listed: a new file with its content is sent again.  ``old`` is None for
    an unknown mirror; then ``present`` is its listing (path to size), if it can be
    listed, and ``ours`` whether its unsigned manifest names this outlet.
    """
    first: list[FileEntry] = []
    replacing: list[FileEntry] = []
    replaced: list[FileEntry] = []
    skipped = 0
    for entry in new.values():
        before = old.get(entry.path) if old is not None else None
        certain = before is not None and before.retired is None and not before.also
        if entry.same_content(before) and (certain or entry.retired is not None):
            skipped += 1
        elif before is None or (entry.same_content(before) and entry.retired is None):
            # A retired file is kept only for readers of older pages: never sent again.
            if entry.retired is None:
                first.append(entry)
        else:
            replacing.append(entry)
            assert before is not None
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
    return entry.path.startswith(PART_DIR + "/"), entry.path


def publish_tree(
    backend: Backend,
    source: SiteSource | Path,
    *,
    key: PublicKey | None = None,
    signer: Signer | None = None,
    journal: Journal | None = None,
    concurrency: int = 8,
    dry_run: bool = False,
    progress: Progress | None = None,
    repair: bool = False,
) -> PublishResult:
    """Publish one mirror's version from ``source`` (a built version or a site tree) to
    ``backend``.  ``key`` is the outlet's public key: without it the live root cannot be
    trusted, and every file is sent.  ``signer`` signs transition roots: without it,
    files replaced in place are briefly newer than the live root.  ``journal`` carries an
    unfinished publish's state to the next run.  ``repair``: then read the mirror whole
    and mend it (see the module docstring)."""
    if isinstance(source, Path):
        source = TreeSource(source)
    try:
        root_bytes = source.root()
        signature = source.signature()
        new = Manifest.from_bytes(root_bytes)
    except MirrorkitError as e:
        raise PublishError(e.what, where=f"mirror {backend.name}: {e.where or source.label}",
                           hint="rebuild with 'mirrorkit build'") from e
    run = _Publish(backend, source, new, root_bytes, signature, key, signer,
                   journal, concurrency, progress or (lambda _: None))
    if dry_run:
        return run.dry_run()
    with backend.publishing():
        result = run.run()
        return run.repair(result) if repair else result


class _Publish:
    """One publish of one mirror."""

    def __init__(self, backend: Backend, source: SiteSource, new: Manifest, root: bytes,
                 signature: bytes, key: PublicKey | None, signer: Signer | None,
                 journal: Journal | None, concurrency: int, say: Progress):
        self.backend, self.source, self.new = backend, source, new
        self.root, self.signature = root, signature
        self.key, self.signer, self.journal = key, signer, journal
        self.concurrency, self.say = concurrency, say
        self.name = backend.name
        self.puts = 0
        self.sent = 0
        # Without a signer: what stage 2 overwrote, to put back if the commit fails.
        self._previous: dict[str, bytes | None] = {}
        # The live root stage 1 was planned from (None: none), when its writes must only
        # create.
        self._guarded = False
        self._guard: bytes | None = None

    def _still_planned(self) -> bool:
        """Whether the live root is still the one this publish planned from (then an
        object in the way of a new file is a leftover, ours to replace)."""
        return self.backend.get(MANIFEST_NAME, limit=MAX_ROOT_SIZE) == self._guard

    # -- reading the mirror ---------------------------------------------------------------

    def _read_live(self, live_bytes: bytes | None,
                   ) -> tuple[bytes | None, bytes | None, Manifest | None]:
        if live_bytes is None:
            return None, None, None
        live_sig = self.backend.get(signature_path(live_bytes), limit=MAX_SIGNATURE_SIZE)
        if live_sig is None:
            live_sig = self.backend.get(SIGNATURE_NAME, limit=MAX_SIGNATURE_SIZE)
        live = None
        if self.key is not None and live_sig is not None:
            live = authentic_root(live_bytes, live_sig, self.key)
        if live is not None and (live.outlet, live.mirror) != (self.new.outlet, self.new.mirror):
            live = None  # another outlet's, or another mirror's root copied here
        return live_bytes, live_sig, live

    def _plan(self, live_bytes: bytes | None, live: Manifest | None) -> Plan:
        if live is None:
            return _plan_unknown(self.backend, self.source, self.new, live_bytes,
                                 ours=self._get("started") is not None)
        _refuse_going_back(self.name, self.new, self.root, live)
        return plan_publish(*_changed_entries(self.backend, self.source, self.new, live))

    def dry_run(self) -> PublishResult:
        live_bytes = self.backend.get(MANIFEST_NAME, limit=MAX_ROOT_SIZE)
        if live_bytes == self.root:
            return PublishResult(self.name, self.new.version, 0, 0, 0, 0, True)
        live_bytes, _, live = self._read_live(live_bytes)
        plan = self._plan(live_bytes, live)
        transition, now, _later = self._schedule(plan, live, live_bytes)
        sending = plan.first + plan.replace
        commits = [(self.root, self.signature)] + ([transition] if transition else [])
        deleting = len(now) if DELETE in self.backend.capabilities else 0
        return PublishResult(
            self.name, self.new.version, len(sending) + 3 * len(commits), plan.skipped,
            deleting, sum(f.size for f in sending)
            + sum(len(root) + 2 * len(sig) for root, sig in commits), True, sending)

    def _schedule(self, plan: Plan, live: Manifest | None, live_bytes: bytes | None,
                  ) -> tuple[tuple[bytes, bytes] | None, set[str], set[str]]:
        """The transition root (if files change in place and there is a signer), what to
        delete once this version is live, and what to delete at the next real publish:
        the live root's parts and signature, for verifiers that read that root."""
        transition = self._transition(plan) if live is not None and plan.replace else None
        later: set[str] = set()
        if live is not None and live_bytes is not None:
            later = ({p.path for p in live.parts} | {signature_path(live_bytes)}) - (
                self.new.part_paths())
        if transition is not None:
            later.add(signature_path(transition[0]))
        if self.journal is None:
            return transition, set(plan.delete) | later, set()  # nowhere to keep them
        return transition, set(plan.delete) - later, later

    # -- the publish ----------------------------------------------------------------------

    def run(self) -> PublishResult:
        backend, new = self.backend, self.new
        resuming = self._get("started") is not None
        live_bytes = backend.get(MANIFEST_NAME, limit=MAX_ROOT_SIZE)
        if live_bytes == self.root:
            # Already live: only a damaged standard signature is put right, and what an
            # earlier run could not delete goes now.
            if backend.get(SIGNATURE_NAME, limit=MAX_SIGNATURE_SIZE) != self.signature:
                self._put(SIGNATURE_NAME, self.signature, _MANIFEST_CACHE)
            deleted = self._finish_deletes(set())
            self._set("started", None)
            self.say(f"{self.name}: version {new.version} is already live")
            return PublishResult(self.name, new.version, self.puts, 0, deleted, self.sent,
                                 False)
        live_bytes, _, live = self._read_live(live_bytes)
        plan = self._plan(live_bytes, live)
        self.say(f"{self.name}: version {new.version}: {len(plan.first)} to add, "
                 f"{len(plan.replace)} to replace, {len(plan.delete)} to delete")
        self._set("started", sha256_hex(self.root))
        backend.discard_partial_writes()
        transition, now, later = self._schedule(plan, live, live_bytes)
        # Deletes are written down before the commit, so a kill after it loses none: they
        # run once this version is live, or at the next run.  So are the parts and
        # signatures this attempt sends: if it dies, the root that finally goes live may
        # name none of them, and they go then (files it sends are named again, mostly).
        self._remember_deletes(e.path for e in plan.first if e.path.startswith(PART_DIR + "/"))
        self._remember_deletes(now | set(json.loads(self._get("later") or "[]")))
        self._set("later", json.dumps(sorted(later)) if later else None)

        # Stage 1: new files, new parts, then the signatures of the roots to come.
        first = list(plan.first)
        if resuming:
            first = self._missing(first)
        if CONDITIONAL_WRITE in backend.capabilities:
            # Stage 1 creates and never overwrites, so a publisher that lost a race
            # cannot clobber the winner's files before its own commit fails.
            self._guarded, self._guard = True, live_bytes
        try:
            self._upload(first)
            signatures = [(signature_path(self.root), self.signature)]
            if transition is not None:
                signatures.append((signature_path(transition[0]), transition[1]))
            self._guarded = False  # stage 2 replaces on purpose, after a conditional commit
            for path, data in signatures:
                self._put(path, data, _MANIFEST_CACHE)
            expected = md5_hex(live_bytes) if live_bytes is not None else None
            if transition is not None:
                # Commit 1: the transition root allows old and new content where stage 2
                # writes in place.
                expected = self._commit(transition[0], transition[1], expected)
                self._upload(list(plan.replace))
            elif plan.replace:
                self._replace_unsigned(plan)
            self._commit(self.root, self.signature, expected)
        except PublishConflictError:
            raise  # the winner's files are not ours to touch
        except PublishError:
            if transition is None and plan.replace:
                _roll_back(backend, self.root, live, plan, self._previous)
            raise
        self.say(f"{self.name}: version {new.version} is live")

        # Stage 3, unless another publisher has committed meanwhile (its root may name
        # what this one would delete): then the deletes wait, journalled, for a later run.
        if backend.get(MANIFEST_NAME, limit=MAX_ROOT_SIZE) != self.root:
            self._set("started", None)
            raise conflict(self.name, MANIFEST_NAME)
        deleted = self._finish_deletes(now)
        self._set("started", None)
        return PublishResult(self.name, new.version, self.puts, plan.skipped, deleted,
                             self.sent, False, plan.first + plan.replace)

    def _transition(self, plan: Plan) -> tuple[bytes, bytes] | None:
        """The transition root: each replaced path may hold what the live root signs
        there, and nothing older.  It expires within a day (a publisher that died
        mid-way leaves a mirror that says so), and a verifier that saw this version
        settled takes a later transition root of it for a replay."""
        if self.signer is None:
            return None
        froms = []
        for entry in plan.before:
            froms.append((entry.path, (self._now_at(entry),)))
        expires = min(self.new.expires, datetime.now(UTC) + TRANSITION_LIFETIME)
        return self.signer(replace(self.new, transition=tuple(sorted(froms)),
                                   expires=max(expires, self.new.created)))

    def _now_at(self, entry: FileEntry) -> tuple[str, int]:
        """The content at ``entry``'s path: what the live root signs, or, where the live
        root is itself a transition (a publish killed mid-way), the allowed content the
        path really holds (read back), so old contents never pile up."""
        signed = (entry.sha256, entry.size)
        if not entry.also:
            return signed
        allowed = {signed, *entry.also}
        data = _get_quiet(self.backend, entry.path, max(size for _, size in allowed))
        held = (sha256_hex(data), len(data)) if data is not None else signed
        return held if held in allowed else signed

    def _commit(self, root: bytes, signature: bytes, expected: str | None) -> str:
        """Write ``root`` if the live root is still the one this publish read; then the
        standard signature beside it.  Returns the new root's tag."""
        try:
            tag = self.backend.put(MANIFEST_NAME, root, media_type(MANIFEST_NAME),
                                   cache=_MANIFEST_CACHE, if_match=expected,
                                   if_absent=expected is None)
        except PublishConflictError:
            # Our own write may have landed with its answer lost: a retry then finds its
            # condition false.  The root in place being ours is no conflict.
            if self.backend.get(MANIFEST_NAME, limit=MAX_ROOT_SIZE) != root:
                raise
            tag = md5_hex(root)
        self.puts += 1
        self.sent += len(root)
        self._put(SIGNATURE_NAME, signature, _MANIFEST_CACHE)
        return tag

    def _replace_unsigned(self, plan: Plan) -> None:
        """Without a signer: replace in place, keeping what was there to put it back if
        the publish fails before its commit (the old behaviour, with its short window)."""
        self._previous = {
            f.path: self.source.cached(f) or _get_quiet(self.backend, f.path, f.size)
            for f in plan.before
        }
        self._upload(list(plan.replace))

    def _missing(self, entries: list[FileEntry]) -> list[FileEntry]:
        """Of an interrupted publish's uploads, those not on the mirror with our bytes:
        checked by hash (the object's MD5 tag), never taken on trust."""
        def absent(entry: FileEntry) -> bool:
            try:
                return self.backend.tag(entry.path) != md5_hex(self.source.read(entry))
            except MirrorkitError:
                return True

        with ThreadPoolExecutor(max(1, self.concurrency)) as pool:
            flags = list(pool.map(absent, entries))
        todo = [e for e, missing in zip(entries, flags, strict=True) if missing]
        self.say(f"{self.name}: resuming: {len(entries) - len(todo)} of {len(entries)} "
                 "files already there")
        return todo

    def _upload(self, entries: list[FileEntry]) -> None:
        sent = _upload(self.backend, self.source, entries, self.concurrency, self.say,
                       self._still_planned if self._guarded else None)
        self.puts += len(entries)
        self.sent += sent

    def _put(self, path: str, data: bytes, cache: str) -> None:
        self.backend.put(path, data, media_type(path), cache=cache)
        self.puts += 1
        self.sent += len(data)

    # -- repair ---------------------------------------------------------------------------

    def repair(self, result: PublishResult) -> PublishResult:
        """Read the mirror whole, send again every file that differs from what the live
        root (this version's) signs, and delete what it does not name."""
        backend = self.backend
        if backend.get(MANIFEST_NAME, limit=MAX_ROOT_SIZE) != self.root:
            raise conflict(self.name, MANIFEST_NAME)  # never mend under another's root
        named = _all_entries(self.source, self.new)
        listing = ({o.path: o for o in backend.list()}
                   if LIST in backend.capabilities else None)

        def state(entry: FileEntry) -> str:
            """"ok", "wrong" (to send again) or "absent"."""
            if listing is not None:
                info = listing.get(entry.path)
                if info is None:
                    return "absent"
                if info.size != entry.size:
                    return "wrong"
                # (A retired file's bytes may be gone from the store: read it instead.)
                if (info.md5 is not None and entry.retired is None
                        and info.md5 == md5_hex(self.source.read(entry))):
                    return "ok"
            data = _get_quiet(backend, entry.path, entry.size)
            if data is None:
                return "absent"
            return "ok" if sha256_hex(data) == entry.sha256 else "wrong"

        entries = list(named.values())
        with ThreadPoolExecutor(max(1, self.concurrency)) as pool:
            states = list(pool.map(state, entries))
        # A retired file or an old part need not be there; if it is, it must be genuine.
        send = [e for e, st in zip(entries, states, strict=True)
                if e.retired is None and st != "ok"]
        drop = {e.path for e, st in zip(entries, states, strict=True)
                if e.retired is not None and st == "wrong"}
        if listing is not None:
            keep = set(named) | _CONTROL_FILES | {signature_path(self.root)}
            drop |= {p for p in listing if p not in keep and not _ours_by_name(p)}
        self.say(f"{self.name}: repair: {len(send)} files to send again, "
                 f"{len(drop)} to delete, of {len(listing or named)} read")
        self._upload(sorted(send, key=_order))
        deleted = 0
        if drop and DELETE in backend.capabilities:
            backend.delete(sorted(drop))
            deleted = len(drop)
        if backend.get(SIGNATURE_NAME, limit=MAX_SIGNATURE_SIZE) != self.signature:
            self._put(SIGNATURE_NAME, self.signature, _MANIFEST_CACHE)
        return replace(result, uploaded=result.uploaded + len(send),
                       deleted=result.deleted + deleted,
                       bytes_uploaded=result.bytes_uploaded + sum(e.size for e in send),
                       written=result.written + tuple(send), repaired=len(send))

    # -- deletes across runs ----------------------------------------------------------------

    def _finish_deletes(self, now: set[str]) -> int:
        """Delete ``now`` and what earlier runs left due, except what the new (live) root
        names.  A failed delete is kept for the next run, not an error: the new version
        is live either way."""
        due = set(json.loads(self._get("delete") or "[]")) - now
        todo = sorted(now | (due - _named(self.root, self.source, due)))
        if not todo or DELETE not in self.backend.capabilities:
            self._set("delete", None)
            return 0
        try:
            self.backend.delete(todo)
        except PublishError as e:
            self.say(f"{self.name}: {len(todo)} stale files left for the next run: {e}")
            self._remember_deletes(todo)
            return 0
        self._set("delete", None)
        self.say(f"{self.name}: deleted {len(todo)} stale files")
        return len(todo)

    def _remember_deletes(self, paths: Iterable[str]) -> None:
        """Deletes due at the next run of any kind once a root that does not name them is
        live."""
        if self.journal is None:
            return  # nothing to carry them in: the next publish's plan cannot see them
        paths = sorted(set(paths) | set(json.loads(self._get("delete") or "[]")))
        self._set("delete", json.dumps(paths) if paths else None)

    def _get(self, key: str) -> str | None:
        return self.journal.get(key) if self.journal is not None else None

    def _set(self, key: str, value: str | None) -> None:
        if self.journal is not None:
            self.journal.set(key, value)


def _named(root: bytes, source: SiteSource, paths: set[str]) -> set[str]:
    """Which of ``paths`` the new root names (files, retired files, parts, its own
    signature); when that cannot be told, all of them (so none is deleted)."""
    named = {p for p in paths if p == signature_path(root)}
    try:
        return named | {e.path for e in bundle_entries(source, paths - named, retired=True)}
    except MirrorkitError:
        return set(paths)


def _get_quiet(backend: Backend, path: str, size: int) -> bytes | None:
    try:
        return backend.get(path, limit=size)
    except PublishError:
        return None


def _changed_entries(backend: Backend, source: SiteSource, new: Manifest, live: Manifest,
                     ) -> tuple[dict[str, FileEntry], dict[str, FileEntry]]:
    """The entries of the bins whose parts differ between ``new`` and ``live``, plus
    each root's parts as entries: the only places a plan can find a difference.

    A live part that cannot be had (deleted or damaged behind mirrorkit's back, and not
    in the local store) leaves its bin unknown: its files are all sent again, and none
    of it deleted.
    """
    if new.bins == live.bins:
        # A live transition's paths may hold old content whatever the parts say.
        moving = {bin_of(path, new.bins) for path, _ in live.transition}
        bins = [i for i in range(new.bins) if new.parts[i] != live.parts[i] or i in moving]
    else:
        bins = list(range(new.bins))
    new_entries: dict[str, FileEntry] = {}
    for i in bins:
        ref = new.parts[i]
        for entry in decode_part(source.read(ref.entry()), ref, i, new.bins):
            new_entries[entry.path] = entry
    old_entries: dict[str, FileEntry] = {}
    for i in bins if new.bins == live.bins else range(live.bins):
        ref = live.parts[i]
        data = _live_part(backend, source, ref)
        if data is None:
            continue
        try:
            for entry in decode_part(data, ref, i, live.bins):
                old_entries[entry.path] = entry
        except VerifyError:
            continue
    for path, froms in live.transition:
        if path in old_entries:
            old_entries[path] = replace(old_entries[path], also=froms)
    for ref in new.parts:
        new_entries[ref.path] = ref.entry()
    for ref in new.previous_parts:
        # Kept one more version for verifiers that read the old root: optional, as retired.
        new_entries.setdefault(ref.path, replace(ref.entry(), retired=new.created))
    for ref in live.parts:
        old_entries[ref.path] = ref.entry()
    for ref in live.previous_parts:
        # Named by the live root, but never sent to a mirror that skipped a version.
        old_entries.setdefault(ref.path, replace(ref.entry(), retired=live.created))
    return new_entries, old_entries


_OUR_NAMES = re.compile(
    rf"^(?:{PART_DIR}/[0-9a-f]{{64}}\.json|{SIGNATURE_DIR}/[0-9a-f]{{64}}\.minisig)$")


def _ours_by_name(path: str) -> bool:
    return _OUR_NAMES.match(path) is not None


def _live_part(backend: Backend, source: SiteSource, ref: PartRef) -> bytes | None:
    """A part of the live root: from the local store if it holds it, else the mirror
    (capped at its signed size); None if neither has it as signed."""
    data = source.cached(ref.entry())
    if data is not None:
        return data
    try:
        data = backend.get(ref.path, limit=ref.size)
    except PublishError as e:
        if e.retryable:
            raise  # the mirror is flaky now: try the whole publish again later
        return None  # too large: damaged
    if data is None or sha256_hex(data) != ref.sha256:
        return None
    return data


def _all_entries(source: SiteSource, root: Manifest) -> dict[str, FileEntry]:
    """Every file ``root`` names (retired ones too), its parts, and the parts it keeps
    from the previous root (as retired: they may be gone)."""
    entries: dict[str, FileEntry] = {}
    for i, ref in enumerate(root.parts):
        try:
            for entry in decode_part(source.read(ref.entry()), ref, i, root.bins):
                entries[entry.path] = entry
        except MirrorkitError as e:
            raise PublishError(str(e), where=source.label,
                               hint="rebuild with 'mirrorkit build'") from e
        entries[ref.path] = ref.entry()
    for ref in root.previous_parts:
        entries.setdefault(ref.path, replace(ref.entry(), retired=root.created))
    return entries


def _plan_unknown(backend: Backend, source: SiteSource, new: Manifest,
                  live_bytes: bytes | None, *, ours: bool = False) -> Plan:
    """A mirror without a root signed by this outlet's key for it: send every file.
    ``ours``: this publisher's journal says an earlier publish here did not finish."""
    try:
        entries = _all_entries(source, new)
    except PublishError as e:
        raise PublishError(e.what, where=f"mirror {backend.name}: {e.where}",
                           hint=e.hint) from e
    # Retired files are not sent to a mirror that never had them (nor count as foreign).
    retired = {p for p, e in entries.items() if e.retired is not None}
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
    mine = signature_path(new.to_bytes())  # sent again anyway; never deleted after it
    plan = replace(plan, delete=tuple(p for p in plan.delete if p != mine))
    # What an interrupted publish of ours leaves (signatures and parts named by their
    # hash) never makes a root foreign.
    plan = replace(plan, foreign=() if ours else tuple(
        p for p in plan.foreign if not _ours_by_name(p) and p not in retired))
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
    signer: Signer | None = None,
    journals: Mapping[str, Journal] | None = None,
    progress: Progress | None = None,
    repair: bool = False,
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
            return publish_tree(backends[name], source, key=key, signer=signer,
                                journal=(journals or {}).get(name), concurrency=concurrency,
                                dry_run=dry_run, progress=say, repair=repair)
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

def _refuse_going_back(mirror: str, new: Manifest, root: bytes, live: Manifest) -> None:
    """Raise if publishing ``new`` over this outlet's signed ``live`` root would go back.
    The transition root of this very version is not "other content": it is resumed."""
    if live.version > new.version:
        what = (f"the mirror is at version {live.version}, newer than this bundle's "
                f"version {new.version}")
    elif live.version == new.version and (
            replace(live, transition=(), expires=new.expires).to_bytes() != root
            if live.transition else live.to_bytes() != root):
        what = (f"the mirror is at version {live.version} with other content than this "
                f"bundle's version {new.version}")
    else:
        return
    raise PublishError(
        f"refusing to publish: {what}",
        where=f"mirror {mirror}",
        hint="another state directory is publishing to this mirror, or this one was "
             "restored from a backup: keep one publisher per mirror; 'mirrorkit build' "
             f"again until the version passes {live.version}, or publish to an empty mirror",
    )


def _roll_back(backend: Backend, root: bytes, live: Manifest | None, plan: Plan,
               previous: Mapping[str, bytes | None]) -> None:
    """Best effort after a failed publish: put back what stage 2 replaced and remove what
    stage 1 added.  A mirror with no signed root keeps its uploads, for the next run."""
    try:
        if live is None or backend.get(MANIFEST_NAME, limit=MAX_ROOT_SIZE) == root:
            return  # nothing to protect, or the commit landed after all
        for path, data in previous.items():
            if data is not None:
                backend.put(path, data, media_type(path), cache=cache_control(300))
        added = [f.path for f in plan.first]
        if added and DELETE in backend.capabilities:
            backend.delete(added)
    except PublishError:
        pass  # the caller reports the original failure; the next run completes the work


def _upload(
    backend: Backend,
    source: SiteSource,
    entries: Sequence[FileEntry],
    concurrency: int,
    say: Progress,
    create_only: Callable[[], bool] | None = None,
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
        sent += _upload_group(backend, source, group, concurrency, say, create_only)
    return sent


def _upload_group(backend: Backend, source: SiteSource, entries: Sequence[FileEntry],
                  concurrency: int, say: Progress,
                  create_only: Callable[[], bool] | None = None) -> int:
    """Upload in parallel.  With ``create_only``, each PUT succeeds only where nothing
    is; an object in the way is replaced only while ``create_only()`` says the live root
    is still the planned one, else another publisher won (PublishConflictError)."""
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
        cache = cache_control(source.max_age(entry))
        if create_only is None:
            backend.put(entry.path, data, entry.type, cache=cache)
            return len(data)
        try:
            backend.put(entry.path, data, entry.type, cache=cache, if_absent=True)
        except PublishConflictError:
            if not create_only():
                raise
            backend.put(entry.path, data, entry.type, cache=cache)
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
