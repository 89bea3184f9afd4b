"""Running `detector score` as a user does, through click's runner."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
from click.testing import CliRunner

from detector.cli import main


def score_alerts(log: str, out: Path, *options: str) -> pd.DataFrame:
    """`detector score LOG --out OUT --top 0 OPTIONS`: the alerts it wrote."""
    result = CliRunner().invoke(main, ["score", log, "--out", str(out), "--top", "0", *options])
    assert result.exit_code == 0, result.output
    return pd.read_parquet(out)
