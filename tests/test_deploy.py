"""The deployment examples in deploy/: they load, name what they must, and the systemd
units pass ``systemd-analyze verify`` (Debian's systemd package, installed by the README's
test command)."""

from __future__ import annotations

import re
import shutil
import subprocess
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml

from mirrorkit.config import from_dict

ROOT = Path(__file__).parents[1]
DEPLOY = ROOT / "deploy"


def systemd_verify(*units: Path) -> subprocess.CompletedProcess[str]:
    exe = shutil.which("systemd-analyze")
    if exe is None:
        pytest.fail("systemd-analyze is not installed: apt-get install systemd")
    return subprocess.run([exe, "verify", *map(str, units)], capture_output=True, text=True,
                          timeout=60, check=False)


def test_systemd_units_pass_systemd_analyze_verify() -> None:
    result = systemd_verify(DEPLOY / "mirrorkit.service", DEPLOY / "mirrorkit.timer")
    assert result.returncode == 0, result.stderr
    assert result.stdout + result.stderr == ""  # not even a warning


def test_systemd_analyze_verify_would_see_a_mistake(tmp_path: Path) -> None:
    broken = tmp_path / "mirrorkit.service"
    broken.write_text((DEPLOY / "mirrorkit.service").read_text()
                      .replace("TimeoutStartSec=", "TimeoutStartSecs="))
    shutil.copy(DEPLOY / "mirrorkit.timer", tmp_path / "mirrorkit.timer")
    result = systemd_verify(broken, tmp_path / "mirrorkit.timer")
    assert "TimeoutStartSecs" in result.stdout + result.stderr


def test_the_service_runs_sync_with_the_config_and_the_timer_starts_it() -> None:
    service = (DEPLOY / "mirrorkit.service").read_text()
    assert re.search(r"^ExecStart=.*mirrorkit --config \S+ .*sync$", service, flags=re.M)
    assert re.search(r"^User=mirrorkit$", service, flags=re.M)
    assert re.search(r"^Type=oneshot$", service, flags=re.M)
    timer = (DEPLOY / "mirrorkit.timer").read_text()
    assert re.search(r"^OnCalendar=", timer, flags=re.M)


def test_the_cron_line_runs_sync() -> None:
    lines = [line for line in (DEPLOY / "crontab").read_text().splitlines()
             if line.strip() and not line.startswith("#")]
    assert len(lines) == 1
    fields = lines[0].split(None, 5)
    assert len(fields) == 6 and fields[0] == "*/10"
    assert re.search(r"mirrorkit --config \S+ -q sync$", fields[5])


def docs(name: str) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all((DEPLOY / name).read_text()) if d]


def one(found: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    matching = [d for d in found if d["kind"] == kind]
    assert len(matching) == 1, kind
    return matching[0]


def test_the_kubernetes_cronjob_is_locked_down_and_reads_secrets(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    found = docs("kubernetes/cronjob.yaml")
    job = one(found, "CronJob")
    assert job["apiVersion"] == "batch/v1"
    assert job["spec"]["concurrencyPolicy"] == "Forbid"
    pod = job["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] != 0
    assert pod["automountServiceAccountToken"] is False
    (container,) = pod["containers"]
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert container["securityContext"]["allowPrivilegeEscalation"] is False
    assert container["securityContext"]["capabilities"]["drop"] == ["ALL"]
    # Credentials only from Secrets, never as literal values.
    assert container["env"] and all("secretKeyRef" in e["valueFrom"] for e in container["env"])
    volumes = {v["name"]: v for v in pod["volumes"]}
    mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}

    # The config in the ConfigMap loads, keeps its state in object storage and its working
    # copy in the emptyDir, and reads its key from the Secret's volume.
    config_map = one(found, "ConfigMap")
    assert volumes[mounts["/etc/mirrorkit"]]["configMap"]["name"] == config_map["metadata"]["name"]
    for variable in re.findall(r"\$\{(\w+)\}", config_map["data"]["mirrorkit.toml"]):
        monkeypatch.setenv(variable, "x")
    config = from_dict(tomllib.loads(config_map["data"]["mirrorkit.toml"]),
                       Path("/etc/mirrorkit/mirrorkit.toml"))
    assert config.state is not None and (config.state.url or "").startswith("s3://")
    work = next(p for p in mounts if config.state_dir.is_relative_to(p))
    assert "emptyDir" in volumes[mounts[work]]
    key_mount = next(p for p in mounts if config.signing.secret_key.is_relative_to(p))
    assert "secret" in volumes[mounts[key_mount]]

    # Every Secret it reads is in the example, with the keys it reads.
    secrets = {d["metadata"]["name"]: d["stringData"]
               for d in docs("kubernetes/secrets.example.yaml") if d["kind"] == "Secret"}
    for env in container["env"]:
        ref = env["valueFrom"]["secretKeyRef"]
        assert ref["key"] in secrets[ref["name"]], ref
    signing = volumes[mounts[key_mount]]["secret"]["secretName"]
    assert {config.signing.secret_key.name, config.signing.public_key.name} <= set(
        secrets[signing])


def test_the_github_actions_workflow_is_scheduled_and_never_overlaps() -> None:
    (flow,) = docs("github-actions.yml")
    triggers = flow.get("on", flow.get(True))  # YAML 1.1 reads a bare `on` as true
    assert triggers["schedule"][0]["cron"]
    assert flow["concurrency"]["cancel-in-progress"] is False
    steps = flow["jobs"]["sync"]["steps"]
    text = (DEPLOY / "github-actions.yml").read_text()
    assert "${{ secrets.MIRRORKIT_SECRET_KEY }}" in text
    assert any(re.search(r"mirrorkit --config \S+ .*sync$", s.get("run", "")) for s in steps)
    # The job holds the signing key: mirrorkit comes from a pinned commit of a repository
    # the outlet chose, never an unpinned name on a package index.
    installs = [s["run"] for s in steps if "pip install" in s.get("run", "")]
    assert installs and all("./" in run for run in installs), installs
    source = next(s for s in steps if s.get("with", {}).get("path") == ".mirrorkit-src")
    assert source["with"]["ref"] == "${{ vars.MIRRORKIT_COMMIT }}"


def test_the_containerfile_runs_as_a_non_root_user() -> None:
    lines = [line.strip() for line in (DEPLOY / "Containerfile").read_text().splitlines()]
    users = [line.split()[1] for line in lines if line.startswith("USER ")]
    assert users and users[-1].split(":")[0] not in ("0", "root")
    assert 'ENTRYPOINT ["mirrorkit"]' in lines


def test_the_readme_points_to_every_deployment_example() -> None:
    readme = (ROOT / "README.md").read_text()
    section = readme.split("## Running it unattended", 1)[1].split("\n## ", 1)[0]
    for path in sorted(DEPLOY.rglob("*")):
        if path.is_file():
            assert str(path.relative_to(ROOT)) in section, path


# Relative paths in a config are relative to the config file, which these examples keep in
# a read-only /etc: each must say which state dir to set, and put keys where the config's
# relative key paths point.

def test_the_service_install_steps_give_a_config_the_service_can_run() -> None:
    from mirrorkit.cli import init_config_text
    from mirrorkit.resources import example_config

    service = (DEPLOY / "mirrorkit.service").read_text()
    comments = "\n".join(line[1:] for line in service.splitlines() if line.startswith("#"))
    found = re.search(r'\[state\] dir = "([^"]+)"', comments)
    assert found, "the install steps must say which [state] dir to set"
    state_directory = re.search(r"^StateDirectory=(\S+)$", service, flags=re.M)
    assert state_directory
    writable = [Path("/var/lib") / state_directory[1]] + [
        Path(p.lstrip("-")) for p in re.findall(r"^ReadWritePaths=(.+)$", service, flags=re.M)]
    config_path = re.search(r"--config (\S+)", service)
    assert config_path
    text = init_config_text().replace('dir = "state"', f'dir = "{found[1]}"', 1)
    text = text.replace("https://www.example.com/", "https://news.example.org/")
    config = from_dict(tomllib.loads(text), Path(config_path[1]), credentials=False)
    assert any(config.state_dir.is_relative_to(w) for w in writable), config.state_dir
    # The key is installed where the config's relative secret_key points.
    destinations = {Path(d) for d in re.findall(r"install .* (/\S+/)$", comments, flags=re.M)}
    assert config.signing.secret_key.parent in destinations
    assert config.signing.public_key.parent in destinations
    # The metrics file the example config suggests can be written.
    textfile = re.search(r'^# textfile = "([^"]+)"', example_config(), flags=re.M)
    assert textfile and any(Path(textfile[1]).is_relative_to(w) for w in writable)


def test_the_cron_line_exports_the_credentials_it_reads(tmp_path: Path) -> None:
    (line,) = [line for line in (DEPLOY / "crontab").read_text().splitlines()
               if line.strip() and not line.startswith("#")]
    command = line.split(None, 5)[5]
    env = tmp_path / "env"
    env.write_text("MK_CRON_SECRET=s3cr3t\n")
    # cron runs the command with /bin/sh; mirrorkit is stood in for by printenv.
    command = command.replace("/etc/mirrorkit/env", str(env))
    command = re.sub(r"mirrorkit --config .*$", "printenv MK_CRON_SECRET", command)
    done = subprocess.run(["/bin/sh", "-c", command], capture_output=True, text=True,
                          env={"PATH": "/usr/bin:/bin"}, timeout=10, check=False)
    assert done.stdout == "s3cr3t\n", done.stderr


def test_the_containerfile_says_to_keep_the_state_in_its_working_directory() -> None:
    text = (DEPLOY / "Containerfile").read_text()
    (workdir,) = {line.split()[1] for line in text.splitlines() if line.startswith("WORKDIR ")
                  and "/src" not in line}
    found = re.search(r'\[state\] dir = "([^"]+)"', text)
    assert found and Path(found[1]).is_relative_to(workdir)
