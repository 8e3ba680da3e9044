"""What each mirror serves now, judged from its signed root alone: one state per mirror.

- ``ok``           the signed manifest for this mirror, fresh
- ``stale``        genuine, but expired or signed longer ago than ``max_age``
- ``down``         nothing readable at the mirror: unreachable, or no manifest served
- ``wrong-mirror`` genuine, but signed for another mirror (a ``public_url`` copied from it)
- ``invalid``      a bad signature, another key, a malformed or (``deep``) tampered copy,
                   or an older version than was seen there before (a replayed old root,
                   judged with verify's trust state)

Kept apart from :mod:`mirrorkit.pipeline` so that ``mirrorkit status`` imports neither
the fetcher nor the publisher, and starts fast.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from mirrorkit.config import Config, MirrorConfig
from mirrorkit.errors import TargetUnreachableError
from mirrorkit.manifest import MANIFEST_NAME
from mirrorkit.sign import PublicKey, load_public_key
from mirrorkit.verify import (
    DirectoryTarget,
    Finding,
    Target,
    TrustStore,
    UrlTarget,
    signed_root,
    verify_target,
)

OK, STALE, DOWN, WRONG_MIRROR, INVALID = "ok", "stale", "down", "wrong-mirror", "invalid"
EXIT_OK, EXIT_FAILED, EXIT_PARTIAL = 0, 1, 3


def mirror_target(mirror: MirrorConfig) -> Target:
    """Where to read a mirror back: its directory if local, else its public URL."""
    if mirror.type == "local" and mirror.path is not None:
        return DirectoryTarget(mirror.path)
    return UrlTarget(mirror.public_url)


@dataclass(frozen=True)
class MirrorStatus:
    mirror: str
    location: str
    state: str
    version: int | None = None
    created: datetime | None = None
    expires: datetime | None = None
    signed_for: str | None = None
    problems: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()

    @property
    def age(self) -> timedelta | None:
        return datetime.now(UTC) - self.created if self.created else None

    @property
    def reachable(self) -> bool:
        return self.state != DOWN

    @property
    def signature_valid(self) -> bool:
        return self.state in (OK, STALE, WRONG_MIRROR)

    def to_json(self) -> dict[str, object]:
        age = self.age
        return {
            "mirror": self.mirror, "location": self.location, "state": self.state,
            "reachable": self.reachable, "version": self.version,
            "created": self.created.isoformat() if self.created else None,
            "expires": self.expires.isoformat() if self.expires else None,
            "age_seconds": int(age.total_seconds()) if age else None,
            "signed_for": self.signed_for,
            "signature_valid": self.signature_valid, "problems": list(self.problems),
            "notes": list(self.notes),
        }


def exit_code(rows: list[MirrorStatus]) -> int:
    """1 when a mirror serves what readers must not trust, 3 when one is down or stale."""
    states = {s.state for s in rows}
    if states & {INVALID, WRONG_MIRROR}:
        return EXIT_FAILED
    if states & {DOWN, STALE}:
        return EXIT_PARTIAL
    return EXIT_OK


def status(config: Config, *, deep: bool = False, max_age: timedelta | None = None,
           trust: TrustStore | None = None) -> list[MirrorStatus]:
    """Each mirror's state from its manifest and signature; ``deep`` also reads every
    file (a full audit, as ``verify`` does).  With ``trust``, a version older than one
    seen before is a rollback, and what is ok is recorded as seen."""
    key = load_public_key(config.signing.public_key)
    return [mirror_status(config, m, key, deep=deep, max_age=max_age, trust=trust)
            for m in config.mirrors]


def mirror_status(config: Config, mirror: MirrorConfig, key: PublicKey, *,
                  deep: bool = False, max_age: timedelta | None = None,
                  trust: TrustStore | None = None) -> MirrorStatus:
    target = mirror_target(mirror)
    now = datetime.now(UTC)
    try:
        root, manifest, findings = signed_root(target, key, now)
    except TargetUnreachableError as e:
        return MirrorStatus(mirror.name, target.label, DOWN, problems=(str(e),))
    if root is None:
        return MirrorStatus(mirror.name, target.label, DOWN, problems=(
            f"no {MANIFEST_NAME} served: not published yet, or not publicly readable "
            "('mirrorkit doctor' tells which)",))
    if manifest is None:
        return MirrorStatus(mirror.name, target.label, INVALID,
                            problems=tuple(f.line() for f in findings))
    notes = []
    if manifest.transition:
        notes.append(f"a publish was interrupted; the next sync finishes it (this root "
                     f"expires {manifest.expires:%Y-%m-%d %H:%MZ})")
    if deep:
        try:
            findings = [f for f in verify_target(target, key, now=now, mirror=True).findings
                        if f.fatal]
        except TargetUnreachableError as e:
            return MirrorStatus(mirror.name, target.label, DOWN, problems=(str(e),))
    fatal = [f for f in findings if f.fatal]
    judged = trust.judge(manifest) if trust else None
    if judged is not None and judged.fatal:
        fatal.append(judged)
    elif judged is not None:
        notes.append(judged.line())
    state = OK
    if any(f.kind != "expired" for f in fatal):
        state = INVALID
        if any(f.kind in _MENDABLE for f in fatal):
            # Files changed or lost under a genuine root: the signing machine holds them.
            notes.append(f"to mend it: mirrorkit publish --repair --mirror {mirror.name}")
    elif manifest.mirror != mirror.name or manifest.outlet != config.outlet.id:
        state = WRONG_MIRROR
        fatal.append(Finding(
            "mirror", MANIFEST_NAME,
            f"signed for mirror {manifest.mirror!r} of outlet {manifest.outlet!r}, not "
            f"{mirror.name!r}: is public_url copied from that mirror?"))
    elif fatal or (max_age is not None and now - manifest.created > max_age):
        state = STALE
        if not fatal:
            fatal.append(Finding("stale", MANIFEST_NAME,
                                 f"signed {_ago(now - manifest.created)} ago, more than "
                                 f"--max-age {_ago(max_age or timedelta())}"))
    if trust is not None and state == OK:
        trust.record(manifest)
    return MirrorStatus(
        mirror.name, target.label, state, version=manifest.version,
        created=manifest.created, expires=manifest.expires, signed_for=manifest.mirror,
        problems=tuple(f.line() for f in fatal), notes=tuple(notes))


# What a --repair puts back from the signed build: damage under a genuine root.
_MENDABLE = frozenset({"missing", "size", "tampered", "part"})


def _ago(delta: timedelta) -> str:
    minutes = int(delta.total_seconds() // 60)
    return f"{minutes // 60}h{minutes % 60:02d}m"
