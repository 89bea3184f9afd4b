"""One run at a time on a state directory: a second run fails at once with a clear
error naming the holder, and a killed run leaves no stale lock."""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap

import pytest
from click.testing import CliRunner

from detector.cli import main

HOLDER = textwrap.dedent(
    """
    import sys
    from detector.engine.lock import state_lock
    with state_lock(sys.argv[1]):
        print("held", flush=True)
        sys.stdin.readline()
    """
)


@pytest.fixture()
def holder(tmp_path):
    """Another process holding ``tmp_path / 'state'``'s lock until told to stop."""
    state = tmp_path / "state"
    process = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(state)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert process.stdout.readline().strip() == "held"
    yield state, process
    if process.poll() is None:
        process.kill()
    process.wait()


def _score(log, state, out):
    return CliRunner().invoke(
        main,
        [
            "score",
            str(log),
            "--state",
            str(state),
            "--out",
            str(out),
            "--top",
            "0",
            "--mode",
            "rules",
        ],
    )


def test_a_second_run_on_a_held_state_fails_at_once(small_log, holder, tmp_path):
    state, process = holder
    result = _score(small_log, state, tmp_path / "a.parquet")
    assert result.exit_code == 1
    line = result.output.strip().splitlines()[-1]
    assert line.startswith(f"Error: {state} is being updated by another run (pid {process.pid} on ")
    assert line.endswith("; run again once it has finished")
    assert not (tmp_path / "a.parquet").exists()
    assert not (state / "manifest.json").exists()  # nothing written by the refused run


@pytest.mark.parametrize("ending", ["finished", "killed"])
def test_the_state_is_free_once_the_holder_ends(small_log, holder, tmp_path, ending):
    """Released when the holder finishes, and when it is killed (SIGKILL: no clean-up)."""
    state, process = holder
    if ending == "killed":
        process.send_signal(signal.SIGKILL)
    else:
        process.stdin.write("\n")
        process.stdin.flush()
    process.wait(timeout=30)
    result = _score(small_log, state, tmp_path / "a.parquet")
    assert result.exit_code == 0, result.output
    assert (state / "manifest.json").exists()
