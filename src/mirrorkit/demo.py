"""``mirrorkit demo``: the whole pipeline offline, on the built-in sample outlet.

It starts the sample outlet on loopback, writes a config and keys under the demo folder,
runs a sync (fetch, build, sign, publish to two local mirrors, verify both) and prints
where the mirrors are and how to verify them.  Run it again and it is incremental: the
same folder, the same keys, only what changed.
"""

from __future__ import annotations

import logging
import shlex
import socket
from pathlib import Path

import click

from mirrorkit import config as config_mod
from mirrorkit.errors import UsageError
from mirrorkit.pipeline import sync
from mirrorkit.sample import SampleOutlet
from mirrorkit.sign import write_keypair
from mirrorkit.store import Store

log = logging.getLogger("mirrorkit")

OUTLET_PORT = 8730
MIRROR_NAMES = ("alpha", "beta")
MIRROR_PORT = 8731  # alpha's; beta's is the next

DEMO_CONFIG = """\
# Written by 'mirrorkit demo'.  See config/mirrorkit.toml in the repository for every key.
[outlet]
id = "sample-courier"
name = "The Sample Courier"
origin = "{origin}"
language = "en"
description = "A sample outlet that mirrorkit's demo mirrors, offline"

[state]
dir = "state"

[signing]
secret_key = "keys/outlet.key"
public_key = "keys/outlet.pub"
expires_after = "7d"

[fetch]
# The sample outlet runs on loopback, which is refused unless allowed.
allow_private_addresses = true

[[sources]]
type = "feed"
url = "{feed}"
name = "sample feed"
{mirrors}"""

MIRROR_BLOCK = """
[[mirrors]]
name = "{name}"
type = "local"
path = "mirrors/{name}"
public_url = "http://127.0.0.1:{port}/"
"""


def _free(port: int) -> int:
    """The given port if it is free on loopback, else any free one."""
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _check_free(ports: list[int]) -> None:
    for port in ports:
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError as e:
                raise UsageError(f"cannot serve on 127.0.0.1:{port}: {e.strerror}",
                                 hint="give another first port with --port N") from e


def run_demo(directory: Path, *, serve: bool = False, port: int | None = None) -> int:
    ports = dict(zip(MIRROR_NAMES, (port or MIRROR_PORT, (port or MIRROR_PORT) + 1),
                     strict=True))
    if serve:
        _check_free(list(ports.values()))  # before the work, not after it
    directory = directory.resolve()
    directory.mkdir(parents=True, exist_ok=True)
    if not (directory / "keys" / "outlet.key").exists():
        write_keypair(directory / "keys" / "outlet")
    # A fixed outlet port keeps article URLs (and so their ids) the same between runs.
    with SampleOutlet(port=_free(OUTLET_PORT)) as outlet:
        mirrors = "".join(MIRROR_BLOCK.format(name=n, port=p) for n, p in ports.items())
        path = directory / "mirrorkit.toml"
        path.write_text(DEMO_CONFIG.format(origin=outlet.url, feed=outlet.feed_url,
                                           mirrors=mirrors), encoding="utf-8")
        config = config_mod.load(path)
        log.info("sample outlet at %s", outlet.url)
        with Store(config.state_dir, exclusive=True) as store:
            result = sync(config, store)
    pub = directory / "keys" / "outlet.pub"
    click.echo("")
    for outcome in result.mirrors:
        mirror = config.mirror(outcome.mirror)
        state = "verified" if outcome.ok else "FAILED"
        click.echo(f"mirror {mirror.name}: {mirror.path} ({state})")
        click.echo(f"  verify: mirrorkit verify {shlex.quote(str(mirror.path))} "
                   f"--key {shlex.quote(str(pub))}")
        click.echo(f"  open:   {mirror.path}/index.html")
    click.echo(f"config: {path}")
    if serve and result.exit_code == 0:
        from mirrorkit.serve import serve_forever

        sites = [(m.path, p) for m, p in zip(config.mirrors, ports.values(), strict=True)
                 if m.path]
        for m, p in zip(config.mirrors, ports.values(), strict=True):
            click.echo(f"serving {m.name} at http://127.0.0.1:{p}/index.html")
        click.echo("Ctrl-C stops")
        serve_forever(sites)
    return result.exit_code
