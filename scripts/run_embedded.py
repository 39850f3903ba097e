"""Starts the web app and its background worker (with its scheduler) in the embedded
mode, and stops both on Ctrl-C, or as soon as either of them stops."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def main() -> int:
    host = os.environ.get("HOST", "127.0.0.1")
    port = os.environ.get("PORT", "8000")
    env = {**os.environ, "DEBUG": os.environ.get("DEBUG", "true")}
    env.setdefault("PUBLIC_BASE_URL", f"http://{host}:{port}")
    var_dir = Path(os.environ.get("VAR_DIR", ROOT / "var"))
    var_dir.mkdir(parents=True, exist_ok=True)
    python = sys.executable
    bin_dir = Path(python).parent
    children = [
        subprocess.Popen(
            [
                str(bin_dir / "celery"),
                "-A",
                "config",
                "worker",
                "--beat",
                "--loglevel",
                "WARNING",
                "--concurrency",
                "2",
                "--schedule",
                str(var_dir / "celerybeat-schedule"),
            ],
            cwd=ROOT,
            env=env,
            start_new_session=True,
        ),
        subprocess.Popen(
            [python, "manage.py", "runserver", f"{host}:{port}", "--noreload"],
            cwd=ROOT,
            env=env,
            start_new_session=True,
        ),
    ]
    stopping = False

    def stop(signum=None, frame=None) -> None:
        nonlocal stopping
        stopping = True

    # Installed explicitly: a shell may have started us with SIGINT ignored.
    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    print(
        f"Dataset Publisher: http://{host}:{port}/admin/ (Ctrl-C stops the app and its worker)",
        flush=True,
    )
    while not stopping and all(child.poll() is None for child in children):
        time.sleep(0.3)
    for child in children:
        if child.poll() is None:
            os.killpg(child.pid, signal.SIGTERM)
    deadline = time.monotonic() + 20
    for child in children:
        try:
            child.wait(max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            os.killpg(child.pid, signal.SIGKILL)
    return 0 if stopping else 1


if __name__ == "__main__":
    sys.exit(main())
