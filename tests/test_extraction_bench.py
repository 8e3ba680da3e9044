"""``bench/extraction.py`` prints its table: mirrorkit beside trafilatura on the corpus."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).parents[1]


def test_extraction_bench_prints_its_table() -> None:
    done = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "extraction.py"), "--per-layout", "2"],
        cwd=ROOT, capture_output=True, text=True, timeout=120, check=False,
        env={**os.environ, "PYTHONPATH": str(ROOT / "src")},
    )
    assert done.returncode == 0, done.stderr[-4000:]
    out = done.stdout
    assert "### extraction, 16 generated pages (2 per layout)" in out
    for row in ("mirrorkit", "trafilatura (defaults)", "trafilatura (mirrorkit's options)"):
        assert re.search(rf"^\| {re.escape(row)} \| [01]\.\d{{3}} \|", out, re.M), out
    assert "| legacy (held out) |" in out
    assert "held-out layouts only: mirrorkit" in out
