"""Runs the benchmarks: every tests/benchmarks/bench_*.py, one after the other.

    python tests/benchmarks/run.py [--only NAME ...] [-- ARGS for the scripts]

Each script runs in its own process with this interpreter, its output streamed as it
comes. `--only` keeps the scripts whose name contains NAME (`--only publish` runs
bench_publish.py); anything after `--` is passed to every script run. At the end one
line per script shows whether it passed, how long it took and its last line of output,
which by convention is its headline ratio. Exits non-zero when any script failed.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent


def _scripts(only: list[str]) -> list[Path]:
    scripts = sorted(HERE.glob("bench_*.py"))
    if only:
        scripts = [s for s in scripts if any(name in s.name for name in only)]
    return scripts


def _run(script: Path, extra: list[str]) -> tuple[int, str]:
    """Runs one script, echoing its output; returns its exit code and last output line."""
    last = ""
    proc = subprocess.Popen(
        [sys.executable, str(script), *extra],
        cwd=ROOT,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        bufsize=1,
    )
    try:
        for line in proc.stdout:
            sys.stdout.write(line)
            sys.stdout.flush()
            if line.strip():
                last = line.strip()
        return proc.wait(), last
    except KeyboardInterrupt:
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
        raise


def _duration(seconds: float) -> str:
    minutes, seconds = divmod(round(seconds), 60)
    return f"{minutes}m{seconds:02d}s" if minutes else f"{seconds}s"


def main(argv: list[str]) -> int:
    if "--" in argv:
        at = argv.index("--")
        argv, extra = argv[:at], argv[at + 1 :]
    else:
        extra = []
    parser = argparse.ArgumentParser(description="Runs tests/benchmarks/bench_*.py.")
    parser.add_argument(
        "--only",
        action="append",
        default=[],
        metavar="NAME",
        help="run only the scripts whose name contains NAME (repeatable)",
    )
    args = parser.parse_args(argv)
    scripts = _scripts(args.only)
    if not scripts:
        print(f"No benchmark matches {args.only}.", file=sys.stderr)
        return 2
    summary = []
    for script in scripts:
        print(f"=== {script.name}", flush=True)
        started = time.monotonic()
        code, last = _run(script, extra)
        summary.append((script.name, code, time.monotonic() - started, last))
    width = max(len(name) for name, *_ in summary)
    print("\n=== summary")
    for name, code, seconds, last in summary:
        outcome = "ok" if code == 0 else f"FAILED ({code})"
        print(f"{name:<{width}}  {outcome:<11}  {_duration(seconds):>7}  {last}")
    return 1 if any(code for _, code, _, _ in summary) else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
