"""``mirrorkit doctor``: check a setup before the first sync, or when something is wrong.

One :class:`Check` per thing that can be misconfigured, each with the fix when it fails:
the config (loading it is the first check), the key pair, a state kept in a bucket (that
it is readable and writable, and who holds its lease), and for every mirror that it is
writable, publicly readable, and that its ``public_url`` serves this mirror, not another;
then whether the sources answer.  Nothing is left behind: write access is shown by a
conditional write that the store must refuse (HTTP 412), or, where a store has no
conditional writes, by a probe object that is deleted at once.
"""

from __future__ import annotations

import os
import secrets
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from mirrorkit.config import Config, MirrorConfig
from mirrorkit.errors import KeyFileError, KeyLockedError, MirrorkitError, PublishConflictError
from mirrorkit.manifest import MANIFEST_NAME, MAX_ROOT_SIZE, Manifest
from mirrorkit.publish.base import CONDITIONAL_WRITE, Backend, cache_control
from mirrorkit.publish.providers import providers
from mirrorkit.publish.registry import open_backend
from mirrorkit.sign import PASSPHRASE_ENV, check_key_pair

PASS, FAIL, UNKNOWN = "ok", "FAIL", "??"
PROBE_TIMEOUT = 15.0


@dataclass(frozen=True)
class Check:
    name: str
    result: str  # PASS, FAIL or UNKNOWN (could not be checked)
    detail: str
    fix: str | None = None

    def line(self) -> str:
        fix = f" -- fix: {self.fix}" if self.fix and self.result != PASS else ""
        return f"{self.result:<4}  {self.name}: {self.detail}{fix}"


def run(config: Config) -> list[Check]:
    checks = [Check("config", PASS, f"{config.path} loads (sources: {len(config.sources)}, "
                                    f"mirrors: {len(config.mirrors)})")]
    checks.append(check_keys(config))
    checks += check_state(config)
    for mirror in config.mirrors:
        checks += check_mirror(mirror)
    checks += check_sources(config)
    return checks


def exit_code(checks: list[Check]) -> int:
    return 1 if any(c.result == FAIL for c in checks) else 0


def check_keys(config: Config) -> Check:
    try:
        public = check_key_pair(config.signing.secret_key, config.signing.public_key)
    except KeyLockedError:
        return Check("keys", UNKNOWN, "cannot check: the secret key is encrypted and "
                     f"{PASSPHRASE_ENV} is not set", f"set {PASSPHRASE_ENV} to check it")
    except KeyFileError as e:
        return Check("keys", FAIL, f"{e.where}: {e.what}" if e.where else e.what,
                     e.hint or "fix [signing] secret_key and public_key")
    return Check("keys", PASS, f"secret and public key are a pair (key id {public.key_id_hex})")


# -- the state in a bucket --------------------------------------------------------------

def check_state(config: Config) -> list[Check]:
    """With ``[state] url``: every run reads and writes there first, so a missing bucket
    or a credential without write access stops every sync.  Shown by a probe object
    written, then refused a second write only if absent (412, which the lease relies on),
    and deleted."""
    if config.state is None or config.state.url is None:
        return []
    from datetime import UTC, datetime

    from mirrorkit.state import HEAD, LEASE, Lease, RemoteState

    name = f"state {config.state.url}"
    fix = ("check [state] url (the bucket must exist), endpoint_url, region and the "
           "credentials (they need to read, write and delete objects under the prefix)")
    try:
        remote = RemoteState(config)
    except MirrorkitError as e:
        return [Check(name, FAIL, str(e), fix)]
    step = "readable"
    try:
        head = remote.backend.get(HEAD, limit=1 << 20)
        lease_data = remote.backend.get(LEASE, limit=1 << 20)
        step = "writable"
        # Never a write at state.json or lease.json, not even one that must be refused: a
        # store that ignored If-None-Match would put back the state read a moment ago over
        # one a run committed since.  A probe object instead, written, written again only
        # if absent (which must be refused: the lease relies on it), and deleted.
        probe = f"mirrorkit-doctor-{secrets.token_hex(8)}.txt"
        body = b"mirrorkit doctor probe\n"
        remote.backend.put(probe, body, "text/plain", cache="no-store", if_absent=True)
        try:
            write = _refused_write(f"{name}: writable", remote.backend, body, probe)
        finally:
            remote.backend.delete([probe])
    except MirrorkitError as e:
        return [Check(f"{name}: {step}", FAIL, e.what, fix)]
    finally:
        remote.close()
    if write.result != PASS:
        return [Check(write.name, FAIL, write.detail, "the lease needs a store with "
                      "conditional writes: AWS S3, R2 or MinIO")]
    kept = ("empty: the first run starts it from [state] dir" if head is None
            else "holds a committed state")
    checks = [Check(f"{name}: readable", PASS, kept), write]
    lease = Lease.from_bytes(lease_data) if lease_data is not None else None
    now = datetime.now(UTC)
    if lease is not None and lease.expires > now:
        checks.append(Check(f"{name}: lease", PASS, f"held by {lease.holder} until "
                            f"{lease.expires:%Y-%m-%d %H:%M:%S}Z: a run is at work, and "
                            "another started before then exits 1"))
    elif lease is not None and lease.expires > lease.taken:
        ended = f"{lease.expires:%Y-%m-%d %H:%M:%S}Z"
        checks.append(Check(f"{name}: lease", PASS, f"ended {ended} without a release "
                            "(a run was killed); the next run takes it over"))
    else:
        checks.append(Check(f"{name}: lease", PASS, "free"))
    return checks


# -- mirrors ------------------------------------------------------------------------------

def check_mirror(mirror: MirrorConfig) -> list[Check]:
    name = f"mirror {mirror.name}"
    if mirror.type == "local" and mirror.path is not None and not mirror.path.exists():
        return [_new_directory(name, mirror.path)]
    try:
        backend = open_backend(mirror, 1)
    except MirrorkitError as e:
        return [Check(f"{name}: writable", FAIL, str(e), "fix the mirror's config")]
    with backend:
        try:
            root = backend.get(MANIFEST_NAME, limit=MAX_ROOT_SIZE)
            if root is not None and CONDITIONAL_WRITE in backend.capabilities:
                return [_refused_write(f"{name}: writable", backend, root, MANIFEST_NAME),
                        *_serves(mirror, root)]
            return _probe(mirror, backend, root)
        except MirrorkitError as e:
            return [Check(f"{name}: writable", FAIL, str(e), _write_fix(mirror))]


def _new_directory(name: str, path: Path) -> Check:
    parent = next(p for p in path.parents if p.exists())
    if os.access(parent, os.W_OK | os.X_OK):
        return Check(f"{name}: writable", PASS, f"{path} will be made by the first publish")
    return Check(f"{name}: writable", FAIL, f"cannot make {path}: {parent} is not writable",
                 "make the directory, writable by this user")


def _refused_write(name: str, backend: Backend, root: bytes, path: str) -> Check:
    """Write access shown by a write the store must refuse: ``root``, the object at
    ``path``, again, only if there is none (there is one).  Nothing changes either way."""
    try:
        backend.put(path, root, "application/json; charset=utf-8",
                    cache=cache_control(0), if_absent=True)
    except PublishConflictError:
        return Check(name, PASS, "a conditional write was refused with 412, as it must be")
    return Check(name, FAIL, "the store ignored a conditional write "
                 "(If-None-Match): it would not stop two publishers",
                 "choose the provider preset with conditional_writes = false")


def _probe(mirror: MirrorConfig, backend: Backend, root: bytes | None) -> list[Check]:
    """Write a probe object, read it through ``public_url``, delete it."""
    name = f"mirror {mirror.name}"
    probe = f"mirrorkit-doctor-{secrets.token_hex(8)}.txt"
    body = f"mirrorkit doctor probe for mirror {mirror.name}\n".encode()
    backend.put(probe, body, "text/plain; charset=utf-8", cache="no-store")
    try:
        checks = [Check(f"{name}: writable", PASS, "a probe object was written and deleted")]
        if root is not None:
            return checks + _serves(mirror, root)
        status, served = _http_get(mirror.public_url + probe, len(body))
        public = _public_check(mirror, status, mirror.public_url + probe)
        checks.append(public)
        if public.result == PASS:
            checks.append(
                Check(f"{name}: serves this mirror", PASS, "public_url serves this bucket "
                      "(the probe object); not published yet")
                if served == body else
                Check(f"{name}: serves this mirror", FAIL, "public_url serves another place "
                      "(the probe object was not there)", _url_fix(mirror)))
        return checks
    finally:
        backend.delete([probe])


def _serves(mirror: MirrorConfig, root: bytes) -> list[Check]:
    name = f"mirror {mirror.name}"
    url = mirror.public_url + MANIFEST_NAME
    status, served = _http_get(url, MAX_ROOT_SIZE)
    public = _public_check(mirror, status, url)
    if public.result != PASS:
        return [public]
    if served == root:
        return [public, Check(f"{name}: serves this mirror", PASS,
                              f"public_url serves this mirror's {MANIFEST_NAME}")]
    try:
        other = Manifest.from_bytes(served or b"")
        detail = (f"public_url serves the manifest of mirror {other.mirror!r} "
                  f"(outlet {other.outlet!r}), not this mirror's")
    except MirrorkitError:
        detail = f"public_url serves a {MANIFEST_NAME} that is not this mirror's"
    return [public, Check(f"{name}: serves this mirror", FAIL, detail, _url_fix(mirror))]


def _public_check(mirror: MirrorConfig, status: int | str, url: str) -> Check:
    name = f"mirror {mirror.name}: public"
    if status == 200:
        return Check(name, PASS, f"readable without credentials at {url}")
    if status in (401, 403):
        return Check(name, FAIL, f"bucket not public (HTTP {status} at {url})",
                     _public_fix(mirror))
    if isinstance(status, int):
        return Check(name, FAIL, f"HTTP {status} at {url}", _url_fix(mirror))
    return Check(name, FAIL, f"public_url unreachable: {status}",
                 "check public_url and that the server behind it runs")


def _http_get(url: str, limit: int) -> tuple[int | str, bytes | None]:
    """The status and body of an anonymous GET, or why there was no answer."""
    # public_url was checked to be http(s) when the config was loaded.
    request = urllib.request.Request(url, headers={"User-Agent": "mirrorkit-doctor"})  # noqa: S310
    try:
        with urllib.request.urlopen(request, timeout=PROBE_TIMEOUT) as response:  # noqa: S310
            return response.status, response.read(limit + 1)
    except urllib.error.HTTPError as e:
        return e.code, None
    except (urllib.error.URLError, OSError) as e:
        reason = getattr(e, "reason", e)
        return f"{type(reason).__name__}: {reason}", None


def _public_fix(mirror: MirrorConfig) -> str:
    if mirror.type == "s3":
        preset = providers().get(mirror.provider)
        if preset is not None:
            return f"{preset.name}: {preset.notes}"
    return "serve the mirror's directory at public_url with a web server"


def _url_fix(mirror: MirrorConfig) -> str:
    where = (f"bucket {mirror.bucket}" + (f", prefix {mirror.prefix}" if mirror.prefix else "")
             if mirror.type == "s3" else f"directory {mirror.path}")
    return f"set public_url to where {where} is served"


def _write_fix(mirror: MirrorConfig) -> str:
    if mirror.type == "s3":
        return ("check bucket, endpoint_url, region and the credentials (they need to "
                "read, write, list and delete objects)")
    return "make the directory writable by this user"


# -- sources ------------------------------------------------------------------------------

def check_sources(config: Config) -> list[Check]:
    from mirrorkit.fetch import probe_sources  # aiohttp and trafilatura: only now

    checks = []
    for source, found in probe_sources(config):
        name = f"source {source.name}"
        if isinstance(found, MirrorkitError):
            # An error that says what to do (a selector that finds nothing, a blocked
            # address) needs no second, generic fix that may point elsewhere.
            checks.append(Check(name, FAIL, str(found), None if found.hint else
                                "check the url; allow_private_addresses for a loopback "
                                "or private origin"))
        else:
            checks.append(Check(name, PASS, f"answers, {found} entries"))
    return checks
