"""Edge cases an attacker or an unlucky operator found in publishing and verifying, each
a named regression: a mirror that skipped versions, deletes cut off by a kill, a damaged
signature, roots copied from another mirror, parts deleted by hand, hostile JSON, lying
listings, links out of a directory mirror, damaged blobs, archives and trust."""

from __future__ import annotations

import json
import zipfile
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from mirrorkit.bundle import TreeSource
from mirrorkit.config import MirrorConfig
from mirrorkit.errors import PublishError
from mirrorkit.manifest import (
    MANIFEST_NAME,
    SIGNATURE_NAME,
    Manifest,
    bin_of,
    signature_path,
)
from mirrorkit.publish import publish_tree
from mirrorkit.publish.base import DELETE, Backend
from mirrorkit.publish.local import LocalBackend
from mirrorkit.publish.stage import publish_all
from mirrorkit.sign import SecretKey
from mirrorkit.store import Store
from mirrorkit.verify import DirectoryTarget, TrustStore, verify_target
from sites import write_site

KEY = SecretKey.generate()
PUB = KEY.public


class Journal(dict[str, str]):
    """What the store keeps for a mirror between publishes, in memory."""

    def set(self, key: str, value: str | None) -> None:
        if value is None:
            self.pop(key, None)
        else:
            self[key] = value


NOW = datetime.now(UTC).replace(microsecond=0)


def tree(root: Path, name: str, version: int, files: dict[str, bytes], **kw: object) -> Path:
    site = root / name
    write_site(site, version, files, KEY, bins=4,  # type: ignore[arg-type]
               created=NOW - timedelta(hours=10 - version), **kw)
    return site


def verified(mirror: Path) -> list[str]:
    report = verify_target(DirectoryTarget(mirror), PUB)
    return [f.line() for f in report.findings if f.fatal or f.kind == "extra"]


def files_in_bins(n: int, bins: int = 4) -> dict[int, list[str]]:
    """Page paths grouped by bin, so tests can change one bin and keep the others."""
    grouped: dict[int, list[str]] = {}
    for i in range(n):
        path = f"articles/p{i}/index.html"
        grouped.setdefault(bin_of(path, bins), []).append(path)
    return grouped


def test_a_part_the_mirror_never_had_is_sent_when_it_comes_back(tmp_path: Path) -> None:
    # The mirror goes from v1 to v3, missing v2; v3's previous_parts name v2's parts, which
    # the mirror never got.  v4 brings a bin back to its v2 content: that part must be
    # sent, not assumed present because the live root names it.
    mirror = LocalBackend("m", tmp_path / "mirror")
    page = files_in_bins(40)[0][0]
    base = {f"articles/p{i}/index.html": f"<p>{i}</p>".encode() for i in range(40)}
    v1 = tree(tmp_path, "v1", 1, base)
    publish_tree(mirror, v1, key=PUB)
    v2_files = {**base, page: b"<p>corrected</p>"}
    v2 = tree(tmp_path, "v2", 2, v2_files)  # never published to this mirror
    v2_parts = Manifest.from_bytes((v2 / MANIFEST_NAME).read_bytes()).parts
    v3 = tree(tmp_path, "v3", 3, base, previous_parts=tuple(
        p for p in v2_parts if p not in Manifest.from_bytes(
            (v1 / MANIFEST_NAME).read_bytes()).parts))
    publish_tree(mirror, v3, key=PUB)
    assert verified(tmp_path / "mirror") == []
    v4 = tree(tmp_path, "v4", 4, v2_files)
    publish_tree(mirror, v4, key=PUB)
    assert verified(tmp_path / "mirror") == []


class Killed(BaseException):
    """Stands for kill -9: nothing after it runs, nothing catches it."""


@pytest.mark.parametrize("cut", ["failed", "killed"])
def test_deletes_cut_off_after_the_commit_are_done_by_the_next_run(
        tmp_path: Path, cut: str) -> None:
    class CutAtDelete(LocalBackend):
        cut = True

        def delete(self, paths: list[str]) -> None:  # type: ignore[override]
            if self.cut:
                if cut == "killed":
                    raise Killed
                raise PublishError("the network went away", where="mirror m")
            super().delete(paths)

    mirror = CutAtDelete("m", tmp_path / "mirror")
    journal = Journal()
    publish_tree(mirror, tree(tmp_path, "v1", 1, {"a.html": b"a", "old.html": b"o"}),
                 key=PUB, journal=journal)
    v2 = tree(tmp_path, "v2", 2, {"a.html": b"a2"})
    if cut == "killed":
        with pytest.raises(Killed):
            publish_tree(mirror, v2, key=PUB, journal=journal)
    else:
        publish_tree(mirror, v2, key=PUB, journal=journal)  # committed; deletes failed
    assert (tmp_path / "mirror" / "old.html").exists()
    assert "old.html" in json.loads(journal["delete"])
    mirror.cut = False
    result = publish_tree(mirror, v2, key=PUB, journal=journal)  # v2 is live: a no-op, but
    assert result.uploaded == 0 and result.deleted >= 1  # the delete is done
    assert not (tmp_path / "mirror" / "old.html").exists()
    # The parts of the root that v2 replaced stay until the next real publish (verifiers
    # that read that root may still want them); a no-op does not spend a request on them.
    assert all(line.startswith("extra: parts/") for line in verified(tmp_path / "mirror"))


def test_a_damaged_signature_is_repaired_by_a_publish_with_nothing_new(tmp_path: Path) -> None:
    mirror = LocalBackend("m", tmp_path / "mirror")
    v1 = tree(tmp_path, "v1", 1, {"a.html": b"a"})
    publish_tree(mirror, v1, key=PUB)
    (tmp_path / "mirror" / SIGNATURE_NAME).write_text("garbage")
    publish_tree(mirror, v1, key=PUB)
    assert (tmp_path / "mirror" / SIGNATURE_NAME).read_bytes() == (
        v1 / SIGNATURE_NAME).read_bytes()


def test_another_mirrors_root_copied_here_does_not_stop_publishing(tmp_path: Path) -> None:
    mirror = LocalBackend("m", tmp_path / "mirror")
    ours = tree(tmp_path, "ours", 5, {"a.html": b"for m"}, mirror="m")
    theirs = tree(tmp_path, "theirs", 5, {"a.html": b"for n"}, mirror="n")
    publish_tree(LocalBackend("m", tmp_path / "mirror"), theirs, key=PUB)
    publish_tree(mirror, ours, key=PUB)  # not "the mirror is at version 5 with other content"
    report = verify_target(DirectoryTarget(tmp_path / "mirror"), PUB)
    assert report.ok and report.manifest is not None and report.manifest.mirror == "m"


def test_a_live_part_deleted_by_hand_does_not_stop_publishing(tmp_path: Path) -> None:
    mirror = LocalBackend("m", tmp_path / "mirror")
    files = {f"articles/p{i}/index.html": f"<p>{i}</p>".encode() for i in range(40)}
    v1 = tree(tmp_path, "v1", 1, files)
    publish_tree(mirror, v1, key=PUB)
    for part in (tmp_path / "mirror" / "parts").iterdir():
        part.unlink()
    # A tree source holds no other version's parts: they can come only from the mirror.
    # The changed bin is then unknown, and its files are all sent: publishing goes on.
    v2 = tree(tmp_path, "v2", 2, {**files, "articles/p0/index.html": b"<p>new</p>"})
    changed = Manifest.from_bytes((v2 / MANIFEST_NAME).read_bytes()).part_for(
        "articles/p0/index.html")
    for _attempt in range(2):
        publish_tree(mirror, TreeSource(v2), key=PUB)
    assert (tmp_path / "mirror" / changed.path).is_file()
    assert (tmp_path / "mirror" / "articles/p0/index.html").read_bytes() == b"<p>new</p>"
    # Parts of bins that did not change are not re-read by a publish (its cost follows
    # the news): verify still names them until they are put back.
    found = verified(tmp_path / "mirror")
    assert all(line.startswith(("part: ", "extra: ")) for line in found), found


def test_a_hostile_manifest_json_makes_the_mirror_unknown_not_a_crash(tmp_path: Path) -> None:
    (tmp_path / "mirror").mkdir()
    (tmp_path / "mirror" / MANIFEST_NAME).write_bytes(b"[" * 200_000)
    (tmp_path / "mirror" / SIGNATURE_NAME).write_bytes(b"x")
    report = verify_target(DirectoryTarget(tmp_path / "mirror"), PUB,
                           trust=TrustStore(tmp_path / "trust.json"))
    assert not report.ok
    v1 = tree(tmp_path, "v1", 1, {"a.html": b"a"})
    results = publish_all({"m": v1}, {"m": LocalBackend("m", tmp_path / "mirror")}, key=PUB)
    assert not isinstance(results["m"], PublishError), results["m"]
    assert verified(tmp_path / "mirror") == []


def test_a_listing_that_hides_a_forged_retired_page_does_not_spare_it(tmp_path: Path) -> None:
    site = tmp_path / "site"
    write_site(site, 2, {"a.html": b"a"}, KEY, retired={"old.html": b"signed old"},
               created=NOW)
    (site / "old.html").write_bytes(b"<h1>FORGED</h1>")

    class Hiding(DirectoryTarget):
        def listing(self) -> list[str]:
            return [p for p in super().listing() if p != "old.html"]

    report = verify_target(Hiding(site), PUB)
    assert [(f.kind, f.path) for f in report.findings if f.fatal] == [("size", "old.html")]


def test_a_directory_mirror_is_not_written_through_a_planted_link(tmp_path: Path) -> None:
    (tmp_path / "mirror").mkdir()
    (tmp_path / "outside").mkdir()
    (tmp_path / "mirror" / "articles").symlink_to(tmp_path / "outside")
    mirror = LocalBackend("m", tmp_path / "mirror")
    with pytest.raises(PublishError, match="out of the mirror"):
        mirror.put("articles/x/index.html", b"x", "text/html", cache="")
    assert list((tmp_path / "outside").iterdir()) == []


def test_a_damaged_blob_is_written_again(tmp_path: Path) -> None:
    with Store(tmp_path / "state") as store:
        sha = store.put_blob(b"hello world")
        store.blob_path(sha).write_bytes(b"")  # a power cut after the rename
        store.put_blob(b"hello world")
        assert store.read_blob(sha, 11) == b"hello world"


def test_verifying_an_archive_records_no_version_for_its_mirror(tmp_path: Path) -> None:
    # An archive is a copy from some time ago: verifying it must not make the live mirror
    # look like a rollback afterwards.
    old, new = tmp_path / "old", tmp_path / "new"
    write_site(old, 4, {"a.html": b"a"}, KEY, created=NOW)
    write_site(new, 2, {"a.html": b"a"}, KEY, created=NOW)
    archive = tmp_path / "copy.zip"
    with zipfile.ZipFile(archive, "w") as z:
        for path in sorted(old.rglob("*")):
            if path.is_file():
                z.write(path, path.relative_to(old).as_posix())
    from click.testing import CliRunner

    from mirrorkit.cli import cli

    (tmp_path / "k.pub").write_text(PUB.to_text())
    trust = str(tmp_path / "trust.json")
    runner = CliRunner()
    for target in (archive, new):
        result = runner.invoke(cli, ["verify", str(target), "--key", str(tmp_path / "k.pub"),
                                     "--trust-file", trust])
        assert result.exit_code == 0, result.output


@pytest.mark.parametrize("kind", ["local", "s3"])
def test_a_publish_never_deletes_without_the_capability(
        kind: str, tmp_path: Path, s3_bucket: MirrorConfig) -> None:
    # A guard of the delete stage: with DELETE declared, stale files go; the same plan on
    # a backend without it leaves them.
    from mirrorkit.publish import open_backend

    backend: Backend = (LocalBackend("m", tmp_path / "mirror") if kind == "local"
                        else open_backend(s3_bucket, 4))
    assert DELETE in backend.capabilities
    publish_tree(backend, tree(tmp_path, "v1", 1, {"a.html": b"a", "b.html": b"b"}), key=PUB)
    result = publish_tree(backend, tree(tmp_path, "v2", 2, {"a.html": b"a"}), key=PUB)
    assert result.deleted >= 1
    assert backend.get("b.html") is None
    backend.close()


def test_a_signed_file_linked_to_a_file_of_this_machine_is_not_read(tmp_path: Path) -> None:
    site = tmp_path / "site"
    secret = b"contents of a file outside the copy\n"
    (tmp_path / "outside.txt").write_bytes(secret)
    write_site(site, 1, {"a.html": secret}, KEY, created=NOW)
    (site / "a.html").unlink()
    (site / "a.html").symlink_to(tmp_path / "outside.txt")
    report = verify_target(DirectoryTarget(site), PUB)
    assert [(f.kind, f.path) for f in report.findings if f.fatal] == [("missing", "a.html")]


def local_config(root: Path, feed: str | None = None) -> Path:
    """A key pair and a config with one directory mirror (and a feed, if given)."""
    from mirrorkit.sign import write_keypair

    write_keypair(root / "outlet")
    source = (f'[fetch]\nallow_private_addresses = true\n[[sources]]\nurl = "{feed}"\n'
              if feed else "")
    path = root / "mirrorkit.toml"
    path.write_text(f"""
[outlet]
id = "t"
name = "T"
origin = "https://t.example/"
[signing]
secret_key = "outlet.key"
public_key = "outlet.pub"
{source}[[mirrors]]
name = "m"
type = "local"
path = "mirror"
public_url = "http://127.0.0.1:9/"
""")
    return path


def test_publish_without_the_secret_key_still_publishes(tmp_path: Path) -> None:
    # Only transition roots are signed at publish time; without the key a publish goes on
    # as before them (files replaced in place are briefly newer than the live manifest).
    from click.testing import CliRunner

    from mirrorkit.cli import cli

    local_config(tmp_path)
    runner = CliRunner()
    config = ["--config", str(tmp_path / "mirrorkit.toml")]
    assert runner.invoke(cli, [*config, "build"]).exit_code == 0
    (tmp_path / "outlet.key").rename(tmp_path / "elsewhere.key")
    result = runner.invoke(cli, [*config, "publish"])
    assert result.exit_code == 0, result.output
    assert runner.invoke(cli, [*config, "verify", str(tmp_path / "mirror")]).exit_code == 0


def test_a_sync_mends_a_file_its_check_reads_back_wrong(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # A flaky store (or a racing publisher) left a file other than what was signed: the
    # check after publish reads it back wrong, and the sync sends it again.
    from click.testing import CliRunner

    from mirrorkit import pipeline
    from mirrorkit.cli import cli
    from mirrorkit.sample import SampleOutlet

    real_publish = pipeline.run_publish
    damaged: list[str] = []

    def publish_then_damage(*args: object, **kwargs: object) -> object:
        outcomes = real_publish(*args, **kwargs)  # type: ignore[arg-type]
        written = outcomes[0].published.written  # type: ignore[attr-defined]
        page = next(e.path for e in written if e.path.startswith("articles/"))
        (tmp_path / "mirror" / page).write_bytes(b"<p>not what was signed</p>")
        damaged.append(page)
        return outcomes

    monkeypatch.setattr(pipeline, "run_publish", publish_then_damage)
    with SampleOutlet() as outlet:
        local_config(tmp_path, outlet.feed_url)
        result = CliRunner().invoke(cli, ["--config", str(tmp_path / "mirrorkit.toml"),
                                          "sync"])
    assert result.exit_code == 0, result.output
    assert damaged and b"not what was signed" not in (
        tmp_path / "mirror" / damaged[0]).read_bytes()
    from mirrorkit.sign import load_public_key

    report = verify_target(DirectoryTarget(tmp_path / "mirror"),
                           load_public_key(tmp_path / "outlet.pub"))
    assert report.ok, report.findings


# -- the commit protocol under attack (second review) ---------------------------------------

def _signer() -> object:
    import functools

    from mirrorkit.build import _sign_with

    return functools.partial(_sign_with, KEY)


class KilledAt(LocalBackend):
    """Raises Killed (nothing catches it, as with kill -9) before the Nth PUT of ``path``."""

    def __init__(self, name: str, root: Path, path: str, nth: int = 1):
        super().__init__(name, root)
        self.path, self.nth = path, nth

    def put(self, path: str, data: bytes, media_type: str, **kw: object) -> str:  # type: ignore[override]
        if path == self.path:
            self.nth -= 1
            if self.nth == 0:
                raise KeyboardInterrupt
        return super().put(path, data, media_type, **kw)  # type: ignore[arg-type]


def test_transition_roots_allow_only_what_the_path_holds_and_cannot_be_replayed(
        tmp_path: Path) -> None:
    journal = Journal()
    publish_tree(LocalBackend("m", tmp_path / "mirror"),
                 tree(tmp_path, "v1", 1, {"index.html": b"home v1", "a.html": b"a1"}),
                 key=PUB, journal=journal)
    # Two publishes in a row killed in stage 2 (each with its transition root live).
    for version in (2, 3):
        site = tree(tmp_path, f"v{version}", version,
                    {"index.html": f"home v{version}".encode(), "a.html": f"a{version}".encode()})
        with pytest.raises(KeyboardInterrupt):
            publish_tree(KilledAt("m", tmp_path / "mirror", "index.html"), site, key=PUB,
                         signer=_signer(), journal=journal)  # type: ignore[arg-type]
        live = Manifest.from_bytes((tmp_path / "mirror" / MANIFEST_NAME).read_bytes())
        assert live.transition and all(len(froms) == 1 for _, froms in live.transition)
        assert verify_target(DirectoryTarget(tmp_path / "mirror"), PUB).ok
    saved = {p: (tmp_path / "mirror" / p).read_bytes()
             for p in (MANIFEST_NAME, "index.html", "a.html")}
    by_hash = (tmp_path / "mirror" / signature_path(saved[MANIFEST_NAME])).read_bytes()
    publish_tree(LocalBackend("m", tmp_path / "mirror"), tmp_path / "v3", key=PUB,
                 signer=_signer(), journal=journal)  # type: ignore[arg-type]
    trust = TrustStore(tmp_path / "trust.json")
    assert verify_target(DirectoryTarget(tmp_path / "mirror"), PUB, trust=trust).ok
    # Someone who kept the transition root of version 3 serves it again, with old pages.
    for path, data in saved.items():
        (tmp_path / "mirror" / path).write_bytes(data)
    (tmp_path / "mirror" / signature_path(saved[MANIFEST_NAME])).write_bytes(by_hash)
    report = verify_target(DirectoryTarget(tmp_path / "mirror"), PUB, trust=trust)
    assert [f.kind for f in report.findings if f.fatal] == ["rollback"]


def test_a_killed_first_publish_completes_after_a_build_that_retires_a_file(
        tmp_path: Path) -> None:
    journal = Journal()
    v1 = tree(tmp_path, "v1", 1, {"a.html": b"a", "x.html": b"x"})
    with pytest.raises(KeyboardInterrupt):
        publish_tree(KilledAt("m", tmp_path / "mirror", MANIFEST_NAME), v1, key=PUB,
                     journal=journal)
    v2 = tree(tmp_path, "v2", 2, {"a.html": b"a2"}, retired={"x.html": b"x"})
    publish_tree(LocalBackend("m", tmp_path / "mirror"), v2, key=PUB, journal=journal)
    assert verify_target(DirectoryTarget(tmp_path / "mirror"), PUB).ok


def test_a_flaky_read_of_a_live_part_stops_the_publish_instead_of_overwriting(
        tmp_path: Path) -> None:
    class Flaky(LocalBackend):
        def get(self, path: str, *, limit: int | None = None) -> bytes | None:
            if path.startswith("parts/"):
                raise PublishError("SlowDown (HTTP 503)", where="mirror m", retryable=True)
            return super().get(path, limit=limit)

    files = {f"articles/p{i}/index.html": f"<p>{i}</p>".encode() for i in range(40)}
    publish_tree(LocalBackend("m", tmp_path / "mirror"), tree(tmp_path, "v1", 1, files),
                 key=PUB)
    v2 = tree(tmp_path, "v2", 2, {**files, "articles/p0/index.html": b"<p>new</p>"})
    before = (tmp_path / "mirror" / "articles/p0/index.html").read_bytes()
    with pytest.raises(PublishError, match="SlowDown"):
        publish_tree(Flaky("m", tmp_path / "mirror"), TreeSource(v2), key=PUB)
    assert (tmp_path / "mirror" / "articles/p0/index.html").read_bytes() == before


def test_no_deletes_under_a_root_another_publisher_committed(tmp_path: Path) -> None:
    from mirrorkit.errors import PublishConflictError

    rival = tree(tmp_path, "rival", 3, {"a.html": b"theirs", "b.html": b"b"})

    class Overtaken(LocalBackend):
        """Another publisher commits right after ours."""

        def put(self, path: str, data: bytes, media_type: str, **kw: object) -> str:  # type: ignore[override]
            tag = super().put(path, data, media_type, **kw)  # type: ignore[arg-type]
            if path == SIGNATURE_NAME:
                for name in (MANIFEST_NAME, SIGNATURE_NAME, "a.html", "b.html"):
                    super().put(name, (rival / name).read_bytes(), "x", cache="")
            return tag

    publish_tree(LocalBackend("m", tmp_path / "mirror"),
                 tree(tmp_path, "v1", 1, {"a.html": b"a", "b.html": b"b"}), key=PUB)
    with pytest.raises(PublishConflictError):
        publish_tree(Overtaken("m", tmp_path / "mirror"), tree(tmp_path, "v2", 2,
                                                               {"a.html": b"a2"}), key=PUB)
    assert (tmp_path / "mirror" / "b.html").read_bytes() == b"b"  # theirs names it


def test_parts_left_by_a_killed_publish_go_with_the_next_one(tmp_path: Path) -> None:
    journal = Journal()
    files = {f"articles/p{i}/index.html": f"<p>{i}</p>".encode() for i in range(40)}
    publish_tree(LocalBackend("m", tmp_path / "mirror"), tree(tmp_path, "v1", 1, files),
                 key=PUB, journal=journal)
    v2 = tree(tmp_path, "v2", 2, {**files, "articles/p0/index.html": b"<p>two</p>"})
    with pytest.raises(KeyboardInterrupt):
        publish_tree(KilledAt("m", tmp_path / "mirror", MANIFEST_NAME), v2, key=PUB,
                     journal=journal)
    orphans = set(Manifest.from_bytes((v2 / MANIFEST_NAME).read_bytes()).part_paths())
    v3 = tree(tmp_path, "v3", 3, {**files, "articles/p0/index.html": b"<p>three</p>"})
    publish_tree(LocalBackend("m", tmp_path / "mirror"), v3, key=PUB, journal=journal)
    v3_parts = Manifest.from_bytes((v3 / MANIFEST_NAME).read_bytes()).part_paths()
    left = {p for p in orphans - v3_parts if (tmp_path / "mirror" / p).exists()}
    assert left == set()
