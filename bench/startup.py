"""How fast do the quick commands start?  A cron job's ``status`` and a reader's ``verify``
should answer in well under 0.3 s; the whole stack (boto3, aiohttp, trafilatura, jinja2,
feedgen, rich) takes most of a second to import, so commands import it only when needed.

    python bench/startup.py            # median of 9 runs per row
    python bench/startup.py --quick    # median of 3

It runs ``mirrorkit demo`` once in a temporary folder (two directory mirrors of the sample
outlet), then times each command as a new process, beside the floor (``python -c pass``)
and what every command paid before (importing the whole stack), and prints one markdown
table to stdout; the ten slowest imports of ``--version`` (``python -X importtime``)
follow.  Progress goes to stderr.
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).parents[1]
GOAL = 0.3  # seconds


def timed(argv: list[str], env: dict[str, str], cwd: Path, runs: int) -> tuple[float, float]:
    """Median wall and CPU (user + system) seconds of ``argv`` as a new process.  On a
    shared machine the wall time waits for a core too; the CPU time does not."""
    walls, cpus = [], []
    for _ in range(runs):
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        started = time.perf_counter()
        subprocess.run(argv, env=env, cwd=cwd, stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL, check=False)
        walls.append(time.perf_counter() - started)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpus.append(after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime)
    return statistics.median(walls), statistics.median(cpus)


def slowest_imports(argv: list[str], env: dict[str, str], cwd: Path, n: int = 10) -> list[str]:
    done = subprocess.run([sys.executable, "-X", "importtime", *argv], env=env, cwd=cwd,
                          capture_output=True, text=True, check=False)
    rows = []
    for line in done.stderr.splitlines():
        parts = line.split("|")  # "import time: SELF | CUMULATIVE | module"
        own = parts[0].rpartition(":")[2].strip()
        if len(parts) == 3 and own.isdigit():
            rows.append((int(own), parts[2].strip()))
    return [f"{us / 1000:7.1f} ms  {name}" for us, name in sorted(rows, reverse=True)[:n]]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="3 runs per row instead of 9")
    runs = 3 if parser.parse_args().quick else 9
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    work = Path(tempfile.mkdtemp(prefix="mk-startup-"))
    try:
        env["XDG_STATE_HOME"] = str(work / "xdg")
        print("setting up: mirrorkit demo ...", file=sys.stderr)
        mk = [sys.executable, "-m", "mirrorkit"]
        subprocess.run([*mk, "demo", "--dir", "d"], env=env, cwd=work, check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        config = ["--config", str(work / "d" / "mirrorkit.toml")]
        mirror = str(work / "d" / "mirrors" / "alpha")
        key = str(work / "d" / "keys" / "outlet.pub")
        floor = timed([sys.executable, "-c", "pass"], env, work, runs)
        stack = timed([sys.executable, "-c",
                       "import mirrorkit.pipeline, mirrorkit.serve, rich.progress"],
                      env, work, runs)
        rows = [
            ("python -c pass (the floor)", *floor, ""),
            ("import the whole stack (what every command paid before)", *stack, ""),
        ]
        for label, args in (
            ("mirrorkit --version", ["--version"]),
            ("mirrorkit status (2 directory mirrors)", [*config, "status"]),
            ("mirrorkit verify DIR (30 articles)", ["verify", mirror, "--key", key]),
            ("mirrorkit export", [*config, "export"]),
        ):
            print(f"timing {label} ...", file=sys.stderr)
            seconds, cpu = timed([*mk, *args], env, work, runs)
            rows.append((label, seconds, cpu, "yes" if seconds < GOAL else "NO"))
        if shutil.which("minisign"):
            manifest = str(work / "d" / "mirrors" / "alpha" / "manifest.json")
            rows.append(("peer: minisign -Vm manifest.json (signature only)",
                         *timed(["minisign", "-Vm", manifest, "-p", key], env, work, runs), ""))
        print(f"### start-up, median of {runs} runs ({os.cpu_count()} cores)\n")
        print(f"| command | wall s | CPU s | wall above the floor s | wall under {GOAL} s |")
        print("|---|---|---|---|---|")
        for label, seconds, cpu, ok in rows:
            print(f"| {label} | {seconds:.3f} | {cpu:.3f} | {seconds - floor[0]:.3f} | {ok} |")
        print("\n### slowest imports of `mirrorkit --version` (self time)\n")
        print("```")
        print("\n".join(slowest_imports(["-m", "mirrorkit", "--version"], env, work)))
        print("```")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
