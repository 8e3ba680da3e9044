"""What a scheduler sees of a run: cron mails whatever a job prints, so ``-q`` prints
nothing when all went well; a run stopped by an error still gives ``--json`` readers their
one object and the metrics file its exit code; a command that opens the state's bucket
names the state credential that is not set.  Buckets on the moto server; the origin is
the sample outlet on loopback."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from prometheus_client.parser import text_string_to_metric_families

from conftest import MOTO_KEY, MotoServer, free_port
from mirrorkit.cli import cli
from mirrorkit.publish.s3 import S3Backend
from mirrorkit.sample import SampleOutlet
from test_pipeline import write_config


@pytest.fixture
def outlet() -> Iterator[SampleOutlet]:
    with SampleOutlet() as running:
        yield running


def run(config: Path, *args: str) -> Result:
    return CliRunner().invoke(cli, ["--config", str(config), *args])


def metrics(path: Path) -> dict[str, float]:
    return {s.name: s.value for f in text_string_to_metric_families(path.read_text())
            for s in f.samples if not s.labels}


def test_quiet_sync_prints_nothing_when_all_went_well_and_the_results_when_not(
        tmp_path: Path, outlet: SampleOutlet, moto_server: MotoServer) -> None:
    good = write_config(tmp_path / "good", outlet.feed_url, moto_server,
                        [moto_server.new_bucket()])
    quiet = run(good, "-q", "sync")
    assert quiet.exit_code == 0, quiet.output
    assert quiet.stdout == "" and quiet.stderr == ""  # cron mails nothing
    assert run(good, "-q", "publish").stdout == ""
    assert run(good, "sync").stdout.startswith("s3-0: ok, version 1, ")  # without -q: all

    bad = write_config(tmp_path / "bad", outlet.feed_url, moto_server,
                       [moto_server.new_bucket(), f"missing-{free_port()}"])
    failed = run(bad, "-q", "sync")
    assert failed.exit_code == 3
    assert "s3-1: FAILED" in failed.stdout.splitlines()
    assert "1 of 2 mirrors ok" in failed.stdout
    assert "error: mirror s3-1: " in failed.stderr


def test_a_run_stopped_by_an_error_prints_its_json_and_writes_its_exit_code(
        tmp_path: Path, outlet: SampleOutlet, moto_server: MotoServer) -> None:
    prom = tmp_path / "mirrorkit.prom"
    config = write_config(tmp_path, outlet.feed_url, moto_server, [moto_server.new_bucket()],
                          extra=f'\n[metrics]\ntextfile = "{prom}"\n')
    assert run(config, "sync").exit_code == 0
    assert metrics(prom)["mirrorkit_run_exit_code"] == 0
    (tmp_path / "keys" / "outlet.key").unlink()  # a Secret that was not mounted

    stopped = run(config, "sync", "--json")
    assert stopped.exit_code == 2, stopped.output
    summary = json.loads(stopped.stdout)  # still one object on stdout
    assert summary["exit_code"] == 2 and summary["mirrors"] == []
    assert "outlet.key" in summary["error"]
    # The fix is the outlet's own key: a new one would sign what readers do not trust.
    assert "put the outlet's secret key there (on a runner: mount its Secret)" in (
        summary["error"])
    assert stopped.stderr.count("outlet.key") == 1  # the error line, once
    assert metrics(prom)["mirrorkit_run_exit_code"] == 2  # not the last good run's 0
    # What the mirrors did before is carried over, for the last-success alert.
    assert any(s.name == "mirrorkit_mirror_live_version" and s.value == 1
               for f in text_string_to_metric_families(prom.read_text()) for s in f.samples)


def test_export_with_the_state_in_a_bucket_names_an_unset_state_credential(
        tmp_path: Path, moto_server: MotoServer, monkeypatch: pytest.MonkeyPatch) -> None:
    bucket = moto_server.new_bucket()
    config = write_config(tmp_path, "http://127.0.0.1:9/rss.xml", moto_server, [bucket],
                          credentials=("${MK_MIRROR_ID}", "${MK_MIRROR_SECRET}"),
                          extra=f"""
[state]
url = "s3://{bucket}/state"
endpoint_url = "{moto_server.endpoint}"
provider = "minio"
access_key_id = "${{MK_STATE_ID}}"
secret_access_key = "${{MK_STATE_SECRET}}"
""")
    monkeypatch.setenv("MK_STATE_SECRET", MOTO_KEY)  # the other one forgotten
    exported = run(config, "export")
    assert exported.exit_code == 2, exported.output
    assert exported.exception is None or isinstance(exported.exception, SystemExit)
    assert "state.access_key_id: environment variable MK_STATE_ID is not set" in (
        exported.stderr)
    # status opens no bucket of the state's: it still runs without its credentials.
    status = run(config, "status")
    assert "MK_STATE_ID" not in status.output and "MK_MIRROR_ID" not in status.output
    assert status.exit_code == 3  # nothing published yet: down


def test_doctor_checks_the_state_bucket_leaving_nothing_behind(
        tmp_path: Path, outlet: SampleOutlet, moto_server: MotoServer) -> None:
    def config_for(state_bucket: str) -> Path:
        return write_config(tmp_path, outlet.feed_url, moto_server, [mirror], extra=f"""
[state]
url = "s3://{state_bucket}/outlets/sample"
endpoint_url = "{moto_server.endpoint}"
provider = "minio"
access_key_id = "{MOTO_KEY}"
secret_access_key = "{MOTO_KEY}"
""")

    mirror, state = moto_server.new_bucket(), moto_server.new_bucket()
    missing = run(config_for(f"missing-{free_port()}"), "doctor")
    assert missing.exit_code == 1  # every sync would fail: doctor says so, and where
    [line] = [line for line in missing.stdout.splitlines() if line.startswith("FAIL")]
    assert line.startswith("FAIL  state s3://missing-") and "NoSuchBucket" in line
    assert "fix: check [state] url (the bucket must exist)" in line

    config = config_for(state)
    empty = run(config, "doctor")
    assert empty.exit_code == 0, empty.output
    assert "state s3://" in empty.stdout and "empty: the first run starts it" in empty.stdout
    assert moto_server.client().list_objects_v2(Bucket=state).get("KeyCount") == 0

    assert run(config, "sync").exit_code == 0
    listed = moto_server.client().list_objects_v2(Bucket=state)["Contents"]
    before = {o["Key"]: o["ETag"] for o in listed}
    synced = run(config, "doctor")
    assert synced.exit_code == 0, synced.output
    assert "holds a committed state" in synced.stdout
    assert "writable: a conditional write was refused with 412" in synced.stdout
    assert "lease: free" in synced.stdout
    listed = moto_server.client().list_objects_v2(Bucket=state)["Contents"]
    assert {o["Key"]: o["ETag"] for o in listed} == before  # nothing changed


def test_doctor_never_writes_at_the_state_even_where_the_store_ignores_conditions(
        tmp_path: Path, outlet: SampleOutlet, moto_server: MotoServer,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A store whose preset claims conditional writes but ignores them: doctor says so, and
    has not written state.json back meanwhile (a run may have committed a newer one)."""
    state = moto_server.new_bucket()
    config = write_config(tmp_path, outlet.feed_url, moto_server, [moto_server.new_bucket()],
                          extra=f"""
[state]
url = "s3://{state}/outlets/sample"
endpoint_url = "{moto_server.endpoint}"
provider = "minio"
access_key_id = "{MOTO_KEY}"
secret_access_key = "{MOTO_KEY}"
""")
    assert run(config, "sync").exit_code == 0
    written: list[str] = []
    real_put = S3Backend.put

    def ignoring_conditions(self: S3Backend, path: str, data: bytes, media_type: str, *,
                            cache: str, if_match: str | None = None,
                            if_absent: bool = False) -> str:
        if self.name == "state":
            written.append(path)
        return real_put(self, path, data, media_type, cache=cache)

    monkeypatch.setattr(S3Backend, "put", ignoring_conditions)
    result = run(config, "doctor")
    assert result.exit_code == 1, result.output
    [line] = [line for line in result.stdout.splitlines() if line.startswith("FAIL  state")]
    assert "ignored a conditional write" in line
    assert written and not {"state.json", "lease.json"} & set(written)
    keys = [o["Key"] for o in moto_server.client().list_objects_v2(Bucket=state)["Contents"]]
    assert not [k for k in keys if "doctor" in k]  # the probe is gone


def test_sync_to_a_private_bucket_says_it_is_not_public_once_and_sends_nothing_again(
        tmp_path: Path, outlet: SampleOutlet, moto_server: MotoServer) -> None:
    public, private = moto_server.new_bucket(), f"private-{free_port()}"
    moto_server.client().create_bucket(Bucket=private)  # no policy: anonymous reads get 403
    config = write_config(tmp_path, outlet.feed_url, moto_server, [public, private])
    synced = run(config, "sync", "--json")
    assert synced.exit_code == 3, synced.output
    ok, failed = json.loads(synced.stdout)["mirrors"]
    assert ok["ok"] and not failed["ok"]
    assert "not publicly readable" in failed["error"]
    assert "'mirrorkit doctor' tells which" in failed["error"]
    assert synced.stderr.count("not publicly readable") == 1
    assert "sending them again" not in synced.stderr  # not misread as damage to mend
    assert "missing: manifest.json" not in synced.stderr


def test_export_of_a_state_in_a_bucket_into_a_pipe_prints_only_articles(
        tmp_path: Path, outlet: SampleOutlet, moto_server: MotoServer) -> None:
    bucket = moto_server.new_bucket()
    config = write_config(tmp_path, outlet.feed_url, moto_server, [bucket], extra=f"""
[state]
url = "s3://{bucket}/state"
endpoint_url = "{moto_server.endpoint}"
provider = "minio"
access_key_id = "{MOTO_KEY}"
secret_access_key = "{MOTO_KEY}"
""")
    assert run(config, "fetch").exit_code == 0
    for leftover in (tmp_path / "state").iterdir():  # another machine: an empty disk
        if leftover.is_dir():
            shutil.rmtree(leftover)
        else:
            leftover.unlink()
    exported = run(config, "export", "--json")
    assert exported.exit_code == 0, exported.output
    assert len(exported.stdout.splitlines()) == 30
    assert exported.stderr == ""  # 'export --json | jq' shows no state chatter


def test_quiet_status_shows_only_the_mirrors_that_are_not_ok(
        tmp_path: Path, outlet: SampleOutlet, moto_server: MotoServer) -> None:
    published = moto_server.new_bucket()
    config = write_config(tmp_path, outlet.feed_url, moto_server, [published])
    assert run(config, "sync").exit_code == 0
    assert run(config, "-q", "status").stdout == ""  # a watcher in cron mails nothing
    assert run(config, "status").stdout.startswith("s3-0 ")

    never = moto_server.new_bucket()  # a second mirror, not published yet: down
    config = write_config(tmp_path, outlet.feed_url, moto_server, [published, never])
    quiet = run(config, "-q", "status")
    assert quiet.exit_code == 3
    assert [line.split()[:2] for line in quiet.stdout.splitlines()
            if not line.startswith(" ")] == [["s3-1", "down"]]


def test_a_first_sync_whose_sources_all_fail_publishes_no_empty_site(
        tmp_path: Path, moto_server: MotoServer) -> None:
    bucket = moto_server.new_bucket()
    config = write_config(tmp_path, f"http://127.0.0.1:{free_port()}/rss.xml", moto_server,
                          [bucket])
    synced = run(config, "sync")
    assert synced.exit_code == 1, synced.output  # failed: nothing done
    assert moto_server.client().list_objects_v2(Bucket=bucket).get("KeyCount") == 0
    assert synced.stdout.splitlines()[-1].startswith(
        "sync: 0 new articles, 0 changed, 1 source failed; nothing to publish yet (")
    assert synced.stderr.count("error: source ") == 1
