"""A run stopped by a scheduler (SIGTERM: a cron timeout, systemd, Kubernetes) ends as
Ctrl-C does: "Aborted!", status 1, no worker process left running, and no hand-over
files left in memory (/dev/shm) or in the temporary directory."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

SHARED_MEMORY = Path("/dev/shm")
# `detector`, with a day a partition: the small log's 21 days go to the worker processes.
PROGRAM = (
    "import detector.engine.sources as sources; sources.STREAM_ROWS = 1;"
    " from detector.cli import main; main()"
)


def _children(pid: int) -> set[int]:
    """The live processes whose parent is ``pid``."""
    found = set()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except (OSError, IndexError):
                continue
            if int(fields[1]) == pid and fields[0] != "Z":
                found.add(int(entry.name))
    return found


def _alive(pid: int) -> bool:
    try:
        state = (Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


@pytest.mark.skipif(not Path("/proc").exists(), reason="needs /proc (Linux)")
@pytest.mark.parametrize("who", ["the run", "the run and its workers"])
def test_a_run_stopped_by_sigterm_cleans_up(small_log, tmp_path, who):
    temporary = tmp_path / "tmp"
    temporary.mkdir()
    command = [
        sys.executable,
        "-c",
        PROGRAM,
        "score",
        str(small_log),
        "--workers",
        "2",
        "--top",
        "0",
        "--out",
        str(tmp_path / "alerts.parquet"),
    ]
    environment = {**os.environ, "TMPDIR": str(temporary)}
    run = subprocess.Popen(command, stderr=subprocess.PIPE, text=True, env=environment)
    workers: set[int] = set()
    while len(workers) < 2 and run.poll() is None:  # stopped once its workers run
        workers |= _children(run.pid)
        time.sleep(0.05)
    assert run.poll() is None, "the run ended before it could be stopped"
    for pid in [run.pid, *workers] if who != "the run" else [run.pid]:
        os.kill(pid, signal.SIGTERM)
    try:  # workers left running would hold stderr open: waited for with a limit
        _, rest = run.communicate(timeout=60)
    finally:
        for pid in workers:
            if _alive(pid):
                os.kill(pid, signal.SIGKILL)
    assert run.returncode == 1
    assert rest.strip().endswith("Aborted!")
    deadline = time.monotonic() + 30  # workers end once they see their parent gone
    while any(_alive(pid) for pid in workers) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not [pid for pid in workers if _alive(pid)]
    assert not list(SHARED_MEMORY.glob(f"logsentinel-parts-{run.pid}-*"))
    assert not list(temporary.iterdir())
    assert not (tmp_path / "alerts.parquet").exists()
