"""The attack scenarios live in the top-level scenarios/ folder and ship with the package.

`synthetic_logs/scenarios` is a link to `../scenarios`: an editable install reads
the files in place, and a wheel copies them into the package, so built-in names
work either way.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from synthetic_logs.bench_data import fingerprint as generator_fingerprint
from synthetic_logs.scenario import builtin_dir, list_builtin_scenarios

ROOT = Path(__file__).resolve().parent.parent


def test_built_in_scenarios_are_the_top_level_folder():
    top = sorted(p.name for p in (ROOT / "scenarios").glob("*.toml"))
    assert len(top) >= 9
    assert sorted(p.name for p in builtin_dir().glob("*.toml")) == top
    assert builtin_dir().resolve() == (ROOT / "scenarios").resolve()
    assert {s.name for s in list_builtin_scenarios()} == {Path(n).stem for n in top}


def test_the_bench_cache_fingerprint_covers_scenario_files(tmp_path, monkeypatch):
    before = generator_fingerprint()
    copy = tmp_path / "scenarios"
    shutil.copytree(builtin_dir(), copy)
    (copy / "cap_emploi.toml").write_text((copy / "cap_emploi.toml").read_text() + "\n# edited\n")
    monkeypatch.setattr("synthetic_logs.scenario.builtin_dir", lambda: copy)
    assert generator_fingerprint() != before


@pytest.mark.slow
def test_a_built_wheel_ships_the_scenarios_and_tomlcheck(tmp_path):
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--quiet",
            "--no-deps",
            str(ROOT),
            "-w",
            str(tmp_path),
        ],
        check=True,
    )
    (wheel,) = tmp_path.glob("*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    shipped = sorted(Path(n).name for n in names if n.startswith("synthetic_logs/scenarios/"))
    assert shipped == sorted(p.name for p in (ROOT / "scenarios").glob("*.toml"))
    # tomlcheck, which both packages import to check their TOML files, ships beside them.
    modules = {n for n in names if n.startswith("tomlcheck/")}
    assert modules == {f"tomlcheck/{p.name}" for p in (ROOT / "tomlcheck").glob("*.py")}
