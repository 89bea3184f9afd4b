"""`detector score`'s table of top alerts fits the terminal it is printed on."""

from __future__ import annotations

from click.testing import CliRunner

from detector.cli import main


def _table(small_log, tmp_path, columns: int) -> list[str]:
    """The lines of the top-alerts table printed on a terminal ``columns`` wide."""
    result = CliRunner(env={"COLUMNS": str(columns)}).invoke(
        main, ["score", str(small_log), "--out", str(tmp_path / "a.parquet"), "--top", "3"]
    )
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("account  severity"))
    end = lines.index("", start)
    return lines[start:end]


def test_a_narrow_terminal_gets_each_reason_on_lines_of_its_own(small_log, tmp_path):
    table = _table(small_log, tmp_path, 60)
    assert all(len(line) <= 60 for line in table), "\n".join(table)
    assert table[1] == "    reason"
    alerts = [line for line in table[2:] if not line.startswith("    ")]
    assert len(alerts) == 3
    assert all(line.split()[1] in ("high", "medium", "low") for line in alerts)


def test_a_wide_terminal_gets_one_line_per_alert(small_log, tmp_path):
    table = _table(small_log, tmp_path, 200)
    assert len(table) == 4 and table[0].endswith("reason")
    assert all(len(line) <= 200 for line in table)
