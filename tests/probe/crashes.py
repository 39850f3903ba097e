"""Crashes on purpose, for the fault tests: the whole worker (its main process and its
pool) is killed with SIGKILL, so no cleanup, `finally` or signal handler runs, as when
a machine loses power or the kernel's OOM killer steps in."""

from __future__ import annotations

import os
import signal
from pathlib import Path

CRASH_BEFORE_COMMIT = "PROBE_CRASH_BEFORE_COMMIT"


def arm_crash_before_commit(marker: str) -> None:
    """Kills the worker when a publish has copied its object to the final key and is
    about to commit the version, after writing the job's target key to `marker`."""
    from versioning.services import publish

    commit = publish._commit

    def crash(job, *args, **kwargs):
        Path(marker).write_text(job.target_key)
        os.killpg(os.getpgrp(), signal.SIGKILL)
        return commit(job, *args, **kwargs)  # never reached

    publish._commit = crash
