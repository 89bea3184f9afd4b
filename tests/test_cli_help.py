"""Every command answers --help with an example-bearing text and exit 0."""

import subprocess
import sys

import click
import pytest
from click.testing import CliRunner

from detector.cli import COMMANDS, main


def test_main_help_lists_every_command():
    result = CliRunner().invoke(main, ["--help"])
    assert result.exit_code == 0, result.output
    for name in COMMANDS:
        assert name in result.output


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_every_command_has_help(name):
    result = CliRunner().invoke(main, [name, "--help"])
    assert result.exit_code == 0, result.output
    assert "Usage:" in result.output


def test_unknown_command_is_a_usage_error():
    result = CliRunner().invoke(main, ["no-such-command"])
    assert result.exit_code == 2
    assert "No such command" in result.output


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_listed_summary_is_the_commands_own_first_sentence(name):
    # `detector --help` lists the stored sentence without importing the command.
    command = main.get_command(click.Context(main), name)
    assert COMMANDS[name][1] == command.get_short_help_str(limit=10_000)


def test_main_help_imports_no_data_library():
    # Listing the commands must stay instant: no pandas, numpy, pyarrow or scikit-learn.
    code = (
        "import sys\n"
        "from detector.cli import main\n"
        "try:\n"
        "    main(['--help'])\n"
        "except SystemExit:\n"
        "    pass\n"
        "print(sorted(m for m in ('pandas', 'numpy', 'pyarrow', 'sklearn') if m in sys.modules))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert "Commands:" in done.stdout
    assert done.stdout.strip().splitlines()[-1] == "[]"
