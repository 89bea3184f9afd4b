"""One run at a time on a state directory.

Two runs updating one state at once (the nightly job, and an analyst re-running a
day by hand) would each write the next version from the same current one: the
second's rename would silently drop the first's day, and cleaning old versions
could remove the one the other run is reading. A run therefore holds an
advisory lock (``flock``) on ``DIR/.lock`` from loading the state to saving it.
The system releases it when the process ends, however it ends: a killed run
leaves no stale lock. The file holds who holds the lock, for the error message.
"""

from __future__ import annotations

import contextlib
import os
import socket
import time
from collections.abc import Iterator
from pathlib import Path

from detector.errors import DetectorError

try:
    import fcntl
except ImportError:  # Windows: no flock; runs are not serialised there
    fcntl = None

LOCK = ".lock"


class StateInUse(DetectorError):
    """Another run holds the state directory."""


@contextlib.contextmanager
def state_lock(state: str | Path | None) -> Iterator[None]:
    """Hold ``state``'s lock while the block runs (nothing to hold without a state).

    Raises :class:`StateInUse` at once, rather than waiting, when another run holds
    it: a nightly job should fail loudly, not pile up behind a stuck run.
    """
    if state is None or fcntl is None:
        yield
        return
    path = Path(state)
    if path.exists() and not path.is_dir():
        yield  # load_state reports "not a state directory"
        return
    path.mkdir(parents=True, exist_ok=True)
    with open(path / LOCK, "a+") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "another process"
            raise StateInUse(
                f"{path} is being updated by another run ({holder}); run again once it has finished"
            ) from None
        handle.seek(0)
        handle.truncate()
        since = time.strftime("%Y-%m-%d %H:%M:%S %Z")
        handle.write(f"pid {os.getpid()} on {socket.gethostname()}, since {since}\n")
        handle.flush()
        try:
            yield
        finally:
            handle.seek(0)
            handle.truncate()
            fcntl.flock(handle, fcntl.LOCK_UN)
