"""The notebooks run top to bottom in a fresh kernel, so they never rot.

Each is executed with nbclient in a temporary working directory, in a kernel
running this interpreter (checked by a cell injected first), within a time
budget. They are committed without outputs.
"""

from __future__ import annotations

import re
import sys
import time
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

NOTEBOOKS = sorted((Path(__file__).parent.parent / "notebooks").glob("*.ipynb"))
# The issue asks for under two minutes each; a cell may not take longer either.
BUDGET_SECONDS = 120


def test_the_three_notebooks_exist():
    assert [path.name for path in NOTEBOOKS] == [
        "01_generate_and_score.ipynb",
        "02_benchmark_rule_sets.ipynb",
        "03_investigate_an_account.ipynb",
    ]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda path: path.stem)
def test_notebook_is_committed_without_outputs(path):
    notebook = nbformat.read(path, as_version=4)
    dirty = [
        index
        for index, cell in enumerate(notebook.cells)
        if cell.cell_type == "code" and (cell.outputs or cell.execution_count is not None)
    ]
    assert dirty == [], f"{path.name}: cells {dirty} hold outputs; clear them before committing"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda path: path.stem)
def test_notebook_defines_no_logic_of_its_own(path):
    """Functions and classes belong in the library, where they are tested."""
    notebook = nbformat.read(path, as_version=4)
    defining = [
        index
        for index, cell in enumerate(notebook.cells)
        if cell.cell_type == "code" and re.search(r"^\s*(def|class|async def) ", cell.source, re.M)
    ]
    assert defining == [], f"{path.name}: cells {defining} define functions or classes"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda path: path.stem)
def test_notebook_runs_top_to_bottom(path, tmp_path):
    notebook = nbformat.read(path, as_version=4)
    # Prove the kernel is this environment's interpreter, not some other Python.
    check = f"import sys\nassert sys.executable == {sys.executable!r}, sys.executable"
    notebook.cells.insert(0, nbformat.v4.new_code_cell(check))
    client = NotebookClient(
        notebook,
        kernel_name="python3",
        timeout=BUDGET_SECONDS,
        resources={"metadata": {"path": str(tmp_path)}},
    )
    started = time.perf_counter()
    client.execute()
    elapsed = time.perf_counter() - started
    assert elapsed < BUDGET_SECONDS, f"{path.name} took {elapsed:.0f} s"
    images = sum(
        "image/png" in output.get("data", {})
        for cell in notebook.cells
        if cell.cell_type == "code"
        for output in cell.outputs
    )
    assert images >= 2, f"{path.name} showed {images} figures"
