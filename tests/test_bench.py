"""The scale benchmark runs: ``bench/scale.py --quick`` prints its tables, row by row.

It needs Pelican (the full build's peer) and moto_server, both in the test extras; if
either is missing this test fails rather than skips, like the rest of the rig.
"""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[1]

ROWS = (
    "full build (ms per article)",
    "Pelican 4 full build, same articles as Markdown",
    "first publish, 3 mirrors in parallel (context)",
    "+10 sync: wall time (build + publish + check)",
    "+10 sync: build alone",
    "+10 sync: pages rendered / files written",
    "+10 sync: objects uploaded per mirror",
    "+10 sync: requests per S3 mirror, at moto_server",
    "+10 sync: manifest parts uploaded per mirror",
    "+10 sync: peak RSS of the sync process",
    "signed root manifest.json",
    "no-op sync: requests per S3 mirror, at moto_server",
    "verify the local mirror vs sha256sum -c + minisign -Vm",
    "state directory vs one site",
)


@pytest.mark.timeout(300)
def test_scale_quick_prints_every_row() -> None:
    if importlib.util.find_spec("pelican") is None:
        pytest.fail("Pelican is not installed: pip install -e '.[test]'")
    done = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "scale.py"), "--quick"], cwd=ROOT,
        capture_output=True, text=True, timeout=280, check=False,
        env={**os.environ, "PYTHONPATH": str(ROOT / "src")},
    )
    assert done.returncode == 0, done.stderr[-4000:]
    out = done.stdout
    tables = re.findall(r"^### ([\d,]+) articles$", out, re.MULTILINE)
    assert tables == ["1,000", "2,000"], out
    for table in out.split("### ")[1:3]:
        for row in ROWS:
            assert f"| {row} | " in table, f"{row!r} missing:\n{table}"
    assert "### across sizes" in out
    # Counted at moto_server: a sync with nothing new reads, and writes nothing.
    noop = re.findall(r"\| no-op sync: requests per S3 mirror, at moto_server \| "
                      r"s3-a (\d+) publish \+ (\d+) check", out)
    assert len(noop) == 2 and all(int(p) >= 1 and int(c) >= 1 for p, c in noop), out


@pytest.mark.timeout(120)
def test_startup_quick_prints_every_row() -> None:
    done = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "startup.py"), "--quick"], cwd=ROOT,
        capture_output=True, text=True, timeout=110, check=False,
        env={**os.environ, "PYTHONPATH": str(ROOT / "src")},
    )
    assert done.returncode == 0, done.stderr[-4000:]
    for row in ("python -c pass (the floor)", "mirrorkit --version",
                "mirrorkit status (2 directory mirrors)", "mirrorkit verify DIR (30 articles)",
                "peer: minisign -Vm manifest.json (signature only)"):
        assert re.search(rf"^\| {re.escape(row)} \| \d+\.\d{{3}} \| \d+\.\d{{3}} \|",
                         done.stdout, re.M), (row, done.stdout)
    assert "slowest imports of `mirrorkit --version`" in done.stdout


@pytest.mark.timeout(120)
def test_state_bench_prints_every_run_and_sends_deltas() -> None:
    done = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "state.py"), "--sizes", "300"], cwd=ROOT,
        capture_output=True, text=True, timeout=110, check=False,
        env={**os.environ, "PYTHONPATH": str(ROOT / "src")},
    )
    assert done.returncode == 0, done.stderr[-4000:]
    out = done.stdout
    for run in ("first push", "+10 run", "no-op run", "fresh runner"):
        assert f"| {run}" in out, out
    # The +10 run sends the database's changed pages, not the whole database again.
    whole = float(re.search(r"whole, gzipped: ([\d.]+) MB", out)[1])  # type: ignore[index]
    plus = re.search(r"^\| \+10 run .*\bdb ([\d.]+) MB", out, re.MULTILINE)
    assert plus and float(plus[1]) < whole, out
